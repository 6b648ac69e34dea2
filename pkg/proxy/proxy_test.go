package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/component-base/metrics/testutil"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
)

// seenRequest is what the fake upstream API server received.
type seenRequest struct {
	Method, Path, RawPath, Query, Proto string
	Header                              http.Header
}

// fakeUpstream plays kube-apiserver: it records proxied requests, answers
// SubjectAccessReviews by a rule, and runs a handler per test.
type fakeUpstream struct {
	t      testing.TB
	server *httptest.Server

	mu      sync.Mutex
	seen    []seenRequest
	sars    []seenSAR
	handler http.HandlerFunc
	// allow decides SubjectAccessReviews.
	allow func(spec authorizationv1.SubjectAccessReviewSpec) bool
}

type seenSAR struct {
	Header http.Header
	Spec   authorizationv1.SubjectAccessReviewSpec
}

func newFakeUpstream(t testing.TB) *fakeUpstream {
	f := &fakeUpstream{t: t}
	f.server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.server.EnableHTTP2 = true
	f.server.StartTLS()
	t.Cleanup(f.server.Close)
	return f
}

func (f *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
		var sar authorizationv1.SubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.sars = append(f.sars, seenSAR{Header: r.Header.Clone(), Spec: sar.Spec})
		allow := f.allow
		f.mu.Unlock()
		sar.Status.Allowed = allow != nil && allow(sar.Spec)
		sar.APIVersion, sar.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&sar)
		return
	}
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Proto: r.Proto, Header: r.Header.Clone()})
	h := f.handler
	f.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Audit-Id", "upstream-audit-id")
	fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
}

func (f *fakeUpstream) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func (f *fakeUpstream) last() seenRequest {
	f.t.Helper()
	reqs := f.requests()
	if len(reqs) == 0 {
		f.t.Fatal("the upstream received no request")
	}
	return reqs[len(reqs)-1]
}

func (f *fakeUpstream) setHandler(h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handler = h
}

// writeCA writes the (shared, fixed) certificate of httptest TLS servers.
func writeCA(t testing.TB, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.crt")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeToken(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func cluster(name, server, ca, token string) v1alpha1.Cluster {
	return v1alpha1.Cluster{Name: name, Upstream: &v1alpha1.Upstream{Server: server, CertificateAuthorityFile: ca, TokenFile: token}}
}

// testUsers are what the fake handler chain authenticates bearer tokens to.
var testUsers = map[string]user.Info{
	"alice-token": &user.DefaultInfo{
		Name: "alice@example.com", UID: "alice-uid", Groups: []string{"devs", "ops", user.AllAuthenticated},
		Extra: map[string][]string{
			authn.ExtraCluster:             {"c1", "c2"},
			authn.ExtraIdentityProvider:    {"corp"},
			authn.ExtraSessionID:           {"sid-1"},
			authn.ExtraTokenID:             {"jti-1"},
			"portcullis.dev/policy-denied": {""},
			"portcullis.dev/internal":      {"x"},
			"example.org/department":       {"eng"},
		},
	},
	"carol-token":   &user.DefaultInfo{Name: "carol", Groups: []string{"devs"}, Extra: map[string][]string{authn.ExtraCluster: {"c1"}}},
	"dave-c2-token": &user.DefaultInfo{Name: "dave", Groups: []string{"devs"}, Extra: map[string][]string{authn.ExtraCluster: {"c2"}}},
}

// fakeChain stands in for the generic apiserver handler chain: it
// authenticates the bearer token (and, unlike the real chain, leaves the
// Authorization header in place, so the proxy must drop it itself), with
// WithDeferredImpersonation around it and WithStreamHandoff inside it as
// the server wires them.
func fakeChain(p http.Handler) http.Handler {
	return WithDeferredImpersonation(fakeAuthentication(WithStreamHandoff(p)))
}

// fakeAuthentication authenticates the bearer token as one of testUsers.
func fakeAuthentication(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		u, ok := testUsers[tok]
		if !ok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(request.WithUser(r.Context(), u)))
	})
}

