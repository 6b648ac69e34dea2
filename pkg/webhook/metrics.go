package webhook

import (
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Metrics are the TokenReview endpoint's Prometheus metrics.
type Metrics struct {
	reviews  *metrics.CounterVec
	duration *metrics.Histogram
}

var (
	registerOnce sync.Once
	defaultM     *Metrics
)

// DefaultMetrics returns the metrics registered in component-base's legacy
// registry (served at /metrics by the generic apiserver).
func DefaultMetrics() *Metrics {
	registerOnce.Do(func() {
		defaultM = &Metrics{
			reviews: metrics.NewCounterVec(&metrics.CounterOpts{
				Namespace: "portcullis", Subsystem: "tokenreview", Name: "requests_total",
				Help:           "TokenReviews answered, by result: authenticated, unauthenticated, or error (a malformed request, or Portcullis could not decide).",
				StabilityLevel: metrics.ALPHA,
			}, []string{"result"}),
			duration: metrics.NewHistogram(&metrics.HistogramOpts{
				Namespace: "portcullis", Subsystem: "tokenreview", Name: "duration_seconds",
				Help:           "Time to answer a TokenReview, from decoding to the answer.",
				Buckets:        []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
				StabilityLevel: metrics.ALPHA,
			}),
		}
		legacyregistry.MustRegister(defaultM.reviews, defaultM.duration)
	})
	return defaultM
}

func (m *Metrics) observe(s authenticationv1.TokenReviewStatus, d time.Duration) {
	if m == nil {
		return
	}
	result := "unauthenticated"
	if s.Authenticated {
		result = "authenticated"
	}
	m.reviews.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *Metrics) observeError() {
	if m != nil {
		m.reviews.WithLabelValues("error").Inc()
	}
}
