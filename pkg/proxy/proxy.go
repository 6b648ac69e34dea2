package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
)

// ExtraOriginalUser is the extra under which the proxy forwards the real
// user's name when that user impersonates someone else (kubectl --as), so the
// cluster's audit log shows who really acted.
const ExtraOriginalUser = "portcullis.dev/original-user"

// forwardedPortcullisExtras are the extras of Portcullis's own namespace
// that are sent upstream: where the identity came from and the session, so
// the cluster's audit log can be tied to Portcullis's (which also has the
// token id, under the same audit ID). Any other portcullis.dev/ key stays
// behind: internal markers, the cluster (the cluster knows who it is) and
// the token id (it changes at every refresh). Each extra value costs the
// cluster an authorization check of the impersonation on every request.
// Extras outside that namespace (from the identity provider's claim
// mappings) are all sent.
var forwardedPortcullisExtras = sets.New(
	authn.ExtraIdentityProvider,
	authn.ExtraSessionID,
)

// Options tune the proxy. The zero value is usable.
type Options struct {
	// DialTimeout bounds connecting (TCP and TLS) to an upstream API server,
	// so an unreachable cluster is a quick 503, not a hang. Default 5s.
	DialTimeout time.Duration
	// TokenRecheckInterval is how often, at most, an upstream token file is
	// checked for a new token, and an upstream CA file read again at a
	// handshake (caFile). Default 2s.
	TokenRecheckInterval time.Duration
	// ImpersonationCacheTTL is how long an upstream SubjectAccessReview
	// answer about a client's own impersonation is remembered. Default 10s.
	ImpersonationCacheTTL time.Duration
	// Clock is for tests; clock.RealClock when nil.
	Clock clock.PassiveClock
	// Unaudited says that Portcullis has no audit backend: the proxy then
	// records no audit annotations (the cluster, verb and resource as the
	// upstream sees them), which nothing would read.
	Unaudited bool
}

