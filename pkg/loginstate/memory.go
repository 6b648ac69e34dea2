package loginstate

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Memory is a Store in this process's memory, bounded to max live entries.
type Memory struct {
	clock clock.PassiveClock
	max   int

	mu      sync.Mutex
	entries map[memKey]memEntry
	// sweepAt is when Create last dropped expired entries; the sweep is
	// amortised, at most every sweepEvery or when the map is full.
	sweepAt time.Time
}

type memKey struct {
	kind Kind
	key  string
}

type memEntry struct {
	data    []byte
	expires time.Time
}

const sweepEvery = 10 * time.Second

// DefaultMaxInMemory bounds the logins in progress one process keeps, so
// that a flood of login starts cannot exhaust its memory.
const DefaultMaxInMemory = 10000

// NewMemory returns a Memory store holding at most max live entries. A nil
// clk is the real clock.
func NewMemory(max int, clk clock.PassiveClock) *Memory {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Memory{clock: clk, max: max, entries: map[memKey]memEntry{}}
}

// Create implements Store.
func (m *Memory) Create(ctx context.Context, kind Kind, key string, data []byte, expires time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries) >= m.max || now.Sub(m.sweepAt) > sweepEvery || now.Before(m.sweepAt) {
		m.sweepAt = now
		m.sweepLocked(now)
	}
	k := memKey{kind, key}
	if e, ok := m.entries[k]; ok && now.Before(e.expires) {
		return ErrExists
	}
	if len(m.entries) >= m.max {
		return ErrFull
	}
	m.entries[k] = memEntry{data: clone(data), expires: expires}
	return nil
}

func (m *Memory) sweepLocked(now time.Time) int {
	n := 0
	for k, e := range m.entries {
		if !now.Before(e.expires) {
			delete(m.entries, k)
			n++
		}
	}
	return n
}

// liveLocked returns the live entry under k, dropping it if it expired.
func (m *Memory) liveLocked(k memKey) (memEntry, bool) {
	e, ok := m.entries[k]
	if !ok {
		return memEntry{}, false
	}
	if !m.clock.Now().Before(e.expires) {
		delete(m.entries, k)
		return memEntry{}, false
	}
	return e, true
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, kind Kind, key string) ([]byte, time.Time, error) {
	e, err := m.find(ctx, kind, key, false)
	return clone(e.data), e.expires, err
}

// Take implements Store.
func (m *Memory) Take(ctx context.Context, kind Kind, key string) ([]byte, error) {
	e, err := m.find(ctx, kind, key, true)
	return e.data, err
}

// find returns the live entry under kind/key, removing it if take.
func (m *Memory) find(ctx context.Context, kind Kind, key string, take bool) (memEntry, error) {
	if err := ctx.Err(); err != nil {
		return memEntry{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey{kind, key}
	e, ok := m.liveLocked(k)
	if !ok {
		return memEntry{}, ErrNotFound
	}
	if take {
		delete(m.entries, k)
	}
	return e, nil
}

// Update implements Store.
func (m *Memory) Update(ctx context.Context, kind Kind, key string, f func([]byte) ([]byte, bool, error)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey{kind, key}
	e, ok := m.liveLocked(k)
	if !ok {
		return nil, ErrNotFound
	}
	next, remove, err := f(clone(e.data))
	if err != nil {
		return nil, err
	}
	if remove {
		delete(m.entries, k)
	} else {
		m.entries[k] = memEntry{data: clone(next), expires: e.expires}
	}
	return next, nil
}

// Collect implements Store.
func (m *Memory) Collect(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sweepLocked(now), nil
}

// Len returns how many entries are held, live or not yet swept.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
