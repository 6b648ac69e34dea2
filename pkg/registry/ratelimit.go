package registry

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	"portcullis.dev/portcullis/pkg/clientlimit"
)

// RateLimit is a token bucket per client.
type RateLimit struct {
	// QPS is the sustained rate of requests per second a client may make.
	QPS float64
	// Burst is how many requests a client may make at once.
	Burst int
}

// DefaultRateLimit lets a client exchange a few tokens a second, with room
// for a CI job's burst; beyond that, 429 Too Many Requests.
var DefaultRateLimit = RateLimit{QPS: 5, Burst: 20}

const (
	// limiterIdle is how long an unused client bucket is kept. A bucket
	// idle that long is full again anyway, so forgetting it changes nothing.
	limiterIdle = 10 * time.Minute
	// maxLimiters bounds memory when many clients (or a spoofing one)
	// appear at once; beyond it, unknown clients share one bucket.
	maxLimiters = 100_000
)

// clientLimiter is a token bucket per client key.
type clientLimiter struct {
	limit    rate.Limit
	burst    int
	mu       sync.Mutex
	buckets  map[string]*bucket
	overflow *rate.Limiter
	sweptAt  time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newClientLimiter(rl RateLimit) *clientLimiter {
	if rl == (RateLimit{}) {
		rl = DefaultRateLimit
	}
	l := &clientLimiter{limit: rate.Limit(rl.QPS), burst: rl.Burst, buckets: map[string]*bucket{}}
	if math.IsInf(rl.QPS, 1) {
		l.limit = rate.Inf
	}
	l.overflow = rate.NewLimiter(l.limit, l.burst)
	return l
}

// allow takes a token from key's bucket at now.
func (l *clientLimiter) allow(key string, now time.Time) bool {
	if l.limit == rate.Inf {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweptAt) > limiterIdle {
		for k, b := range l.buckets {
			if now.Sub(b.used) > limiterIdle {
				delete(l.buckets, k)
			}
		}
		l.sweptAt = now
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiters {
			return l.overflow.AllowN(now, 1)
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	return b.lim.AllowN(now, 1)
}

// clientKey is who a request counts against: an authenticated caller by
// name (in aggregated mode, the user kube-apiserver's front proxy vouched
// for), an anonymous one by the address of its connection.
//
// Behind kube-apiserver every anonymous request comes from kube-apiserver's
// own address, so anonymous exchanges through the aggregated API share one
// bucket per kube-apiserver; kube-apiserver's API priority and fairness
// protects it in front. X-Forwarded-For is not used: a direct client could
// forge it to get a fresh bucket per request.
func clientKey(ctx context.Context) string {
	if u, ok := request.UserFrom(ctx); ok && u.GetName() != "" && u.GetName() != user.Anonymous {
		return "user:" + u.GetName()
	}
	if addr, ok := ClientAddressFrom(ctx); ok {
		// IPv6 clients by their /64: a host picks any address of it.
		return "addr:" + clientlimit.Key(addr)
	}
	return "anonymous"
}
