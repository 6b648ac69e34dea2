package portal

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/utils/clock"
)

// pending is a bounded store of short-lived, single-use entries (login
// attempts, one-time codes). Expiry is apimachinery's cache.Expiring, which
// collects expired entries (in expiry order, from a heap) whenever one is
// added; pending adds the bound and makes take and update atomic.
type pending[V any] struct {
	// mu serialises put, take and update, so that a single-use entry is
	// handed out once.
	mu    sync.Mutex
	c     *cache.Expiring
	clock clock.PassiveClock
	max   int
}

// pendingEntry is what the cache holds: a pointer, so that update changes
// it in place and its expiry stays.
type pendingEntry[V any] struct {
	v       V
	expires time.Time
}

func newPending[V any](max int, clk clock.Clock) *pending[V] {
	return &pending[V]{c: cache.NewExpiringWithClock(clk), clock: clk, max: max}
}

// put stores v under key for ttl. It returns false when the store is full
// of live entries.
func (p *pending[V]) put(key string, v V, ttl time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Adding collects the expired entries first, so the length counts live
	// ones only; over the bound, the new entry is taken out again.
	p.c.Set(key, &pendingEntry[V]{v: v, expires: p.clock.Now().Add(ttl)}, ttl)
	if p.c.Len() > p.max {
		p.c.Delete(key)
		return false
	}
	return true
}

// take removes and returns the live entry under key.
func (p *pending[V]) take(key string) (V, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.get(key)
	p.c.Delete(key)
	if !ok {
		var zero V
		return zero, false
	}
	return e.v, true
}

// update calls f on the live entry under key while holding the lock; f may
// change it, and returns whether to keep it (until it expires).
func (p *pending[V]) update(key string, f func(v *V, expires time.Time) (keep bool)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.get(key)
	if !ok {
		p.c.Delete(key)
		return false
	}
	if keep := f(&e.v, e.expires); !keep {
		p.c.Delete(key)
	}
	return true
}

func (p *pending[V]) get(key string) (*pendingEntry[V], bool) {
	v, ok := p.c.Get(key)
	if !ok {
		return nil, false
	}
	return v.(*pendingEntry[V]), true
}
