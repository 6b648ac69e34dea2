package registry

import (
	"context"
	"math"
	"time"

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

// newClientLimiter is rl as a clientlimit.Limiter: a bucket per client,
// no global one (the exchange is authenticated work, not anonymous state).
func newClientLimiter(rl RateLimit) *clientlimit.Limiter {
	if rl == (RateLimit{}) {
		rl = DefaultRateLimit
	}
	var every time.Duration // zero: unlimited
	switch {
	case math.IsInf(rl.QPS, 1):
	case rl.QPS <= 0: // the burst alone, never refilled
		every = math.MaxInt64
	default:
		every = time.Duration(float64(time.Second) / rl.QPS)
	}
	return clientlimit.New(clientlimit.Limits{PerClient: clientlimit.Rate{Every: every, Burst: rl.Burst}})
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
