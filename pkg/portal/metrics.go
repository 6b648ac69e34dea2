package portal

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Outcomes, as metric labels and audit annotations.
const (
	outcomeSuccess         = "success"
	outcomeDenied          = "denied"           // the access policy refused the user
	outcomeIdPError        = "idp_error"        // the IdP refused or failed
	outcomeInvalidRequest  = "invalid_request"  // the client's mistake: bad state, code, verifier...
	outcomeUnavailable     = "unavailable"      // the IdP could not be reached
	outcomeError           = "error"            // Portcullis's own failure
	outcomeGrace           = "grace"            // refresh with the previous token within the reuse grace
	outcomeExpired         = "expired"          // the session ended by age or idleness
	outcomeReuse           = "reuse_detected"   // a rotated refresh token came back: session revoked
	outcomeUpstreamRefused = "upstream_refused" // the IdP refused the refresh: session revoked
	outcomeInvalidToken    = "invalid_token"    // unknown session or wrong secret
	outcomePending         = "pending"          // device flow: not approved yet
	outcomeSlowDown        = "slow_down"        // device flow: polling too fast
	outcomeCodeReplayed    = "code_replayed"    // a one-time code used twice: its session revoked
	outcomeNotFound        = "not_found"        // logout of a session that does not exist
	outcomeThrottled       = "throttled"        // a client over its rate limit (limits.go)
	flowBrowser            = "browser"
	flowLoopback           = "loopback"
	flowDevice             = "device"
)

type portalMetrics struct {
	logins          *metrics.CounterVec
	refreshes       *metrics.CounterVec
	logouts         *metrics.CounterVec
	refreshDuration *metrics.Histogram
}

var (
	metricsOnce sync.Once
	metricsVal  *portalMetrics
)

// defaultMetrics are registered once in the legacy registry, which the
// generic server serves at /metrics.
func defaultMetrics() *portalMetrics {
	metricsOnce.Do(func() {
		m := &portalMetrics{
			logins: metrics.NewCounterVec(&metrics.CounterOpts{
				Namespace: "portcullis", Subsystem: "portal", Name: "logins_total",
				Help:           "Logins at an identity provider through the portal, by flow (browser, loopback, device) and outcome.",
				StabilityLevel: metrics.ALPHA,
			}, []string{"flow", "outcome"}),
			refreshes: metrics.NewCounterVec(&metrics.CounterOpts{
				Namespace: "portcullis", Subsystem: "portal", Name: "refreshes_total",
				Help:           "Session refreshes (a new cluster token for a refresh token), by outcome.",
				StabilityLevel: metrics.ALPHA,
			}, []string{"outcome"}),
			logouts: metrics.NewCounterVec(&metrics.CounterOpts{
				Namespace: "portcullis", Subsystem: "portal", Name: "logouts_total",
				Help:           "Session logouts, by outcome.",
				StabilityLevel: metrics.ALPHA,
			}, []string{"outcome"}),
			refreshDuration: metrics.NewHistogram(&metrics.HistogramOpts{
				Namespace: "portcullis", Subsystem: "portal", Name: "refresh_duration_seconds",
				Help:           "Time to answer a session refresh, including any refresh at the identity provider.",
				Buckets:        []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
				StabilityLevel: metrics.ALPHA,
			}),
		}
		legacyregistry.MustRegister(m.logins, m.refreshes, m.logouts, m.refreshDuration)
		metricsVal = m
	})
	return metricsVal
}
