package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authorizationcel "k8s.io/apiserver/pkg/authorization/cel"
	"k8s.io/apiserver/pkg/endpoints/filters/impersonation"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/proxy/upstreamconfig"
)

// upstream is one cluster's API server: where it is, how to trust it, the
// credential Portcullis presents, and the pooled connections to it.
type upstream struct {
	name   string
	server *url.URL
	spec   v1alpha1.Upstream
	// ca, when the upstream names a CA file, is that file's content, read
	// again at handshakes when it may have changed (caFile), so a rotated
	// CA is trusted for new connections without a restart.
	ca *caFile
	// cred is Portcullis's credential upstream: a *tokenFile (tokenFile,
	// inCluster) or a *kubeconfigCredential (kubeconfig).
	cred credential

	// base speaks HTTP/2 (or HTTP/1.1 if the server offers nothing else) and
	// carries every ordinary request; connections are pooled and reused.
	base *http.Transport
	// upgradeBase only dials: upgrades (SPDY, WebSocket) need HTTP/1.1, so
	// its TLS offers only http/1.1 in ALPN.
	upgradeBase *http.Transport

	forward http.RoundTripper
	// proxy forwards ordinary requests; streamProxy watches and followed
	// logs, with small copy buffers, and hands their bodies to
	// WithStreamHandoff. Both use forward.
	proxy, streamProxy *httputil.ReverseProxy
	// upgrade dials upgrade requests (with upgradeBase) after forward has
	// set the credentials on them.
	upgrade   proxy.UpgradeRequestRoundTripper
	responder errorResponder
	// dialTimeout bounds the TCP connect and, again, the TLS handshake.
	dialTimeout time.Duration
	// nested re-authorizes a client's own impersonation headers against the
	// upstream cluster (kubectl --as), with SubjectAccessReviews sent as
	// Portcullis, and hands the allowed identity to nestedAllowed.
	nested http.Handler
}

var (
	celCompilerOnce sync.Once
	celCompiler     authorizationcel.Compiler
)

// sharedCELCompiler is built once: the delegating authorizer wants one, and
// building a CEL environment per cluster is wasted work.
func sharedCELCompiler() authorizationcel.Compiler {
	celCompilerOnce.Do(func() { celCompiler = authorizationcel.NewDefaultCompiler() })
	return celCompiler
}

