// Package proxy is Portcullis's impersonating proxy: it lets kubectl reach
// clusters whose API server cannot be told to trust Portcullis (managed
// clusters, where no authentication webhook can be configured). A client
// uses https://<portcullis>/clusters/<name> as its kubeconfig server; the
// proxy forwards each request to that cluster's API server with Portcullis's
// own credential (a token file, the pod's service account, or a kubeconfig
// used through client-go: exec plugin, client certificate, token; see
// credential.go) and Impersonate-User, one Impersonate-Group per
// group, Impersonate-Uid and Impersonate-Extra-* headers describing the
// authenticated user, so the cluster's RBAC and audit log see the real user.
//
// The proxy is a handler behind the generic apiserver handler chain, which
// authenticates the client's token for the cluster in the path, applies the
// central policy, audits, recovers panics and exempts long-running requests
// (watch, logs, exec, attach, port-forward) from timeouts. Ordinary requests
// go through the standard library's reverse proxy (as apimachinery's
// upgrade-aware handler sends them) over pooled HTTP/2 connections, streamed
// responses flushed as they arrive (watches, logs -f); upgrades (SPDY and
// WebSocket, for exec, attach, port-forward) go through apimachinery's
// upgrade-aware handler over HTTP/1.1; any other Upgrade (h2c) is dropped and
// the request proxied as an ordinary one.
//
// What it must never do:
//   - forward a client's credential: the client's Authorization (every
//     one), Proxy-Authorization and cookies are removed;
//   - forward a client's Impersonate-* header (in any case or spelling), or
//     the X-Remote-*, X-Forwarded-*, Forwarded and X-Real-Ip headers a front
//     proxy or the API server could believe; hop-by-hop headers and those the
//     client names in Connection go too, and Portcullis's own credential and
//     impersonation headers are set after that, so no client header can
//     remove or replace them;
//   - send a request upstream without impersonating the authenticated user
//     (which would act with Portcullis's own rights);
//   - let a path reach a different cluster than the one the token was
//     authenticated for (dot segments, escaped cluster names);
//   - log a token.
//
// A client's own impersonation (kubectl --as) is honoured only when the
// cluster itself says the real user may impersonate that identity: the
// generic chain's impersonation filter is kept away from proxied paths
// (WithDeferredImpersonation), and the proxy runs kube-apiserver's
// impersonation filter with SubjectAccessReviews sent to the cluster. The
// real user is then forwarded in the portcullis.dev/original-user extra.
//
// kubectl's Kubectl-Command and Kubectl-Session headers are recorded as
// annotations of Portcullis's audit event (kubectl.go), cleaned and bounded
// because the client writes them, and forwarded as sent (kube-apiserver
// ignores them). They are a description, never an input to a decision.
//
// Errors are Kubernetes Status objects, never HTML: 404 for an unknown
// cluster or a refused path, 403 for a refused impersonation, 503 when the
// upstream cannot be reached (after at most the dial timeout). The limit on
// request headers (MaxRequestHeaderBytes, a 431) is applied by the hot-path
// chain before authentication.
package proxy
