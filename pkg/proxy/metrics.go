package proxy

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

var (
	requestsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "portcullis", Subsystem: "proxy", Name: "requests_total",
		Help: "Requests the impersonating proxy answered, by cluster and HTTP status code " +
			"(101 for upgraded connections, 0 when the client went away before an answer).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "code"})

	upstreamDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: "portcullis", Subsystem: "proxy", Name: "upstream_request_duration_seconds",
		Help: "Time from sending a request to the upstream API server to receiving its response headers, " +
			"by cluster and whether a response came back (result: response or error).",
		Buckets:        metrics.ExponentialBuckets(0.001, 2, 15),
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "result"})

	upgradedConnections = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: "portcullis", Subsystem: "proxy", Name: "upgraded_connections",
		Help:           "Upgraded connections (exec, attach, port-forward) open through the proxy, by cluster.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})

	upgradesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "portcullis", Subsystem: "proxy", Name: "upgrades_total",
		Help:           "Connections upgraded through the proxy (exec, attach, port-forward), by cluster and protocol (websocket, spdy or other).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "protocol"})

	registerOnce sync.Once
)

// RegisterMetrics registers the proxy's metrics in the legacy registry the
// generic server serves at /metrics. New calls it; it is safe to call again.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(requestsTotal, upstreamDuration, upgradedConnections, upgradesTotal)
	})
}

// unknownClusterLabel is the cluster label of requests for clusters the
// proxy does not serve, so clients cannot grow the label set.
const unknownClusterLabel = "<unknown>"

// statusRecorder remembers the status code written, for the request
// counter. It passes Flush and Hijack through, which watches and upgrades need.
type statusRecorder struct {
	http.ResponseWriter
	code     int
	hijacked bool
	canceled bool
	onHijack func()
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// FlushError lets http.ResponseController report flush failures.
func (r *statusRecorder) FlushError() error {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
		if r.onHijack != nil {
			r.onHijack()
		}
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) codeLabel() string {
	switch {
	case r.hijacked:
		return "101"
	case r.code != 0:
		return strconv.Itoa(r.code)
	case r.canceled:
		return "0"
	}
	return "200"
}

// upgradeProtocol names the protocol of an upgrade request for metrics,
// from a small fixed set.
func upgradeProtocol(h http.Header) string {
	v := strings.ToLower(h.Get("Upgrade"))
	switch {
	case strings.Contains(v, "websocket"):
		return "websocket"
	case strings.Contains(v, "spdy"):
		return "spdy"
	}
	return "other"
}
