package hotpath

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"

	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/proxy"
)

// gateAuthenticator answers as the server's authenticator union would for
// the bearer token it is given: "anonymous" when there is none, an outage,
// a bad token, or alice.
type gateAuthenticator struct{ calls atomic.Int64 }

func (a *gateAuthenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	a.calls.Add(1)
	switch req.Header.Get("Authorization") {
	case "":
		return &authenticator.Response{User: &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}}, true, nil
	case "Bearer outage":
		return nil, false, &authn.Error{Reason: `identity provider "corp" is not ready (its signing keys could not be fetched); retry shortly`, Internal: true, Unavailable: true}
	case "Bearer outage-in-union":
		// As the server's union (with the loopback token authenticator) says it.
		return nil, false, utilerrors.NewAggregate([]error{errors.New("invalid bearer token"),
			&authn.Error{Reason: `identity provider "corp" is not ready (its signing keys could not be fetched); retry shortly`, Internal: true, Unavailable: true}})
	case "Bearer bad":
		return nil, false, &authn.Error{Reason: "signature invalid"}
	case "Bearer store-down":
		return nil, false, &authn.Error{Reason: authn.ReasonInternal, Internal: true}
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: "alice", Groups: []string{"devs"}}}, true, nil
}

// TestHotPathRefusals: through the real hot-path chain, a proxied request
// without a credential is a 401 Status (reason Unauthorized, as
// kube-apiserver answers with anonymous requests off) rather than a 403 as
// system:anonymous; a credential that cannot be checked because an identity
// provider is unreachable is a 503; headers over the cap are a 431 before
// any authentication, over HTTP/1.1 and HTTP/2.
func TestHotPathRefusals(t *testing.T) {
	auth := &gateAuthenticator{}
	c := testChainConfig(&recordingBackend{})
	c.Authentication.Authenticator = auth
	reached := atomic.Int64{}
	h := NewRouter(http.NotFoundHandler(), Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusOK)
	}), c))
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	big := strings.Repeat("x", proxy.MaxRequestHeaderBytes)
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
		code   int
		reason metav1.StatusReason
		// mention is in the Status message.
		mention string
		// authenticated: the authenticator was asked.
		authenticated bool
	}{
		{"no credential", "/clusters/c1/api/v1/pods", nil, 401, metav1.StatusReasonUnauthorized, "", true},
		{"a bad token", "/clusters/c1/api/v1/pods", http.Header{"Authorization": {"Bearer bad"}}, 401, metav1.StatusReasonUnauthorized, "", true},
		{"an identity provider outage", "/clusters/c1/api/v1/pods", http.Header{"Authorization": {"Bearer outage"}}, 503, metav1.StatusReasonServiceUnavailable, `identity provider "corp"`, true},
		{"an identity provider outage, told by an authenticator union", "/clusters/c1/api/v1/pods", http.Header{"Authorization": {"Bearer outage-in-union"}}, 503, metav1.StatusReasonServiceUnavailable, `identity provider "corp"`, true},
		// A store fault stays a 401, as before: only an unreachable
		// dependency is known to pass.
		{"an internal fault", "/clusters/c1/api/v1/pods", http.Header{"Authorization": {"Bearer store-down"}}, 401, metav1.StatusReasonUnauthorized, "", true},
		{"a valid token", "/clusters/c1/api/v1/pods", http.Header{"Authorization": {"Bearer good"}}, 200, "", "", true},
		{"headers over the cap", "/clusters/c1/api/v1/pods", http.Header{"Authorization": {"Bearer good"}, "X-Big": {big}}, 431, proxy.ReasonRequestHeaderFieldsTooLarge, "at most 32768", false},
		{"headers over the cap in many fields", "/clusters/c1/api/v1/pods", manyHeaders(40, 1000), 431, proxy.ReasonRequestHeaderFieldsTooLarge, "", false},
		{"headers under the cap", "/clusters/c1/api/v1/pods", manyHeaders(20, 1000), 200, "", "", true},
		{"a large Authorization alone", "/clusters/c1/api/v1/pods", http.Header{"Authorization": {"Bearer " + big}}, 200, "", "", true},
		// The cap is the proxy's: the webhook's callers are kube-apiservers.
		{"large headers on the webhook", "/tokenreview/c1", http.Header{"Authorization": {"Bearer good"}, "X-Big": {big}}, 403, metav1.StatusReasonForbidden, "", true},
		{"no credential on the webhook", "/tokenreview/c1", nil, 403, metav1.StatusReasonForbidden, "client certificate", true},
	} {
		for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
			t.Run(tc.name+" over "+proto, func(t *testing.T) {
				client := srv.Client()
				tr := client.Transport.(*http.Transport).Clone()
				tr.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
				if proto == "HTTP/1.1" {
					tr.ForceAttemptHTTP2 = false
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				} else {
					tr.ForceAttemptHTTP2 = true
				}
				tr.MaxResponseHeaderBytes = 1 << 20
				defer tr.CloseIdleConnections()
				req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
				for k, v := range tc.header {
					req.Header[k] = v
				}
				req.Header.Set("Accept", "application/json")
				before, reachedBefore := auth.calls.Load(), reached.Load()
				resp, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.Proto != proto {
					t.Fatalf("answered over %s", resp.Proto)
				}
				if resp.StatusCode != tc.code {
					t.Fatalf("HTTP %d, want %d", resp.StatusCode, tc.code)
				}
				if asked := auth.calls.Load() > before; asked != tc.authenticated {
					t.Errorf("authenticator asked: %v, want %v", asked, tc.authenticated)
				}
				if tc.code == 200 {
					if reached.Load() == reachedBefore {
						t.Errorf("the handler was not reached")
					}
					return
				}
				var s metav1.Status
				if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || s.Kind != "Status" || int(s.Code) != tc.code || s.Reason != tc.reason {
					t.Fatalf("body is not a Status %d %s: %+v (%v)", tc.code, tc.reason, s, err)
				}
				if !strings.Contains(s.Message, tc.mention) {
					t.Errorf("message %q does not mention %q", s.Message, tc.mention)
				}
			})
		}
	}
}

