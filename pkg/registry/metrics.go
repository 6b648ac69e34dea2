package registry

import (
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// exchangeMetrics are the TokenCredentialRequest metrics, served at /metrics
// by the generic apiserver.
type exchangeMetrics struct {
	requests *metrics.CounterVec
	duration *metrics.Histogram
}

var (
	exchangeMetricsOnce sync.Once
	exchangeMetricsVal  *exchangeMetrics
)

func defaultExchangeMetrics() *exchangeMetrics {
	exchangeMetricsOnce.Do(func() {
		m := &exchangeMetrics{
			requests: metrics.NewCounterVec(&metrics.CounterOpts{
				Namespace: "portcullis", Subsystem: "credential_exchange", Name: "requests_total",
				Help:           "TokenCredentialRequests, by result: success, AuthenticationFailed, PolicyDenied, UnknownCluster, InternalError, invalid or throttled.",
				StabilityLevel: metrics.ALPHA,
			}, []string{"result"}),
			duration: metrics.NewHistogram(&metrics.HistogramOpts{
				Namespace: "portcullis", Subsystem: "credential_exchange", Name: "duration_seconds",
				Help:           "Time to authenticate a TokenCredentialRequest's token and mint a cluster token.",
				Buckets:        []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
				StabilityLevel: metrics.ALPHA,
			}),
		}
		legacyregistry.MustRegister(m.requests, m.duration)
		exchangeMetricsVal = m
	})
	return exchangeMetricsVal
}

func (m *exchangeMetrics) observe(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(result).Inc()
	if d > 0 {
		m.duration.Observe(d.Seconds())
	}
}