type testEnv struct {
	proxy    *Proxy
	front    *httptest.Server
	up       *fakeUpstream
	ca       string
	token    string
	clock    *testingclock.FakeClock
	h1Client *http.Client
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	return newTestEnvWith(t, Options{})
}

// newTestEnvWith is newTestEnv with opts (its Clock and DialTimeout are the
// test's).
func newTestEnvWith(t testing.TB, opts Options) *testEnv {
	t.Helper()
	up := newFakeUpstream(t)
	env := &testEnv{up: up, ca: writeCA(t, up.server), token: writeToken(t, "sa-token\n"), clock: testingclock.NewFakeClock(time.Now())}
	opts.Clock, opts.DialTimeout = env.clock, 2*time.Second
	p, err := New([]v1alpha1.Cluster{
		cluster("c1", up.server.URL, env.ca, env.token),
		{Name: "webhook-only"},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	env.proxy = p
	env.front = httptest.NewUnstartedServer(fakeChain(p))
	env.front.EnableHTTP2 = true
	env.front.StartTLS()
	t.Cleanup(env.front.Close)
	// An HTTP/1.1 client sends header names exactly as written.
	pool := x509.NewCertPool()
	pool.AddCert(env.front.Certificate())
	env.h1Client = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}, Timeout: 10 * time.Second}
	return env
}

func (e *testEnv) do(t *testing.T, client *http.Client, method, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.front.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v // raw: keep the client's spelling
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// wantStatus checks that a response is a Kubernetes Status with the code.
func wantStatus(t *testing.T, resp *http.Response, body []byte, code int) metav1.Status {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status %d, want %d; body: %s", resp.StatusCode, code, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want a JSON Status; body: %s", ct, body)
	}
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("body is not a Status: %v: %s", err, body)
	}
	if st.Kind != "Status" || st.APIVersion != "v1" || st.Code != int32(code) || st.Status != metav1.StatusFailure {
		t.Fatalf("Status %+v, want kind Status, apiVersion v1, code %d", st, code)
	}
	return st
}

