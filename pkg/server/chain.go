package server

import (
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"

	"portcullis.dev/portcullis/pkg/proxy"
	"portcullis.dev/portcullis/pkg/webhook"
)

// isHotPath says whether a request goes through the hot-path chain: the
// TokenReview webhook and the proxy's /clusters/<name>/... paths, which see
// almost all of Portcullis's traffic.
func isHotPath(path string) bool {
	if strings.HasPrefix(path, ClusterPathPrefix) {
		return true
	}
	rest, ok := strings.CutPrefix(path, webhook.PathPrefix)
	return ok && (rest == "" || rest[0] == '/')
}

// hotPathChain builds the handler chain of the hot paths from the generic
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
// hotPathWorkers is how many requests at a time run on workers (see
// withWorkers); more run on their own goroutines.
const hotPathWorkers = 64

func hotPathChain(h http.Handler, c *genericapiserver.Config) http.Handler {
	handler := genericapifilters.WithAuthorization(h, c.Authorization.Authorizer, c.Serializer)
	handler = genericfilters.WithMaxInFlightLimit(handler, c.MaxRequestsInFlight, c.MaxMutatingRequestsInFlight, c.LongRunningFunc)
	handler = withoutWebhookImpersonation(handler, c)
	// Inside the audit filter, so a proxied stream's audit event still ends
	// (ResponseComplete) when the stream does, but outside everything else:
	// the stream is copied from here once authorization, the mux and the
	// reverse proxy have returned, so an idle watch keeps none of their
	// state, nor the reverse proxy's 4 KiB copy buffer.
	handler = proxy.WithStreamHandoff(handler)
	handler = genericapifilters.WithAudit(handler, c.AuditBackend, c.AuditPolicyRuleEvaluator, c.LongRunningFunc)
	failed := genericapifilters.Unauthorized(c.Serializer)
	failed = genericapifilters.WithFailedAuthenticationAudit(failed, c.AuditBackend, c.AuditPolicyRuleEvaluator)
	handler = genericapifilters.WithAuthentication(handler, c.Authentication.Authenticator, failed, c.Authentication.APIAudiences, c.Authentication.RequestHeaderConfig)
	handler = genericapifilters.WithRequestDeadline(handler, c.AuditBackend, c.AuditPolicyRuleEvaluator, c.LongRunningFunc, c.Serializer, c.RequestTimeout)
	handler = genericfilters.WithWaitGroup(handler, c.LongRunningFunc, c.NonLongRunningRequestWaitGroup)
	handler = genericfilters.WithHTTPLogging(handler)
	handler = withWorkers(handler, hotPathWorkers, c.LongRunningFunc)
	handler = genericapifilters.WithRequestInfo(handler, c.RequestInfoResolver)
	handler = genericapifilters.WithRequestReceivedTimestamp(handler)
	handler = genericfilters.WithPanicRecovery(handler, c.RequestInfoResolver)
	handler = genericapifilters.WithAuditInit(handler)
	return handler
}

// withoutWebhookImpersonation answers 403 to a /tokenreview request that asks
// to impersonate: the caller acts as itself or not at all.
func withoutWebhookImpersonation(h http.Handler, c *genericapiserver.Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, ClusterPathPrefix) && hasImpersonation(r.Header) {
			err := apierrors.NewForbidden(authenticationv1.Resource("tokenreviews"), "", errImpersonationRefused)
			responsewriters.ErrorNegotiated(err, c.Serializer, authenticationv1.SchemeGroupVersion, w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
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

// withHotPaths sends the hot paths through hot and everything else (the
// aggregated API, portal, discovery, health, metrics) through full.
func withHotPaths(full, hot http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isHotPath(r.URL.Path) {
			hot.ServeHTTP(w, r)
			return
		}
		full.ServeHTTP(w, r)
	})
}
