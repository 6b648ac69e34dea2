package server

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

type tokenCacheMetrics struct {
	lookups *metrics.CounterVec
}

var (
	tokenMetricsOnce sync.Once
	tokenMetricsVal  *tokenCacheMetrics
)

// tokenMetrics counts verification cache hits and misses, registered once in
// the legacy registry the generic server serves at /metrics.
func tokenMetrics() *tokenCacheMetrics {
	tokenMetricsOnce.Do(func() {
		tokenMetricsVal = &tokenCacheMetrics{lookups: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "portcullis", Subsystem: "token", Name: "cache_lookups_total",
			Help:           "Cluster token verifications by cache result: hit (signature check skipped) or miss.",
			StabilityLevel: metrics.ALPHA,
		}, []string{"result"})}
		legacyregistry.MustRegister(tokenMetricsVal.lookups)
	})
	return tokenMetricsVal
}

func (m *tokenCacheMetrics) hit()  { m.lookups.WithLabelValues("hit").Inc() }
func (m *tokenCacheMetrics) miss() { m.lookups.WithLabelValues("miss").Inc() }
