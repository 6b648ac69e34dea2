// Package hotpath is the handler chain of portcullis-server's two hot paths,
// the TokenReview webhook (/tokenreview) and the proxy (/clusters/<name>/...):
// a shorter composition of k8s.io/apiserver's own filters than
// DefaultBuildHandlerChain (Chain), the router that sends these paths
// through it and everything else through the full chain (NewRouter), the
// long-lived workers it runs on, and the classification of proxied
// long-running requests (LongRunning). See docs/architecture.md.
package hotpath

import (
	"net/http"
	"strings"

	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/proxy"
	"portcullis.dev/portcullis/pkg/webhook"
)

// ClusterFromPath returns the cluster a /clusters/<name>/... path is for.
func ClusterFromPath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, proxy.PathPrefix)
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return name, name != ""
}

// isHotPath says whether a request goes through the hot-path chain: the
// TokenReview webhook and the proxy's /clusters/<name>/... paths, which see
// almost all of Portcullis's traffic.
func isHotPath(path string) bool {
	if strings.HasPrefix(path, proxy.PathPrefix) {
		return true
	}
	rest, ok := strings.CutPrefix(path, webhook.PathPrefix)
	return ok && (rest == "" || rest[0] == '/')
}

// Chain builds the handler chain of the hot paths from the generic
// apiserver's own filters, in DefaultBuildHandlerChain's order, keeping
// every filter that decides or records something for these requests:
//
//   - audit (init, event per request, failed-authentication events), with
//     the same backends and policy as everything else;
//   - panic recovery, request info, received timestamp, HTTP logging;
//   - authentication (the same authenticator union), authorization (the same
//     authorizer), max-in-flight (a separate budget of the same size);
//   - long-running request detection (the same LongRunningFunc): a request
//     deadline for everything that is not a watch, a log follow or an
//     upgrade, and the wait group that lets graceful shutdown drain them.
//
// It leaves out filters that do nothing here but cost CPU or stack on every
// request: tracing (Portcullis configures no tracer), CORS and HSTS (no
// browser uses these paths), the warning recorder, cache-control, latency
// trackers, the probabilistic GOAWAY, and the timeout filter's goroutine and
// buffered writer — the request deadline bounds these handlers, which honour
// their context (the webhook's IdP calls, the proxy's upstream requests).
//
// The generic impersonation filter is not needed: on /clusters/ a client's
// Impersonate-* headers are set aside by proxy.WithDeferredImpersonation and
// judged against the upstream cluster; on /tokenreview impersonation is
// refused outright (kube-apiserver never impersonates when calling a
// webhook).
//
// Long-running requests (watches, logs -f, upgrades) skip the request
// deadline and wait-group filters, which let them through untouched anyway
// (both ask the same LongRunningFunc), and skip HTTP logging when it is off
// (see withWorkers). An idle watch waits under every frame above the
// stream hand-off for as long as it is open, and the runtime halves an idle
// goroutine's stack only while it uses under a quarter of it: with these
// frames gone, the handler goroutine of an idle watch keeps 8 KiB of stack
// instead of 16 (measured in BenchmarkProxyMode/idle-watches).
//
// TestDefaultChainFiltersAreAccountedFor lists every filter of
// DefaultBuildHandlerChain as kept or left out, and fails when k8s.io/apiserver
// adds, drops or reorders one.
func Chain(h http.Handler, c *genericapiserver.Config) http.Handler {
	return chain(h, c, hotPathWorkers)
}

