package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/proxy/upstreamconfig"
)

// credential is Portcullis's own credential at an upstream API server.
type credential interface {
	// Authorization is the value of the Authorization header to send
	// upstream, or "" when the credential is only a client certificate.
	Authorization() (string, error)
	// Invalidate is called after the upstream answered 401 to the
	// credential: the next Authorization looks for a new one.
	Invalidate()
}

var (
	_ credential = (*tokenFile)(nil)
	_ credential = (*kubeconfigCredential)(nil)
)

// kubeconfigCredential is the credential of an upstream given as a
// kubeconfig (upstream.kubeconfig): whatever client-go supports there (exec
// plugins, client certificates, tokens, token files, basic auth), applied by
// client-go's own code. Each request's Authorization value comes from
// client-go's authentication round trippers (transport.HTTPWrappersForConfig)
// run over proxy.MirrorRequest, which returns the request they prepared
// without sending it: the exec plugin's cached credential, re-run when its
// expirationTimestamp passes or the upstream answers 401, or the token
// file's. Ordinary requests, upgrades and Portcullis's own
// SubjectAccessReviews all take their credential from here, and dial with
// the TLS configuration (CA, server name, client certificate, static or from
// the exec plugin) of the same client-go configuration.
//
// The kubeconfig and the files it names are checked for changes at most
// once per recheck interval, as tokenFile does; a changed file makes a new
// client-go configuration (an invalid one is logged and the last good one
// kept). The server address is read once: a new one is logged, and takes
// effect at a restart or a change of the upstream in Portcullis's
// configuration.
type kubeconfigCredential struct {
	cluster, path, context string
	recheck                time.Duration
	clock                  clock.PassiveClock
	// server is the API server of the first reading: the proxy's
	// transports send there, and its certificate is checked for that name.
	server *url.URL

	cur atomic.Pointer[kubeconfigGeneration]

	// mu is held by the one request that checks the files; nextCheck
	// (Unix nanoseconds) is when they are checked again.
	mu        sync.Mutex
	nextCheck atomic.Int64
	// onChange, when set, is called after a new generation is in place (to
	// drop idle connections made with the previous client certificate).
	onChange func()
}

// kubeconfigGeneration is what one reading of the kubeconfig gives.
type kubeconfigGeneration struct {
	server *url.URL
	// tls holds the roots (nil: the system's), the server name and the
	// client certificate (Certificates or GetClientCertificate).
	tls *tls.Config
	// mirror runs client-go's authentication round trippers over
	// proxy.MirrorRequest; unauthorized over a round tripper that answers
	// 401, to tell them their credential was refused.
	mirror, unauthorized http.RoundTripper
	// dial is the exec plugin's dialer, which closes the connections it
	// made when the plugin's credential rotates (so a new client
	// certificate is used); nil without an exec plugin.
	dial  func(ctx context.Context, network, address string) (net.Conn, error)
	files []fileStamp
}

type fileStamp struct {
	path    string
	modTime time.Time
	size    int64
}

func stampFiles(paths []string) []fileStamp {
	out := make([]fileStamp, 0, len(paths))
	for _, p := range paths {
		st := fileStamp{path: p}
		if fi, err := os.Stat(p); err == nil {
			st.modTime, st.size = fi.ModTime(), fi.Size()
		}
		out = append(out, st)
	}
	return out
}

func (g *kubeconfigGeneration) filesChanged() bool {
	for _, f := range g.files {
		fi, err := os.Stat(f.path)
		if err != nil {
			// Being replaced, or gone: keep what was read.
			continue
		}
		if !fi.ModTime().Equal(f.modTime) || fi.Size() != f.size {
			return true
		}
	}
	return false
}

func newKubeconfigCredential(cluster, path, context string, opts *Options) (*kubeconfigCredential, error) {
	k := &kubeconfigCredential{cluster: cluster, path: path, context: context, recheck: opts.TokenRecheckInterval, clock: opts.Clock}
	g, err := k.load()
	if err != nil {
		return nil, err
	}
	k.cur.Store(g)
	k.server = g.server
	k.nextCheck.Store(k.clock.Now().Add(k.recheck).UnixNano())
	return k, nil
}

// load reads the kubeconfig and builds a generation from it.
func (k *kubeconfigCredential) load() (*kubeconfigGeneration, error) {
	// Each file is stamped before it is read, so a change made while
	// reading is seen at the next check.
	stamps := stampFiles([]string{k.path})
	cfg, err := upstreamconfig.FromKubeconfig(k.path, k.context)
	if err != nil {
		return nil, fmt.Errorf("upstream.kubeconfig %s: %w", k.path, err)
	}
	stamps = append(stamps, stampFiles(upstreamconfig.Files(k.path, cfg)[1:])...)
	g, err := generationFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream.kubeconfig %s: %w", k.path, err)
	}
	g.files = stamps
	return g, nil
}