func manyHeaders(n, size int) http.Header {
	h := http.Header{"Authorization": {"Bearer good"}}
	for i := range n {
		h["X-Filler-"+strings.Repeat("a", i%10)+string(rune('a'+i%26))+string(rune('a'+i/26))] = []string{strings.Repeat("v", size)}
	}
	return h
}

// TestGateForgetsEveryRefusal: what the gate records for the failed handler
// is removed when the handler answers, so nothing accumulates.
func TestGateForgetsEveryRefusal(t *testing.T) {
	auth := &gateAuthenticator{}
	c := testChainConfig(&recordingBackend{})
	g := &gate{inner: auth}
	failed := &failedAuthentication{gate: g, unauthorized: http.NotFoundHandler(), refused: refusedHandler(c.Serializer)}
	for _, hdr := range []http.Header{
		{"Authorization": {"Bearer outage"}},
		{"X-Big": {strings.Repeat("x", proxy.MaxRequestHeaderBytes)}},
		{"Authorization": {"Bearer bad"}},
	} {
		req := httptest.NewRequest(http.MethodGet, "/clusters/c1/api", nil)
		req.Header = hdr
		if _, ok, err := g.AuthenticateRequest(req); ok || err == nil {
			t.Fatalf("%v: authenticated", hdr)
		}
		failed.ServeHTTP(httptest.NewRecorder(), req)
	}
	n := 0
	g.refused.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d refusals left behind", n)
	}
}

// The gate costs an authenticated request no allocation (the webhook and
// the proxy are benchmarked per allocation).
func TestGateAllocatesNothingOnSuccess(t *testing.T) {
	resp := &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}
	g := &gate{inner: authenticator.RequestFunc(func(*http.Request) (*authenticator.Response, bool, error) { return resp, true, nil })}
	for _, path := range []string{"/clusters/c1/api/v1/namespaces/default/pods", "/tokenreview/c1"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer x")
		req.Header.Set("Accept", "application/json")
		if n := testing.AllocsPerRun(100, func() { _, _, _ = g.AuthenticateRequest(req) }); n != 0 {
			t.Errorf("%s: %v allocations", path, n)
		}
	}
}
