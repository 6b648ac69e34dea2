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

// reloadMetrics show whether the configuration file's last change applied,
// so that a failed reload is seen (and alerted on) rather than only logged.
type reloadMetrics struct {
	lastSuccessful *metrics.Gauge
	lastAttempt    *metrics.Gauge
	lastSuccess    *metrics.Gauge
	reloads        *metrics.CounterVec
	info           *metrics.GaugeVec
}

var (
	reloadMetricsOnce sync.Once
	reloadMetricsVal  *reloadMetrics
)

func configReloadMetrics() *reloadMetrics {
	reloadMetricsOnce.Do(func() {
		m := &reloadMetrics{
			lastSuccessful: metrics.NewGauge(&metrics.GaugeOpts{
				Namespace: "portcullis", Subsystem: "config", Name: "last_reload_successful",
				Help:           "1 when the configuration file as it is now is the one being served, 0 when its last change could not be read or is invalid (the server then keeps serving the previous configuration).",
				StabilityLevel: metrics.ALPHA,
			}),
			lastAttempt: metrics.NewGauge(&metrics.GaugeOpts{
				Namespace: "portcullis", Subsystem: "config", Name: "last_reload_attempt_timestamp_seconds",
				Help:           "Unix time of the last attempt to apply a changed configuration file (or of start-up).",
				StabilityLevel: metrics.ALPHA,
			}),
			lastSuccess: metrics.NewGauge(&metrics.GaugeOpts{
				Namespace: "portcullis", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
				Help:           "Unix time the configuration being served was loaded (at start-up or by a reload).",
				StabilityLevel: metrics.ALPHA,
			}),
			reloads: metrics.NewCounterVec(&metrics.CounterOpts{
				Namespace: "portcullis", Subsystem: "config", Name: "reloads_total",
				Help:           "Attempts to apply a changed configuration file, by result: success or failure.",
				StabilityLevel: metrics.ALPHA,
			}, []string{"result"}),
			info: metrics.NewGaugeVec(&metrics.GaugeOpts{
				Namespace: "portcullis", Subsystem: "config", Name: "info",
				Help:           "Always 1, labelled with the SHA-256 of the configuration file being served (compare with sha256sum of the file).",
				StabilityLevel: metrics.ALPHA,
			}, []string{"sha256"}),
		}
		legacyregistry.MustRegister(m.lastSuccessful, m.lastAttempt, m.lastSuccess, m.reloads, m.info)
		reloadMetricsVal = m
	})
	return reloadMetricsVal
}