// generationFor builds the TLS configuration and authentication round
// trippers of a client-go configuration.
func generationFor(cfg *rest.Config) (*kubeconfigGeneration, error) {
	server, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	server.RawQuery, server.Fragment = "", ""
	tc, err := cfg.TransportConfig()
	if err != nil {
		return nil, err
	}
	tlsConfig, err := transport.TLSConfigFor(tc)
	if err != nil {
		return nil, err
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	if tlsConfig.InsecureSkipVerify {
		return nil, errors.New("insecure-skip-tls-verify is not allowed")
	}
	g := &kubeconfigGeneration{server: server, tls: tlsConfig}
	if g.mirror, err = transport.HTTPWrappersForConfig(tc, proxy.MirrorRequest); err != nil {
		return nil, err
	}
	if g.unauthorized, err = transport.HTTPWrappersForConfig(tc, unauthorizedResponder{}); err != nil {
		return nil, err
	}
	if tc.DialHolder != nil {
		g.dial = tc.DialHolder.Dial
	}
	return g, nil
}

// current returns the generation in use, after loading the kubeconfig
// again if one of its files changed (checked at most once per recheck
// interval, by one request while the others go on with the generation in
// use).
func (k *kubeconfigCredential) current() *kubeconfigGeneration {
	g := k.cur.Load()
	now := k.clock.Now()
	if now.UnixNano() < k.nextCheck.Load() || !k.mu.TryLock() {
		return g
	}
	defer k.mu.Unlock()
	if now.UnixNano() < k.nextCheck.Load() {
		return k.cur.Load()
	}
	k.nextCheck.Store(now.Add(k.recheck).UnixNano())
	if !g.filesChanged() {
		return g
	}
	next, err := k.load()
	if err != nil {
		// Tried again at the next check: the stamps stay, so the change is
		// still seen then.
		klog.ErrorS(err, "The changed upstream kubeconfig cannot be used; keeping the previous one", "cluster", k.cluster)
		return g
	}
	k.cur.Store(next)
	klog.InfoS("Upstream kubeconfig changed; using it", "cluster", k.cluster, "path", k.path)
	if next.server.String() != k.server.String() {
		klog.InfoS("The upstream kubeconfig names another server; requests still go to the first until a restart or a change of the cluster's upstream",
			"cluster", k.cluster, "server", k.server.Redacted(), "newServer", next.server.Redacted())
	}
	if k.onChange != nil {
		k.onChange()
	}
	return next
}

// Authorization runs client-go's authentication round trippers over a
// request that is never sent and returns the Authorization they set.
func (k *kubeconfigCredential) Authorization() (string, error) {
	g := k.current()
	resp, err := g.mirror.RoundTrip(g.probe())
	if err != nil {
		return "", fmt.Errorf("the upstream credential of kubeconfig %s: %w", k.path, err)
	}
	return resp.Request.Header.Get("Authorization"), nil
}

// Invalidate tells client-go's round trippers that the upstream refused
// their credential: an exec plugin runs again, a token file is re-read. The
// files are checked again at the next request, too.
func (k *kubeconfigCredential) Invalidate() {
	g := k.cur.Load()
	if resp, err := g.unauthorized.RoundTrip(g.probe()); err == nil {
		_ = resp.Body.Close()
	}
	k.nextCheck.Store(0)
}

// probe is a request to the upstream's base URL for the round trippers to
// authenticate; it is never sent.
func (g *kubeconfigGeneration) probe() *http.Request {
	return (&http.Request{
		Method:     http.MethodGet,
		URL:        g.server,
		Host:       g.server.Host,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, 1),
	}).WithContext(context.Background())
}

// unauthorizedResponder answers every request with 401, without sending it.
type unauthorizedResponder struct{}

func (unauthorizedResponder) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusUnauthorized,
		Status:     "401 Unauthorized",
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader("")),
		Request:    req,
	}, nil
}

// tlsConfig is the TLS configuration of the upstream's transports: it
// verifies the server against the current generation's roots (the
// kubeconfig's CA, or the system's) and name, and presents its client
// certificate, so a changed kubeconfig applies to new connections without
// new transports. crypto/tls cannot change RootCAs of a live
// configuration, hence the verification in VerifyConnection, which
// crypto/tls runs on every handshake.
func (k *kubeconfigCredential) tlsConfig() *tls.Config {
	first := k.cur.Load()
	sni := first.tls.ServerName
	if sni == "" && net.ParseIP(k.server.Hostname()) == nil {
		sni = k.server.Hostname()
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Sent as SNI: the upgrade dialer sets none itself when
		// InsecureSkipVerify is set.
		ServerName: sni,
		// Verified by VerifyConnection, as crypto/tls would, against the
		// current generation.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			g := k.cur.Load()
			name := g.tls.ServerName
			if name == "" {
				name = k.server.Hostname()
			}
			return verifyChain(cs, x509.VerifyOptions{Roots: g.tls.RootCAs}, name)
		},
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			g := k.cur.Load()
			switch {
			case g.tls.GetClientCertificate != nil:
				return g.tls.GetClientCertificate(cri)
			case len(g.tls.Certificates) > 0:
				return &g.tls.Certificates[0], nil
			}
			return &tls.Certificate{}, nil
		},
	}
}

// dialContext dials with the exec plugin's dialer when there is one (it
// closes its connections when the plugin's credential rotates), bounded
// by timeout, and with dialer otherwise.
func (k *kubeconfigCredential) dialContext(dialer *net.Dialer, timeout time.Duration) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if dial := k.cur.Load().dial; dial != nil {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return dial(ctx, network, address)
		}
		return dialer.DialContext(ctx, network, address)
	}
}

// verifyChain verifies a server's certificate chain and name as crypto/tls
// does, with opts' roots (nil: the system's).
func verifyChain(cs tls.ConnectionState, opts x509.VerifyOptions, host string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the upstream presented no certificate")
	}
	if host == "" {
		// x509 would skip the name check.
		return errors.New("the upstream server has no host name to check its certificate against")
	}
	opts.DNSName = host
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	opts.Intermediates = x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}