func newUpstream(c *v1alpha1.Cluster, opts *Options) (*upstream, error) {
	spec := *c.Upstream
	u := &upstream{
		name:      c.Name,
		spec:      spec,
		responder: errorResponder{cluster: c.Name},

		dialTimeout: opts.DialTimeout,
	}
	dialer := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	var tlsConfig *tls.Config
	var kc *kubeconfigCredential
	if spec.Kubeconfig != nil {
		// Server, CA, client certificate and credential from the
		// kubeconfig, through client-go.
		var err error
		if kc, err = newKubeconfigCredential(c.Name, spec.Kubeconfig.Path, spec.Kubeconfig.Context, opts); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
		}
		u.cred, u.server = kc, kc.server
		tlsConfig = kc.tlsConfig()
		dial = kc.dialContext(dialer, opts.DialTimeout)
	} else {
		serverURL, caFile, tokenPath := spec.Server, spec.CertificateAuthorityFile, spec.TokenFile
		what := "upstream.server"
		if spec.InCluster {
			// The pod's service account as client-go's in-cluster
			// configuration finds it; its token file is re-read as a
			// tokenFile is, so rotated projected tokens keep working.
			cfg, err := upstreamconfig.InCluster()
			if err != nil {
				return nil, fmt.Errorf("cluster %q: upstream.inCluster: %w", c.Name, err)
			}
			serverURL, caFile, tokenPath = cfg.Host, cfg.CAFile, cfg.BearerTokenFile
			what = "the in-cluster API server address"
		}
		if tokenPath == "" {
			return nil, fmt.Errorf("cluster %q: the upstream has no credential: set upstream.tokenFile, upstream.kubeconfig or upstream.inCluster", c.Name)
		}
		server, err := url.Parse(serverURL)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %s %q is not a URL: %w", c.Name, what, serverURL, err)
		}
		if server.Scheme != "https" && server.Scheme != "http" || server.Host == "" {
			return nil, fmt.Errorf("cluster %q: %s %q must be an https URL such as https://10.0.0.1:6443", c.Name, what, serverURL)
		}
		server.RawQuery, server.Fragment = "", ""
		u.server = server

		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			if u.ca, err = newCAFile("upstream-ca-"+c.Name, caFile, opts.TokenRecheckInterval, opts.Clock); err != nil {
				return nil, fmt.Errorf("cluster %q: upstream CA %s: %w", c.Name, caFile, err)
			}
			// The standard verification, against the CA file's current
			// content: crypto/tls cannot change RootCAs of a live config.
			tlsConfig.InsecureSkipVerify = true
			tlsConfig.VerifyConnection = verifyAgainst(u.ca, server.Hostname())
		}
		tf := newTokenFile(tokenPath, opts.TokenRecheckInterval, opts.Clock)
		if _, err := tf.Get(); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
		}
		u.cred = tf
	}

	u.base = utilnet.SetTransportDefaults(&http.Transport{
		TLSClientConfig:     tlsConfig.Clone(),
		DialContext:         dial,
		TLSHandshakeTimeout: opts.DialTimeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	})
	upgradeTLS := tlsConfig.Clone()
	upgradeTLS.NextProtos = []string{"http/1.1"}
	u.upgradeBase = utilnet.SetOldTransportDefaults(&http.Transport{
		TLSClientConfig:     upgradeTLS,
		DialContext:         dial,
		TLSHandshakeTimeout: opts.DialTimeout,
	})

	u.forward = &upstreamTransport{u: u, next: u.base}
	u.proxy = u.reverseProxy(largeBuffers)
	u.streamProxy = u.reverseProxy(smallBuffers)
	// A stream's body goes to WithStreamHandoff, when it is in the chain,
	// to be copied from a shallower frame.
	u.streamProxy.ModifyResponse = HandOffStream
	// WrapRequest runs the request through upstreamTransport over
	// MirrorRequest (sanitize, then set credentials); the dial itself uses
	// upgradeBase's dialer and TLS configuration.
	u.upgrade = proxy.NewUpgradeRequestRoundTripper(u.upgradeBase, &upstreamTransport{u: u, next: proxy.MirrorRequest, mirror: true})

	if kc != nil {
		// New connections get the kubeconfig's new client certificate.
		kc.onChange = func() {
			u.base.CloseIdleConnections()
			u.upgradeBase.CloseIdleConnections()
		}
	}

	sar, err := authorizationv1client.NewForConfigAndClient(&rest.Config{Host: u.server.String()}, &http.Client{
		Transport: &bearerTransport{cred: u.cred, next: u.base},
		Timeout:   10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster %q: SubjectAccessReview client: %w", c.Name, err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: sar,
		Compiler:                  sharedCELCompiler(),
		AllowCacheTTL:             opts.ImpersonationCacheTTL,
		DenyCacheTTL:              opts.ImpersonationCacheTTL,
		WebhookRetryBackoff:       &wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3},
	}.New()
	if err != nil {
		return nil, fmt.Errorf("cluster %q: impersonation authorizer: %w", c.Name, err)
	}
	u.nested = impersonation.WithConstrainedImpersonation(http.HandlerFunc(nestedAllowed), authz, codecs)
	return u, nil
}

// reverseProxy returns the stdlib reverse proxy (what the upgrade-aware
// handler uses for requests that are not upgrades) sending to the location
// ServeHTTP resolved, through the upstream transport, with the cluster's
// error responder and the given copy buffers.
func (u *upstream) reverseProxy(buffers httputil.BufferPool) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			fw, ok := forwardFrom(pr.In.Context())
			if !ok {
				// The transport refuses requests without an identity.
				return
			}
			// fw is this request's own: its location can be the outgoing URL.
			pr.Out.URL = fw.location
			pr.Out.Host = fw.location.Host
			// The reverse proxy has removed the hop-by-hop headers (and those
			// the client named in Connection) before calling Rewrite and
			// touches none after it: the credential set here is what the
			// upstream gets. The transport refuses the request if this failed.
			fw.prepareErr = u.prepareHeaders(pr.Out.Header, fw, false)
			fw.prepared = true
		},
		Transport: u.forward,
		// The reverse proxy flushes every write of a response of unknown
		// length (watches, logs -f, streamed lists: what kube-apiserver
		// streams), so events reach the client at once; a response of known
		// length is written out when complete, saving a flush per request.
		FlushInterval: 0,
		BufferPool:    buffers,
		ErrorHandler:  u.responder.Error,
		ErrorLog:      log.New(klogWriter{}, "", 0),
	}
}

// bufferPool hands out copy buffers of one size.
type bufferPool struct {
	size int
	pool sync.Pool
}

func (b *bufferPool) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, b.size)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == b.size {
		b.pool.Put(&buf)
	}
}

var (
	// largeBuffers are the reverse proxy's usual 32 KiB, reused.
	largeBuffers = &bufferPool{size: 32 << 10}
	// smallBuffers are for responses that mostly wait: an idle watch holds
	// its buffer for as long as it is open.
	smallBuffers = &bufferPool{size: 4 << 10}
)

// klogWriter sends the reverse proxy's own log lines to klog.
type klogWriter struct{}