// identityHeaders are the identity-bearing headers of an upstream request.
func identityHeaders(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		lk := strings.ToLower(k)
		if lk == "authorization" || strings.HasPrefix(lk, "impersonate") || strings.HasPrefix(lk, "x-remote") ||
			strings.HasPrefix(lk, "x-forwarded") || lk == "cookie" || lk == "forwarded" || lk == "x-real-ip" {
			out[k] = slices.Clone(v)
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// aliceUpstream is how alice must reach the upstream, whatever she sends.
var aliceUpstream = http.Header{
	"Authorization":                              {"Bearer sa-token"},
	"Impersonate-User":                           {"alice@example.com"},
	"Impersonate-Uid":                            {"alice-uid"},
	"Impersonate-Group":                          {"devs", "ops"},
	"Impersonate-Extra-Portcullis.dev%2fidp":     {"corp"},
	"Impersonate-Extra-Portcullis.dev%2fsid":     {"sid-1"},
	"Impersonate-Extra-Example.org%2fdepartment": {"eng"},
	"X-Forwarded-For":                            {"127.0.0.1"},
}

func TestProxyForwardsAsTheAuthenticatedUser(t *testing.T) {
	env := newTestEnv(t)
	resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api/v1/namespaces/default/pods?limit=1", bearer("alice-token"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "PodList") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Values("Audit-Id"); len(got) != 0 {
		t.Errorf("the upstream's Audit-Id reached the client: %q", got)
	}
	got := env.up.last()
	if got.Path != "/api/v1/namespaces/default/pods" || got.Query != "limit=1" || got.Method != "GET" {
		t.Errorf("upstream got %s %s?%s", got.Method, got.Path, got.Query)
	}
	if got.Proto != "HTTP/2.0" {
		t.Errorf("upstream request over %s, want HTTP/2.0", got.Proto)
	}
	if ids := identityHeaders(got.Header); !reflect.DeepEqual(ids, aliceUpstream) {
		t.Errorf("upstream identity headers\n  %v\nwant\n  %v", ids, aliceUpstream)
	}
	if v, err := testutil.GetCounterMetricValue(requestsTotal.WithLabelValues("c1", "200")); err != nil || v < 1 {
		t.Errorf("portcullis_proxy_requests_total{cluster=c1,code=200} = %v, %v", v, err)
	}
}

func TestProxyHeaderSmuggling(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name   string
		header http.Header
	}{
		{name: "Impersonate headers in unusual spellings", header: http.Header{
			"Impersonate_User": {"admin"}, "Impersonate_Group": {"system:masters"}, "ImpersonateUser": {"admin"},
		}},
		{name: "front-proxy headers", header: http.Header{
			"X-Remote-User": {"admin"}, "x-remote-group": {"system:masters"}, "X-Remote-Extra-Scopes": {"all"}, "X-Remote-Uid": {"0"},
		}},
		{name: "a second Authorization header", header: http.Header{
			"Authorization": {"Bearer alice-token", "Bearer admin-token"},
		}},
		{name: "Connection naming Authorization and the impersonation headers", header: http.Header{
			"Connection": {"Authorization, Impersonate-User, Impersonate-Group, X-Forwarded-For"},
		}},
		{name: "forwarding headers", header: http.Header{
			"X-Forwarded-For": {"10.9.9.9"}, "X-Forwarded-Host": {"evil"}, "Forwarded": {"for=10.9.9.9"}, "X-Real-Ip": {"10.9.9.9"},
		}},
		{name: "cookies and proxy credentials", header: http.Header{
			"Cookie": {"portcullis-session=secret"}, "Proxy-Authorization": {"Basic eDp5"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bearer("alice-token")
			for k, v := range tt.header {
				h[k] = append(h[k], v...)
			}
			resp, body := env.do(t, env.h1Client, "GET", "/clusters/c1/api/v1/pods", h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got %d %s", resp.StatusCode, body)
			}
			if ids := identityHeaders(env.up.last().Header); !reflect.DeepEqual(ids, aliceUpstream) {
				t.Errorf("upstream identity headers\n  %v\nwant\n  %v", ids, aliceUpstream)
			}
		})
	}
}

func TestProxyRefusesTricksAndUnknownClusters(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name, path string
		token      string
		code       int
	}{
		{name: "dot-dot to another cluster", path: "/clusters/c1/../c2/api", token: "alice-token", code: 404},
		{name: "dot-dot inside the cluster path", path: "/clusters/c1/api/../../c2/api", token: "alice-token", code: 404},
		{name: "encoded slash in the cluster name", path: "/clusters/c1%2F..%2Fc2/api", token: "alice-token", code: 404},
		{name: "encoded cluster name", path: "/clusters/%63%31/api", token: "alice-token", code: 404},
		{name: "empty cluster", path: "/clusters//api", token: "alice-token", code: 404},
		{name: "unknown cluster", path: "/clusters/nope/api", token: "alice-token", code: 404},
		{name: "cluster without an upstream", path: "/clusters/webhook-only/api", token: "alice-token", code: 404},
		{name: "credential for another cluster", path: "/clusters/c1/api", token: "dave-c2-token", code: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(env.up.requests())
			resp, body := env.do(t, env.h1Client, "GET", tt.path, bearer(tt.token))
			st := wantStatus(t, resp, body, tt.code)
			if st.Message == "" {
				t.Errorf("Status without a message")
			}
			if n := len(env.up.requests()); n != before {
				t.Errorf("the upstream received the request")
			}
		})
	}
}

func TestProxyRereadsARotatedTokenFile(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	if got := env.up.last().Header.Get("Authorization"); got != "Bearer sa-token" {
		t.Fatalf("Authorization %q", got)
	}
	writeFile(t, env.token, "rotated-token", time.Now().Add(time.Hour))
	env.clock.Step(3 * time.Second)
	env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	if got := env.up.last().Header.Get("Authorization"); got != "Bearer rotated-token" {
		t.Fatalf("after rotation the upstream got Authorization %q", got)
	}
}

