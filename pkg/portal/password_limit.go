package portal

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limits of password logins, per replica. A person who mistypes gets
// ten tries at once and one more every six seconds; a client address (a
// NAT of many people) fifty at once and two a second. Beyond that, 429.
var (
	passwordUserLimit   = keyedLimit{every: 6 * time.Second, burst: 10}
	passwordClientLimit = keyedLimit{every: 500 * time.Millisecond, burst: 50}
)

type keyedLimit struct {
	every time.Duration
	burst int
}

// passwordLimits are the token buckets of password logins.
type passwordLimits struct {
	users, clients *keyedLimiter
}

func newPasswordLimits() *passwordLimits {
	return &passwordLimits{users: newKeyedLimiter(passwordUserLimit), clients: newKeyedLimiter(passwordClientLimit)}
}

const (
	// keyedIdle is how long an unused bucket is kept: by then it is full
	// again, so forgetting it changes nothing.
	keyedIdle = 10 * time.Minute
	// maxKeyed bounds memory when many keys appear at once (a spray of user
	// names); beyond it, unknown keys share one bucket.
	maxKeyed = 100_000
)

// keyedLimiter is a token bucket per key.
type keyedLimiter struct {
	limit    rate.Limit
	burst    int
	mu       sync.Mutex
	buckets  map[string]*keyedBucket
	overflow *rate.Limiter
	sweptAt  time.Time
}

type keyedBucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newKeyedLimiter(l keyedLimit) *keyedLimiter {
	lim := rate.Every(l.every)
	return &keyedLimiter{limit: lim, burst: l.burst, buckets: map[string]*keyedBucket{}, overflow: rate.NewLimiter(lim, l.burst)}
}

// allow takes a token from key's bucket at now.
func (l *keyedLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweptAt) > keyedIdle {
		for k, b := range l.buckets {
			if now.Sub(b.used) > keyedIdle {
				delete(l.buckets, k)
			}
		}
		l.sweptAt = now
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxKeyed {
			return l.overflow.AllowN(now, 1)
		}
		b = &keyedBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	return b.lim.AllowN(now, 1)
}