func (klogWriter) Write(p []byte) (int, error) {
	klog.V(2).InfoS("Reverse proxy", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}

// sameAs reports whether u was built from spec, so a configuration reload
// can keep u (and its pooled connections). A changed CA file is reloaded by
// u itself.
func (u *upstream) sameAs(spec *v1alpha1.Upstream) bool {
	if spec == nil {
		return false
	}
	a, b := *spec, u.spec
	if (a.Kubeconfig == nil) != (b.Kubeconfig == nil) || a.Kubeconfig != nil && *a.Kubeconfig != *b.Kubeconfig {
		return false
	}
	a.Kubeconfig, b.Kubeconfig = nil, nil
	return a == b
}

func (u *upstream) close() {
	u.base.CloseIdleConnections()
	u.upgradeBase.CloseIdleConnections()
}

// upstreamTransport is the last step before a request leaves for the
// upstream. Without a resolved identity, or with headers that were not
// prepared (prepareHeaders: the client's dangerous headers dropped,
// Portcullis's credential and the identity's impersonation headers set), it
// refuses to send anything: a request must never reach the upstream as
// Portcullis itself. The reverse proxies prepare the request they own in
// their Rewrite, after their own header handling; for upgrades (mirror) the
// transport prepares a copy itself.
type upstreamTransport struct {
	u      *upstream
	next   http.RoundTripper
	mirror bool
}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	fw, ok := forwardFrom(req.Context())
	if !ok || fw.id == nil || fw.id.User == "" {
		return nil, fmt.Errorf("cluster %q: refusing to forward a request without a resolved identity", t.u.name)
	}
	out := req
	if t.mirror {
		// An upgrade request from the upgrade-aware handler: prepare a copy.
		out = req.Clone(req.Context())
		if err := t.u.prepareHeaders(out.Header, fw, httpstream.IsUpgradeRequest(req)); err != nil {
			return nil, err
		}
		// The upgrade-aware handler dials (TCP and TLS) with this request's
		// context, and uses it for nothing after: bound the dial here, as
		// the transport's timeouts do for ordinary requests. A deadline
		// passing after the handshake does not affect the connection.
		ctx, cancel := context.WithTimeout(out.Context(), 2*t.u.dialTimeout)
		context.AfterFunc(req.Context(), cancel)
		return t.next.RoundTrip(out.WithContext(ctx))
	}
	// From the reverse proxies, whose Rewrite prepared the request it owns.
	if !fw.prepared {
		return nil, fmt.Errorf("cluster %q: refusing to forward a request whose headers were not prepared", t.u.name)
	}
	if fw.prepareErr != nil {
		return nil, fw.prepareErr
	}

	start := time.Now()
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		upstreamDuration.WithLabelValues(t.u.name, "error").Observe(time.Since(start).Seconds())
		return nil, err
	}
	upstreamDuration.WithLabelValues(t.u.name, "response").Observe(time.Since(start).Seconds())
	if resp.StatusCode == http.StatusUnauthorized {
		// The user was authenticated by Portcullis; a 401 can only be about
		// Portcullis's own credential. Look for a new one next time.
		t.u.cred.Invalidate()
		_ = resp.Body.Close()
		return nil, errUpstreamRejectedCredential
	}
	if id := resp.Header.Get("Audit-Id"); id != "" {
		// Portcullis's audit filter has set its own Audit-Id on the response.
		resp.Header.Del("Audit-Id")
		if id != fw.auditID {
			audit.AddAuditAnnotation(req.Context(), "proxy.portcullis.dev/upstream-audit-id", id)
		}
	}
	return resp, nil
}

// prepareHeaders makes h, the headers of an outgoing request, what the
// upstream may see: it drops whatever the client sent that must not get
// there (sanitizeHeaders), then sets Portcullis's credential, the
// impersonation headers of fw's identity, X-Forwarded-For and Audit-Id. It
// runs last, after any other header handling, so no client header (not even
// one named in Connection) can remove or replace them.
func (u *upstream) prepareHeaders(h http.Header, fw *forward, upgrade bool) error {
	authorization, err := u.cred.Authorization()
	if err != nil {
		return fmt.Errorf("%w: %v", errNoToken, err)
	}
	sanitizeHeaders(h, upgrade)
	setCredentials(h, authorization, fw.id)
	if authorization == "" {
		// A client certificate is the whole credential.
		delete(h, "Authorization")
	}
	if fw.clientIP != "" {
		h["X-Forwarded-For"] = []string{fw.clientIP}
	}
	if fw.auditID != "" {
		// kube-apiserver adopts a client's Audit-ID: both audit logs then
		// share one ID for the request.
		h["Audit-Id"] = []string{fw.auditID}
	}
	return nil
}

// bearerTransport authenticates Portcullis's own calls to the upstream
// (SubjectAccessReviews) with its credential, without any impersonation.
type bearerTransport struct {
	cred credential
	next http.RoundTripper
}

func (t *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	authorization, err := t.cred.Authorization()
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	if authorization != "" {
		out.Header["Authorization"] = []string{authorization}
	}
	resp, err := t.next.RoundTrip(out)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		t.cred.Invalidate()
	}
	return resp, err
}