func TestProxyUpstreamRefusingItsCredentialIsNotA401(t *testing.T) {
	env := newTestEnv(t)
	env.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
	})
	resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	st := wantStatus(t, resp, body, http.StatusServiceUnavailable)
	if !strings.Contains(st.Message, "credential") {
		t.Errorf("message %q does not point at the credential", st.Message)
	}
}

// silentListener accepts TCP connections and never answers: a hung
// upstream, for the TLS handshake timeout.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestProxyUpstreamDownIsAQuick503ThenRecovers(t *testing.T) {
	// A port nobody listens on (yet).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	up := newFakeUpstream(t) // only for its CA
	ca, tok := writeCA(t, up.server), writeToken(t, "sa-token")
	p, err := New([]v1alpha1.Cluster{
		cluster("c1", "https://"+addr, ca, tok),
		cluster("hung", "https://"+silentListener(t), ca, tok),
	}, Options{DialTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	testUsers["hung-token"] = &user.DefaultInfo{Name: "h", Extra: map[string][]string{authn.ExtraCluster: {"c1", "hung"}}}
	defer delete(testUsers, "hung-token")
	front := httptest.NewTLSServer(fakeChain(p))
	defer front.Close()

	for _, tt := range []struct {
		name, path string
		upgrade    bool
	}{
		{name: "refused", path: "/clusters/c1/api"},
		{name: "refused upgrade", path: "/clusters/c1/api/v1/namespaces/n/pods/p/exec", upgrade: true},
		{name: "hung handshake", path: "/clusters/hung/api"},
		{name: "hung handshake on upgrade", path: "/clusters/hung/api/v1/namespaces/n/pods/p/exec", upgrade: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", front.URL+tt.path, nil)
			req.Header.Set("Authorization", "Bearer hung-token")
			if tt.upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "SPDY/3.1")
			}
			start := time.Now()
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			st := wantStatus(t, resp, body, http.StatusServiceUnavailable)
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("the 503 took %v", el)
			}
			if !strings.Contains(st.Message, "unreachable") || st.Reason != metav1.StatusReasonServiceUnavailable {
				t.Errorf("Status %+v", st)
			}
		})
	}

	// The upstream comes up on that address: the next request works, no restart.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	back := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "back")
	}))
	back.Listener.Close()
	back.Listener = l
	back.EnableHTTP2 = true
	back.StartTLS()
	defer back.Close()
	req, _ := http.NewRequest("GET", front.URL+"/clusters/c1/api", nil)
	req.Header.Set("Authorization", "Bearer hung-token")
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "back" {
		t.Fatalf("after recovery: %d %s", resp.StatusCode, body)
	}
}

