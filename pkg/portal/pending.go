package portal

import (
	"sync"
	"time"
)

// pending is a bounded map of short-lived, single-use entries (login
// attempts, one-time codes). Expired entries are swept on insertion.
type pending[V any] struct {
	mu        sync.Mutex
	m         map[string]pendingEntry[V]
	max       int
	lastSweep time.Time
}

type pendingEntry[V any] struct {
	v       V
	expires time.Time
}

func newPending[V any](max int) *pending[V] {
	return &pending[V]{m: map[string]pendingEntry[V]{}, max: max}
}

// put stores v under key until expires. It returns false when the map is
// full of live entries.
func (p *pending[V]) put(key string, v V, now, expires time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m) >= p.max || now.Sub(p.lastSweep) > 10*time.Second || now.Before(p.lastSweep) {
		p.lastSweep = now
		for k, e := range p.m {
			if !now.Before(e.expires) {
				delete(p.m, k)
			}
		}
	}
	if len(p.m) >= p.max {
		return false
	}
	p.m[key] = pendingEntry[V]{v: v, expires: expires}
	return true
}

// take removes and returns the live entry under key.
func (p *pending[V]) take(key string, now time.Time) (V, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	delete(p.m, key)
	if !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// update calls f on the live entry under key while holding the lock; f may
// change it, and returns whether to keep it.
func (p *pending[V]) update(key string, now time.Time, f func(v *V, expires time.Time) (keep bool)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[key]
	if !ok || !now.Before(e.expires) {
		delete(p.m, key)
		return false
	}
	if keep := f(&e.v, e.expires); !keep {
		delete(p.m, key)
		return true
	}
	p.m[key] = e
	return true
}