// chain is Chain with workers long-lived workers (none: every request runs
// on its own goroutine, as when every worker is busy).
func chain(h http.Handler, c *genericapiserver.Config, workers int) http.Handler {
	handler := genericapifilters.WithAuthorization(h, c.Authorization.Authorizer, c.Serializer)
	handler = genericfilters.WithMaxInFlightLimit(handler, c.MaxRequestsInFlight, c.MaxMutatingRequestsInFlight, c.LongRunningFunc)
	handler = webhookCallersOnly(handler, c)
	// Inside the audit filter, so a proxied stream's audit event still ends
	// (ResponseComplete) when the stream does, but outside everything else:
	// the stream is copied from here once authorization, the mux and the
	// reverse proxy have returned, so an idle watch keeps none of their
	// state, nor the reverse proxy's copy buffer.
	handler = proxy.WithStreamHandoff(handler)
	handler = genericapifilters.WithAudit(handler, c.AuditBackend, c.AuditPolicyRuleEvaluator, c.LongRunningFunc)
	// The gate and its failed handler add the hot paths' own refusals to
	// the generic 401 (see gate).
	g := &gate{inner: c.Authentication.Authenticator}
	failed := &failedAuthentication{
		gate:         g,
		unauthorized: genericapifilters.WithFailedAuthenticationAudit(genericapifilters.Unauthorized(c.Serializer), c.AuditBackend, c.AuditPolicyRuleEvaluator),
		refused:      genericapifilters.WithFailedAuthenticationAudit(refusedHandler(c.Serializer), c.AuditBackend, c.AuditPolicyRuleEvaluator),
	}
	authenticated := genericapifilters.WithAuthentication(handler, g, failed, c.Authentication.APIAudiences, c.Authentication.RequestHeaderConfig)

	short := genericapifilters.WithRequestDeadline(authenticated, c.AuditBackend, c.AuditPolicyRuleEvaluator, c.LongRunningFunc, c.Serializer, c.RequestTimeout)
	short = genericfilters.WithWaitGroup(short, c.LongRunningFunc, c.NonLongRunningRequestWaitGroup)
	short = genericfilters.WithHTTPLogging(short)
	long := longRunningChain{plain: authenticated, logged: genericfilters.WithHTTPLogging(authenticated)}

	handler = withWorkers(short, long, workers, c.LongRunningFunc)
	handler = genericapifilters.WithRequestInfo(handler, c.RequestInfoResolver)
	handler = genericapifilters.WithRequestReceivedTimestamp(handler)
	handler = genericfilters.WithPanicRecovery(handler, c.RequestInfoResolver)
	handler = genericapifilters.WithAuditInit(handler)
	return handler
}

// hotPathWorkers is how many requests at a time run on workers (see
// withWorkers); more run on their own goroutines.
const hotPathWorkers = 64

// httpLoggingLevel is the klog verbosity at which the generic HTTP logging
// filter (k8s.io/apiserver/pkg/server/httplog) logs requests; below it the
// filter only calls the next handler.
const httpLoggingLevel = 3

// longRunningChain is the rest of the hot-path chain for long-running
// requests: logged, as every request, when HTTP logging is on, and without
// the logging filter's frame when it is off.
type longRunningChain struct {
	plain, logged http.Handler
}

func (l *longRunningChain) handler() http.Handler {
	if klog.V(httpLoggingLevel).Enabled() {
		return l.logged
	}
	return l.plain
}

type impersonationRefused struct{}

func (impersonationRefused) Error() string {
	return "the TokenReview endpoint does not accept Impersonate-* headers"
}

var errImpersonationRefused = impersonationRefused{}

func hasImpersonation(h http.Header) bool {
	for k := range h {
		if proxy.IsImpersonationHeader(k) {
			return true
		}
	}
	return false
}

// NewRouter returns the outermost handler of the server: the hot paths go
// through hot (Chain) and everything else through full (the default chain).
func NewRouter(full, hot http.Handler) http.Handler {
	return &hotPathRouter{full: full, hot: hot}
}

// hotPathRouter sends the hot paths through hot and everything else (the
// aggregated API, portal, discovery, health, metrics) through full. It is the
// outermost handler, so it also sets aside a proxied request's
// Impersonate-* headers (proxy.DeferImpersonation) before any generic
// impersonation filter could act on them. It is a type rather than a
// closure to keep its frame, above every idle watch, small.
type hotPathRouter struct {
	full, hot http.Handler
}

func (h *hotPathRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isHotPath(r.URL.Path) {
		h.hot.ServeHTTP(w, proxy.DeferImpersonation(r))
		return
	}
	h.full.ServeHTTP(w, r)
}