func TestProxyStreamsWatchEventsAtOnce(t *testing.T) {
	env := newTestEnv(t)
	next := make(chan struct{})
	done := make(chan struct{})
	defer close(done)
	env.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;stream=watch")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, `{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"one"}}}`)
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-done:
			return
		}
		fmt.Fprintln(w, `{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"one"}}}`)
		w.(http.Flusher).Flush()
		<-done
	})
	req, _ := http.NewRequest("GET", env.front.URL+"/clusters/c1/api/v1/namespaces/default/pods?watch=true", nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := env.front.Client().Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	readWithin := func(want string) {
		t.Helper()
		select {
		case l := <-lines:
			if !strings.Contains(l, want) {
				t.Fatalf("event %q, want %s", l, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("no %s event within a second: the proxy buffers", want)
		}
	}
	readWithin("ADDED")
	next <- struct{}{}
	readWithin("MODIFIED")
}

// upgradeEcho is an upstream that accepts a WebSocket upgrade and echoes
// raw bytes (no WebSocket framing: the proxy copies bytes either way).
func upgradeEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Connection"), "Upgrade") || r.Header.Get("Upgrade") != "websocket" {
		http.Error(w, "not an upgrade", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	rw.Flush()
	buf := make([]byte, 64)
	for {
		n, err := rw.Read(buf)
		if err != nil {
			return
		}
		rw.Write(buf[:n])
		rw.Flush()
	}
}

func TestProxyPassesUpgradesThrough(t *testing.T) {
	env := newTestEnv(t)
	env.up.setHandler(upgradeEcho)
	pool := x509.NewCertPool()
	pool.AddCert(env.front.Certificate())
	conn, err := tls.Dial("tcp", env.front.Listener.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "POST /clusters/c1/api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\n"+
		"Host: portcullis\r\n"+
		"Authorization: Bearer alice-token\r\n"+
		"Connection: Upgrade, X-Remote-User\r\n"+
		"Upgrade: websocket\r\n"+
		"X-Remote-User: admin\r\n"+
		"Impersonate_User: admin\r\n"+
		"\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, msg := range []string{"ping", "pong"} {
		fmt.Fprint(conn, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatal(err)
		}
		if string(buf) != msg {
			t.Fatalf("echo %q, want %q", buf, msg)
		}
	}
	got := env.up.last()
	if got.Proto != "HTTP/1.1" || got.Path != "/api/v1/namespaces/default/pods/p/exec" || got.Query != "command=sh" {
		t.Errorf("upstream got %s %s?%s", got.Proto, got.Path, got.Query)
	}
	if ids := identityHeaders(got.Header); !reflect.DeepEqual(ids, aliceUpstream) {
		t.Errorf("upstream identity headers\n  %v\nwant\n  %v", ids, aliceUpstream)
	}
}

func TestProxyNestedImpersonation(t *testing.T) {
	env := newTestEnv(t)
	// The cluster lets alice (and only her) impersonate bob and the group ops.
	env.up.allow = func(s authorizationv1.SubjectAccessReviewSpec) bool {
		ra := s.ResourceAttributes
		if s.User != "alice@example.com" || ra == nil || ra.Verb != "impersonate" {
			return false
		}
		return ra.Resource == "users" && ra.Name == "bob" || ra.Resource == "groups" && ra.Name == "ops"
	}

	t.Run("allowed impersonation is forwarded with the original user", func(t *testing.T) {
		h := bearer("alice-token")
		h["Impersonate-User"] = []string{"bob"}
		h["Impersonate-Group"] = []string{"ops"}
		resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api/v1/namespaces/default/pods", h)
		if resp.StatusCode != 200 {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
		want := http.Header{
			"Authorization":     {"Bearer sa-token"},
			"Impersonate-User":  {"bob"},
			"Impersonate-Group": {"ops"},
			"Impersonate-Extra-Portcullis.dev%2foriginal-User": {"alice@example.com"},
			"X-Forwarded-For": {"127.0.0.1"},
		}
		got := identityHeaders(env.up.last().Header)
		canon := http.Header{}
		for k, v := range want {
			canon[http.CanonicalHeaderKey(k)] = v
		}
		if !reflect.DeepEqual(got, canon) {
			t.Errorf("upstream identity headers\n  %v\nwant\n  %v", got, canon)
		}
		env.up.mu.Lock()
		sars := slices.Clone(env.up.sars)
		env.up.mu.Unlock()
		if len(sars) == 0 {
			t.Fatal("no SubjectAccessReview reached the upstream")
		}
		for _, s := range sars {
			if ids := identityHeaders(s.Header); !reflect.DeepEqual(ids, http.Header{"Authorization": {"Bearer sa-token"}}) {
				t.Errorf("a SubjectAccessReview was sent with %v, want only Portcullis's token", ids)
			}
			if s.Spec.User != "alice@example.com" || !slices.Contains(s.Spec.Groups, "system:authenticated") {
				t.Errorf("SubjectAccessReview about %q %v, want alice as the cluster sees her", s.Spec.User, s.Spec.Groups)
			}
		}
	})

	for _, tt := range []struct {
		name   string
		token  string
		header http.Header
		code   int
	}{
		{name: "a user without the right is refused", token: "carol-token", header: http.Header{"Impersonate-User": {"bob"}}, code: 403},
		{name: "an identity beyond the right is refused", token: "alice-token", header: http.Header{"Impersonate-User": {"admin"}}, code: 403},
		{name: "a group beyond the right is refused", token: "alice-token", header: http.Header{"Impersonate-User": {"bob"}, "Impersonate-Group": {"system:masters"}}, code: 403},
		{name: "a group without a user is a bad request", token: "alice-token", header: http.Header{"impersonate-group": {"ops"}}, code: 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(env.up.requests())
			h := bearer(tt.token)
			for k, v := range tt.header {
				h[k] = v
			}
			resp, body := env.do(t, env.h1Client, "GET", "/clusters/c1/api/v1/namespaces/default/pods", h)
			wantStatus(t, resp, body, tt.code)
			if len(env.up.requests()) != before {
				t.Errorf("the refused request reached the upstream")
			}
		})
	}
}

func TestProxyUpdate(t *testing.T) {
	env := newTestEnv(t)
	other := newFakeUpstream(t)
	if err := env.proxy.Update([]v1alpha1.Cluster{cluster("c1", other.server.URL, env.ca, env.token)}); err != nil {
		t.Fatal(err)
	}
	resp, _ := env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	if resp.StatusCode != 200 || len(other.requests()) != 1 {
		t.Fatalf("after the update: %d, new upstream got %d requests", resp.StatusCode, len(other.requests()))
	}
	// An update that cannot be applied keeps the cluster working.
	err := env.proxy.Update([]v1alpha1.Cluster{cluster("c1", env.up.server.URL, "/nonexistent/ca.crt", env.token)})
	if err == nil {
		t.Fatal("Update with a missing CA file succeeded")
	}
	if resp, _ := env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token")); resp.StatusCode != 200 || len(other.requests()) != 2 {
		t.Fatalf("after a failed update: %d", resp.StatusCode)
	}
	if err := env.proxy.Update(nil); err != nil {
		t.Fatal(err)
	}
	resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	wantStatus(t, resp, body, 404)
}

func TestUpstreamTransportRefusesRequestsWithoutIdentity(t *testing.T) {
	env := newTestEnv(t)
	u := env.proxy.state.Load().upstreams["c1"]
	req, _ := http.NewRequest("GET", env.up.server.URL+"/api", nil)
	if _, err := u.forward.RoundTrip(req); err == nil {
		t.Fatal("a request without a resolved identity was sent upstream")
	}
	if len(env.up.requests()) != 0 {
		t.Fatal("the upstream received a request without impersonation")
	}
}

// A request with an identity but headers the reverse proxy's Rewrite did not
// prepare (or failed to) is refused too: it would carry the client's
// headers and no impersonation.
func TestUpstreamTransportRefusesUnpreparedRequests(t *testing.T) {
	env := newTestEnv(t)
	u := env.proxy.state.Load().upstreams["c1"]
	for name, fw := range map[string]*forward{
		"not prepared":       {id: &impersonatedUser{User: "alice"}},
		"failed preparation": {id: &impersonatedUser{User: "alice"}, prepared: true, prepareErr: errNoToken},
	} {
		req, _ := http.NewRequestWithContext(withForward(context.Background(), fw), "GET", env.up.server.URL+"/api", nil)
		req.Header.Set("Authorization", "Bearer alice-token")
		if _, err := u.forward.RoundTrip(req); err == nil {
			t.Errorf("%s: sent upstream", name)
		}
	}
	if len(env.up.requests()) != 0 {
		t.Fatal("the upstream received an unprepared request")
	}
}

func TestIdentityFor(t *testing.T) {
	id := identityFor(testUsers["alice-token"])
	want := &impersonatedUser{
		User: "alice@example.com", UID: "alice-uid", Groups: []string{"devs", "ops"},
		Extra: map[string][]string{
			authn.ExtraIdentityProvider: {"corp"},
			authn.ExtraSessionID:        {"sid-1"},
			"example.org/department":    {"eng"},
		},
	}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("identityFor = %+v, want %+v", id, want)
	}
}
