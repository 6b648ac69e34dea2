// Package clientlimit rate-limits what anonymous clients may make the server
// do (start logins, create device codes, try user codes, exchange tokens):
// a token bucket per client, keyed by Key, under one global bucket far
// larger than a client's, so that one client cannot use up what everyone
// shares and many clients together still cannot overrun the server.
//
// A client is its network address as the server sees it (the TCP peer),
// never a header a client could forge.
package clientlimit

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Key returns the bucket a client address counts against: an IPv4 address
// as it is, an IPv6 address by its /64 prefix (one host, or one subnet, is
// given a whole /64 and can pick a new address from it for every request),
// anything that is not an IP address (a Unix socket, a test) as it is.
// IPv4 addresses mapped into IPv6 count as IPv4.
func Key(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.WithZone("").Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// Rate is a token bucket: Burst at once, then one every Every.
type Rate struct {
	Every time.Duration
	Burst int
}

func (r Rate) limiter() *rate.Limiter { return rate.NewLimiter(rate.Every(r.Every), r.Burst) }

// Limits are a Limiter's buckets.
type Limits struct {
	// PerClient is each client's bucket. With Every zero clients are not
	// limited at all.
	PerClient Rate
	// Global is the bucket all clients share. Zero: no bound but the
	// clients' own.
	Global Rate
}

// unbounded stands for a zero Global: a bucket no caller empties.
var unbounded = Rate{Every: time.Nanosecond, Burst: math.MaxInt32}

const (
	// idle is how long an unused client bucket is kept. A bucket idle that
	// long is full again anyway, so forgetting it changes nothing, as long
	// as a bucket refills within idle (Burst*Every <= idle).
	idle = 15 * time.Minute
	// maxClients bounds memory when many clients appear at once; beyond
	// it, new clients share one bucket until idle ones are forgotten.
	maxClients = 100_000
)

// Limiter is a token bucket per client under a global one. It is safe for
// concurrent use.
type Limiter struct {
	limits    Limits
	unlimited bool
	global    *rate.Limiter
	mu        sync.Mutex
	clients   map[string]*bucket
	overflow  *rate.Limiter
	sweptAt   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// New returns a Limiter with limits.
func New(limits Limits) *Limiter {
	if limits.Global == (Rate{}) {
		limits.Global = unbounded
	}
	return &Limiter{
		limits:    limits,
		unlimited: limits.PerClient.Every <= 0,
		global:    limits.Global.limiter(),
		clients:   map[string]*bucket{},
		overflow:  limits.PerClient.limiter(),
	}
}

// client returns key's bucket; l.mu is held.
func (l *Limiter) client(key string, now time.Time) *rate.Limiter {
	if now.Sub(l.sweptAt) > idle {
		for k, b := range l.clients {
			if now.Sub(b.used) > idle {
				delete(l.clients, k)
			}
		}
		l.sweptAt = now
	}
	b, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= maxClients {
			return l.overflow
		}
		b = &bucket{lim: l.limits.PerClient.limiter()}
		l.clients[key] = b
	}
	b.used = now
	return b.lim
}

// Allow takes one token from key's bucket and one from the global bucket at
// now, or none when either is empty.
func (l *Limiter) Allow(key string, now time.Time) bool { return l.AllowN(key, now, 1) }

// AllowN takes n tokens from key's bucket and n from the global bucket at
// now, or none when either has fewer: for requests that cost more than
// others.
func (l *Limiter) AllowN(key string, now time.Time, n int) bool {
	if l.unlimited {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.client(key, now)
	if c.TokensAt(now) < float64(n) || l.global.TokensAt(now) < float64(n) {
		return false
	}
	c.AllowN(now, n)
	l.global.AllowN(now, n)
	return true
}

// Taken is what TakeN took from a client's bucket and the global one.
type Taken struct {
	client, global *rate.Reservation
	at             time.Time
}

// TakeN is AllowN that can be undone: it takes n tokens from key's bucket
// and n from the global bucket at now, or none when either has fewer.
func (l *Limiter) TakeN(key string, now time.Time, n int) (Taken, bool) {
	if l.unlimited {
		return Taken{}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.client(key, now)
	if c.TokensAt(now) < float64(n) || l.global.TokensAt(now) < float64(n) {
		return Taken{}, false
	}
	return Taken{client: c.ReserveN(now, n), global: l.global.ReserveN(now, n), at: now}, true
}

// Refund gives back what TakeN took, as far as the buckets can take it
// back: for a start that left nothing behind (the state store could not
// record it), so that a client retrying through an outage is not throttled
// once it is over. Refunding a zero Taken does nothing.
func (t Taken) Refund() {
	if t.client == nil {
		return
	}
	// At the time they were taken: rate.Reservation cancels nothing at a
	// later time, as its tokens were due then.
	t.client.CancelAt(t.at)
	t.global.CancelAt(t.at)
}

// Limited reports whether key, or everyone, has no token left at now,
// without taking one: for counting only failures (Fail), as a limit of wrong
// guesses does.
func (l *Limiter) Limited(key string, now time.Time) bool {
	if l.unlimited {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.client(key, now).TokensAt(now) < 1 || l.global.TokensAt(now) < 1
}

// Fail takes one token from key's bucket and the global one at now (a
// failure counted after the fact).
func (l *Limiter) Fail(key string, now time.Time) {
	if l.unlimited {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.client(key, now).AllowN(now, 1)
	l.global.AllowN(now, 1)
}

// RetryAfter is how long a client over its limit should wait before it
// tries again: one refill of its bucket.
func (l *Limiter) RetryAfter() time.Duration { return l.limits.PerClient.Every }