func (o *Options) complete() {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.TokenRecheckInterval <= 0 {
		o.TokenRecheckInterval = 2 * time.Second
	}
	if o.ImpersonationCacheTTL <= 0 {
		o.ImpersonationCacheTTL = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
}

// Proxy is the impersonating proxy, an http.Handler for PathPrefix. It
// expects requests that the generic apiserver handler chain has already
// authenticated (for the cluster named in the path), authorized and put
// under audit; see the package documentation.
type Proxy struct {
	opts     Options
	updateMu sync.Mutex
	state    atomic.Pointer[proxyState]
}

type proxyState struct {
	upstreams map[string]*upstream
	// configured are all cluster names, including those without upstream.
	configured sets.Set[string]
}

// New returns a proxy for the clusters that have an upstream. Every such
// cluster must be usable: its CA file and token file readable.
func New(clusters []v1alpha1.Cluster, opts Options) (*Proxy, error) {
	opts.complete()
	RegisterMetrics()
	p := &Proxy{opts: opts}
	p.state.Store(&proxyState{upstreams: map[string]*upstream{}, configured: sets.New[string]()})
	if err := p.Update(clusters); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Update applies a new list of clusters (a configuration reload). Clusters
// whose upstream did not change keep their connections and token cache.
// A cluster whose new upstream cannot be set up keeps its previous one, if
// any, and is reported in the returned error; the others are applied.
func (p *Proxy) Update(clusters []v1alpha1.Cluster) error {
	p.updateMu.Lock()
	defer p.updateMu.Unlock()
	old := p.state.Load()
	next := &proxyState{upstreams: map[string]*upstream{}, configured: sets.New[string]()}
	var errs []error
	for i := range clusters {
		c := &clusters[i]
		next.configured.Insert(c.Name)
		if c.Upstream == nil {
			continue
		}
		if u, ok := old.upstreams[c.Name]; ok && u.sameAs(c.Upstream) {
			next.upstreams[c.Name] = u
			continue
		}
		u, err := newUpstream(c, &p.opts)
		if err != nil {
			errs = append(errs, err)
			if prev, ok := old.upstreams[c.Name]; ok {
				next.upstreams[c.Name] = prev
			}
			continue
		}
		next.upstreams[c.Name] = u
	}
	p.state.Store(next)
	for name, u := range old.upstreams {
		if next.upstreams[name] != u {
			// In-flight requests finish on their connections; idle ones go.
			u.close()
		}
	}
	return utilerrors.NewAggregate(errs)
}

// Close closes idle upstream connections.
func (p *Proxy) Close() {
	for _, u := range p.state.Load().upstreams {
		u.close()
	}
}

// forward is what the upstream transport needs to know about a request,
// carried in its context through the upgrade-aware handler.
type forward struct {
	id       *impersonatedUser
	clientIP string
	auditID  string
	// location is the upstream URL of the request.
	location *url.URL
	// prepared is set by the reverse proxies' Rewrite once it has set the
	// outgoing headers (prepareHeaders), with the error that kept it from
	// doing so, if any.
	prepared   bool
	prepareErr error
}

type forwardKey struct{}

func withForward(ctx context.Context, f *forward) context.Context {
	return context.WithValue(ctx, forwardKey{}, f)
}

func forwardFrom(ctx context.Context) (*forward, bool) {
	f, ok := ctx.Value(forwardKey{}).(*forward)
	return f, ok
}

// ServeHTTP forwards an authenticated request to its cluster.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	clusterLabel := unknownClusterLabel
	defer func() {
		requestsTotal.WithLabelValues(clusterLabel, rec.codeLabel()).Inc()
	}()

	rt, err := splitPath(req.URL)
	if err != nil {
		writeError(rec, req, notFound(err.Error()))
		return
	}
	st := p.state.Load()
	u, ok := st.upstreams[rt.cluster]
	if !ok {
		if st.configured.Has(rt.cluster) {
			writeError(rec, req, notFound(fmt.Sprintf("cluster %q has no upstream API server configured, so the proxy does not serve it", rt.cluster)))
			return
		}
		writeError(rec, req, apierrors.NewNotFound(clusterResource, rt.cluster))
		return
	}
	clusterLabel = rt.cluster
	if httpstream.IsUpgradeRequest(req) && !streamUpgrade(req.Header) {
		// An upgrade the API server does not speak (h2c, a typo): the
		// request is served as an ordinary one, as a server that ignores
		// the offer would. Going through the upgrade-aware handler, which
		// requires the upstream to switch, would turn its answer into a 503.
		dropUpgrade(req.Header)
	}

	ctx := req.Context()
	usr, ok := request.UserFrom(ctx)
	if !ok || usr == nil || usr.GetName() == "" {
		writeError(rec, req, apierrors.NewUnauthorized("no authenticated user"))
		return
	}
	// The handler chain authenticated the token for the cluster in the
	// path and the authorizer checked it; refuse anything else anyway.
	if !slices.Contains(usr.GetExtra()[authn.ExtraCluster], rt.cluster) {
		writeError(rec, req, apierrors.NewForbidden(clusterResource, rt.cluster,
			fmt.Errorf("the credential was not issued for cluster %q; log in to it", rt.cluster)))
		return
	}

	// How the upstream will classify the request: for the audit annotations,
	// nested impersonation and telling streams apart. Most requests need
	// none of these.
	requested := deferredImpersonation(ctx)
	var info *request.RequestInfo
	if !p.opts.Unaudited || len(requested) > 0 || mayStream(req.URL) || strings.Contains(req.URL.RawQuery, "%") {
		info = upstreamRequestInfo(req, rt)
	}
	if !p.opts.Unaudited {
		annotateAudit(ctx, rt.cluster, info, req.Header)
	}

	id := identityFor(usr)
	if len(requested) > 0 {
		nestedID, ok := u.impersonate(rec, req, usr, requested, info)
		if !ok {
			return
		}
		id = nestedID
	}

	fw := &forward{
		id:       id,
		clientIP: clientIP(req),
		auditID:  string(audit.GetAuditIDTruncated(ctx)),
		location: upstreamURL(u.server, rt, req.URL.RawQuery),
	}
	req = req.WithContext(withForward(ctx, fw))
	if !streamUpgrade(req.Header) {
		// Watches and followed logs stay open and mostly idle for a long
		// time, holding their copy buffer: theirs is small.
		if info != nil && (info.Verb == "watch" || req.URL.Query().Has("follow")) {
			u.streamProxy.ServeHTTP(rec, req)
		} else {
			u.proxy.ServeHTTP(rec, req)
		}
		return
	}

	// Upgrades (exec, attach, port-forward; SPDY or WebSocket) go through
	// apimachinery's upgrade-aware handler, over HTTP/1.1 to the upstream.
	h := &proxy.UpgradeAwareHandler{
		Location:         fw.location,
		Transport:        u.forward,
		UpgradeTransport: u.upgrade,
		UpgradeRequired:  true,
		UseLocationHost:  true,
		Responder:        u.responder,
	}
	rec.onHijack = func() {
		upgradesTotal.WithLabelValues(rt.cluster, upgradeProtocol(req.Header)).Inc()
		upgradedConnections.WithLabelValues(rt.cluster).Inc()
	}
	defer func() {
		if rec.hijacked {
			upgradedConnections.WithLabelValues(rt.cluster).Dec()
		}
	}()
	h.ServeHTTP(rec, req)
}

// identityFor is the identity the proxy asserts upstream for an
// authenticated user: everything but the groups kube-apiserver adds itself
// and Portcullis's internal extras.
func identityFor(u user.Info) *impersonatedUser {
	id := &impersonatedUser{User: u.GetName(), UID: u.GetUID()}
	for _, g := range u.GetGroups() {
		if g != user.AllAuthenticated && g != user.AllUnauthenticated {
			id.Groups = append(id.Groups, g)
		}
	}
	for k, vs := range u.GetExtra() {
		if strings.HasPrefix(k, "portcullis.dev/") && !forwardedPortcullisExtras.Has(k) {
			continue
		}
		if len(vs) == 0 {
			continue
		}
		if id.Extra == nil {
			id.Extra = map[string][]string{}
		}
		id.Extra[k] = slices.Clone(vs)
	}
	return id
}

// asSeenUpstream is the user as the upstream cluster knows them when the
// proxy impersonates them: the forwarded identity plus system:authenticated,
// which kube-apiserver adds. SubjectAccessReviews about the user use it.
func (id *impersonatedUser) asSeenUpstream() user.Info {
	return &user.DefaultInfo{
		Name:   id.User,
		UID:    id.UID,
		Groups: append(slices.Clone(id.Groups), user.AllAuthenticated),
		Extra:  id.Extra,
	}
}

func clientIP(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return ""
}

// upstreamRequestInfoFactory classifies requests as kube-apiserver does.
var upstreamRequestInfoFactory = &request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// upstreamRequestInfo is the RequestInfo kube-apiserver will compute for the
// forwarded request.
func upstreamRequestInfo(req *http.Request, rt route) *request.RequestInfo {
	inner := &http.Request{Method: req.Method, Header: req.Header, URL: &url.URL{Path: rt.path, RawQuery: req.URL.RawQuery}}
	info, err := upstreamRequestInfoFactory.NewRequestInfo(inner)
	if err != nil {
		return &request.RequestInfo{Path: rt.path, Verb: strings.ToLower(req.Method)}
	}
	return info
}

// annotateAudit records, in Portcullis's audit event, which cluster the
// request went to and what it was there (the event's own objectRef only
// describes the /clusters/... path), and the kubectl command and session
// the client named, cleaned (see kubectlAnnotations).
func annotateAudit(ctx context.Context, cluster string, info *request.RequestInfo, h http.Header) {
	kv := []string{"proxy.portcullis.dev/cluster", cluster, "proxy.portcullis.dev/verb", info.Verb}
	if info.IsResourceRequest {
		res := info.Resource
		if info.Subresource != "" {
			res += "/" + info.Subresource
		}
		if info.APIGroup != "" {
			res = info.APIGroup + "/" + res
		}
		kv = append(kv, "proxy.portcullis.dev/resource", res)
		if info.Namespace != "" {
			kv = append(kv, "proxy.portcullis.dev/namespace", info.Namespace)
		}
		if info.Name != "" {
			kv = append(kv, "proxy.portcullis.dev/name", info.Name)
		}
	}
	kv = kubectlAnnotations(kv, h)
	audit.AddAuditAnnotations(ctx, kv...)
}

func notFound(msg string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusNotFound,
		Reason:  metav1.StatusReasonNotFound,
		Message: msg,
	}}
}

var _ http.Handler = (*Proxy)(nil)
