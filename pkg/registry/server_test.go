package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testkit"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/component-base/compatibility"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/install"
	loginopenapi "portcullis.dev/portcullis/pkg/apis/login/openapi"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
)

// oidcIssuer is internal/testkit's fake OpenID provider, signing with RS256
// whatever ID tokens a test asks for.
type oidcIssuer struct{ *testkit.IdP }

func newOIDCIssuer(tb testing.TB) *oidcIssuer {
	tb.Helper()
	return &oidcIssuer{testkit.NewRS256IdP(tb)}
}

// idToken signs claims, filling iss, aud (portcullis), sub, email and the
// times unless the test set them.
func (i *oidcIssuer) idToken(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	now := time.Now()
	c := map[string]any{
		"iss": i.URL, "aud": "portcullis", "sub": "alice-sub", "email": "alice@example.com", "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range claims {
		c[k] = v
	}
	return i.Sign(c)
}

// withIdP adds the issuer to the fixture as the IdP "test", whose ID tokens
// are accepted directly, and waits until its keys are loaded.
func (f *fixture) withIdP(tb testing.TB, iss *oidcIssuer) {
	tb.Helper()
	f.cfg.IdentityProviders = []configv1alpha1.IdentityProvider{{
		Name:           "test",
		Issuer:         apiserverv1.Issuer{URL: iss.URL, Audiences: []string{"portcullis"}, CertificateAuthority: iss.CAPEM},
		ClaimMappings:  apiserverv1.ClaimMappings{Username: apiserverv1.PrefixedClaimOrExpression{Claim: "email", Prefix: ptr("")}},
		ClientID:       "portcullis",
		AcceptIDTokens: true,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	idps, err := identity.NewProviders(ctx, f.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	for _, p := range idps.List() {
		if err := p.WaitReady(wctx); err != nil {
			tb.Fatal(err)
		}
	}
	f.authn.IdPs = idps
}

func ptr[T any](v T) *T { return &v }

// testServer is the group installed in a generic apiserver on loopback, the
// way portcullis-server installs it: anonymous requests, bearer "user:<name>"
// tokens for named users, and an authorizer that lets "admin" do anything.
type testServer struct {
	URL    string
	Client *http.Client
}

func startTestServer(tb testing.TB, o Options) *testServer {
	tb.Helper()
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	scheme.AddUnversionedTypes(schema.GroupVersion{Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	install.Install(scheme)
	codecs := serializer.NewCodecFactory(scheme)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ss := genericoptions.NewSecureServingOptions().WithLoopback()
	ss.Listener = ln
	ss.BindAddress = net.ParseIP("127.0.0.1")
	ss.ServerCert.CertDirectory = tb.TempDir()
	if err := ss.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		tb.Fatal(err)
	}
	c := genericapiserver.NewRecommendedConfig(codecs)
	c.EffectiveVersion = compatibility.NewEffectiveVersionFromString("", "", "")
	if err := ss.ApplyTo(&c.SecureServing, &c.LoopbackClientConfig); err != nil {
		tb.Fatal(err)
	}
	c.Authentication.Authenticator = authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		if name, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer user:"); ok {
			return &authenticator.Response{User: &user.DefaultInfo{Name: name, Groups: []string{user.AllAuthenticated}}}, true, nil
		}
		return anonymous.NewAuthenticator(nil).AuthenticateRequest(req)
	})
	c.Authorization.Authorizer = WithPublicResources(authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if a.GetUser().GetName() == "admin" {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	}))
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(loginopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(install.OpenAPINamerScheme()))
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(loginopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(install.OpenAPINamerScheme()))
	chain := c.BuildHandlerChainFunc
	c.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		return chain(WithClientAddress(h), c)
	}
	srv, err := c.Complete().New("registry-test", genericapiserver.NewEmptyDelegate())
	if err != nil {
		tb.Fatal(err)
	}
	info, err := NewAPIGroupInfo(scheme, codecs, o)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.InstallAPIGroup(info); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.PrepareRun().RunWithContext(ctx); err != nil {
			tb.Errorf("test apiserver: %v", err)
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })

	certPEM, err := os.ReadFile(filepath.Join(ss.ServerCert.CertDirectory, "apiserver.crt"))
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	ts := &testServer{
		URL: "https://" + ln.Addr().String(),
		Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
			MaxIdleConnsPerHost: 256,
		}},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer user:admin")
		resp, err := ts.Client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return ts
			}
			err = fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the test apiserver never became ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type response struct {
	code int
	body []byte
}

func (ts *testServer) do(tb testing.TB, method, path, bearer, contentType string, body []byte) response {
	tb.Helper()
	req, err := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := ts.Client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{code: resp.StatusCode, body: b}
}

const tcrPath = "/apis/login.portcullis.dev/v1alpha1/tokencredentialrequests"

func tcrJSON(cluster, tok string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"TokenCredentialRequest","spec":{"cluster":%q,"token":%q}}`, cluster, tok))
}

func TestHTTP_ExchangesAndHostileRequestsNeverGetA500(t *testing.T) {
	f := newFixture(t)
	iss := newOIDCIssuer(t)
	f.withIdP(t, iss)
	other := newOIDCIssuer(t)
	ts := startTestServer(t, f.options())

	type want struct {
		code    int
		reason  string // status.reason of a 201, or the Status reason of an error
		message string
	}
	for _, tc := range []struct {
		name        string
		body        []byte
		contentType string
		want        want
	}{
		{name: "an ID token of a trusted IdP", body: tcrJSON("dev", iss.idToken(t, nil)), want: want{code: 201}},
		{name: "an expired ID token", body: tcrJSON("dev", iss.idToken(t, map[string]any{"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})),
			want: want{code: 201, reason: "AuthenticationFailed", message: "expired"}},
		{name: "an ID token for another audience", body: tcrJSON("dev", iss.idToken(t, map[string]any{"aud": "someone-else"})),
			want: want{code: 201, reason: "AuthenticationFailed", message: "authentication failed"}},
		{name: "an ID token of an unknown issuer", body: tcrJSON("dev", other.idToken(t, nil)),
			want: want{code: 201, reason: "AuthenticationFailed", message: "not issued by Portcullis or a trusted identity provider"}},
		{name: "a forged ID token (trusted issuer, foreign key)", body: tcrJSON("dev", other.idToken(t, map[string]any{"iss": iss.URL})),
			want: want{code: 201, reason: "AuthenticationFailed", message: "authentication failed"}},
		{name: "a user the policy refuses", body: tcrJSON("prod", iss.idToken(t, map[string]any{"email": "mallory@example.com"})),
			want: want{code: 201, reason: "PolicyDenied", message: "access denied"}},
		{name: "an unknown cluster", body: tcrJSON("staging", iss.idToken(t, nil)),
			want: want{code: 201, reason: "UnknownCluster"}},
		{name: "missing fields", body: []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"TokenCredentialRequest","spec":{}}`),
			want: want{code: 422, reason: "Invalid", message: "spec.token: Required value"}},
		{name: "no spec at all", body: []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"TokenCredentialRequest"}`),
			want: want{code: 422, reason: "Invalid"}},
		{name: "the wrong kind", body: []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"WhoAmIRequest"}`),
			want: want{code: 400, reason: "BadRequest"}},
		{name: "an unknown kind", body: []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"Secret","spec":{}}`),
			want: want{code: 400, reason: "BadRequest"}},
		{name: "another group's version", body: []byte(`{"apiVersion":"v1","kind":"Secret"}`),
			want: want{code: 400, reason: "BadRequest"}},
		{name: "not JSON", body: []byte(`{"spec":`),
			want: want{code: 400, reason: "BadRequest"}},
		{name: "an unknown field", body: []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"TokenCredentialRequest","spec":{"cluster":"dev","token":"a.b.c","tokne":"x"}}`),
			want: want{code: 201, reason: "AuthenticationFailed"}},
		{name: "a token too big", body: tcrJSON("dev", strings.Repeat("A", 70<<10)),
			want: want{code: 422, reason: "Invalid", message: "spec.token: Too long"}},
		{name: "a body too big", body: tcrJSON("dev", strings.Repeat("A", 4<<20)),
			want: want{code: 413, reason: "RequestEntityTooLarge"}},
		{name: "an unsupported media type", body: []byte("token=x"), contentType: "application/x-www-form-urlencoded",
			want: want{code: 415, reason: "UnsupportedMediaType"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			resp := ts.do(t, http.MethodPost, tcrPath, "", ct, tc.body)
			if resp.code >= 500 {
				t.Fatalf("HTTP %d: %.300s", resp.code, resp.body)
			}
			if resp.code != tc.want.code {
				t.Fatalf("HTTP %d, want %d: %.300s", resp.code, tc.want.code, resp.body)
			}
			if bytes.Contains(resp.body, []byte(strings.Repeat("A", 100))) {
				t.Errorf("the response echoes the token")
			}
			if bytes.Contains(resp.body, []byte("managedFields")) {
				t.Errorf("the response carries managedFields: %.300s", resp.body)
			}
			if resp.code == 201 {
				var got v1alpha1.TokenCredentialRequest
				if err := json.Unmarshal(resp.body, &got); err != nil {
					t.Fatal(err)
				}
				if string(got.Status.Reason) != tc.want.reason || !strings.Contains(got.Status.Message, tc.want.message) {
					t.Errorf("status = %q %q, want %q containing %q", got.Status.Reason, got.Status.Message, tc.want.reason, tc.want.message)
				}
				if (tc.want.reason == "") != (got.Status.Token != "") {
					t.Errorf("status = %+v: a token exactly when there is no reason", got.Status)
				}
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(resp.body, &st); err != nil || st.Kind != "Status" {
				t.Fatalf("HTTP %d without a Status (%v): %.300s", resp.code, err, resp.body)
			}
			if string(st.Reason) != tc.want.reason || !strings.Contains(st.Message, tc.want.message) {
				t.Errorf("Status = %s %q, want %s containing %q", st.Reason, st.Message, tc.want.reason, tc.want.message)
			}
		})
	}
}

func TestHTTP_DiscoveryWhoAmIAndSessionsThroughTheHandlerChain(t *testing.T) {
	f := newFixture(t)
	f.addSession("s-1", "alice", time.Hour)
	ts := startTestServer(t, f.options())

	if r := ts.do(t, http.MethodGet, "/apis/login.portcullis.dev/v1alpha1", "", "", nil); r.code != 200 ||
		!bytes.Contains(r.body, []byte(`"tokencredentialrequests"`)) || !bytes.Contains(r.body, []byte(`"sessions"`)) {
		t.Errorf("anonymous discovery: %d %.300s", r.code, r.body)
	}
	if r := ts.do(t, http.MethodGet, "/openapi/v3/apis/login.portcullis.dev/v1alpha1", "", "", nil); r.code != 200 ||
		!bytes.Contains(r.body, []byte("TokenCredentialRequest")) {
		t.Errorf("anonymous OpenAPI v3: %d %.200s", r.code, r.body)
	}

	whoami := []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"WhoAmIRequest"}`)
	r := ts.do(t, http.MethodPost, "/apis/login.portcullis.dev/v1alpha1/whoamirequests", "user:alice", "application/json", whoami)
	if r.code != 201 || !bytes.Contains(r.body, []byte(`"username":"alice"`)) {
		t.Errorf("whoami as alice: %d %.300s", r.code, r.body)
	}
	if r := ts.do(t, http.MethodPost, "/apis/login.portcullis.dev/v1alpha1/whoamirequests", "", "application/json", whoami); r.code != 403 {
		t.Errorf("anonymous whoami without RBAC: %d, want 403: %.300s", r.code, r.body)
	}

	const sessions = "/apis/login.portcullis.dev/v1alpha1/sessions"
	if r := ts.do(t, http.MethodGet, sessions, "user:alice", "", nil); r.code != 403 {
		t.Errorf("alice lists sessions: %d, want 403", r.code)
	}
	if r := ts.do(t, http.MethodDelete, sessions+"/s-1", "", "", nil); r.code != 403 {
		t.Errorf("anonymous deletes a session: %d, want 403", r.code)
	}
	if r := ts.do(t, http.MethodGet, sessions, "user:admin", "", nil); r.code != 200 || !bytes.Contains(r.body, []byte(`"s-1"`)) || bytes.Contains(r.body, []byte("upstream-secret")) {
		t.Errorf("admin lists sessions: %d %.300s", r.code, r.body)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+sessions, nil)
	req.Header.Set("Authorization", "Bearer user:admin")
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if resp, err := ts.Client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("sessions as a table: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if r := ts.do(t, http.MethodDelete, sessions+"/s-1", "user:admin", "", nil); r.code != 200 {
		t.Errorf("admin deletes s-1: %d %.300s", r.code, r.body)
	}
	if r := ts.do(t, http.MethodDelete, sessions+"/s-1", "user:admin", "", nil); r.code != 404 {
		t.Errorf("admin deletes s-1 again: %d, want 404", r.code)
	}
	if revoked, err := f.store.IsRevoked(context.Background(), "s-1"); err != nil || !revoked {
		t.Errorf("s-1 revoked = %v, %v; want true", revoked, err)
	}
	for _, m := range []string{http.MethodPut, http.MethodPatch} {
		if r := ts.do(t, m, sessions+"/s-1", "user:admin", "application/merge-patch+json", []byte(`{}`)); r.code != 405 && r.code != 404 {
			t.Errorf("%s a session: %d, want 405", m, r.code)
		}
	}
	if r := ts.do(t, http.MethodGet, tcrPath, "user:admin", "", nil); r.code != 405 {
		t.Errorf("list TokenCredentialRequests: %d, want 405 (create-only)", r.code)
	}
}

func TestHTTP_ThrottledClientsGet429WithRetryAfter(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.RateLimit = RateLimit{QPS: 0.1, Burst: 3}
	ts := startTestServer(t, o)
	body := tcrJSON("dev", "a.b.c")
	var codes []int
	for range 5 {
		codes = append(codes, ts.do(t, http.MethodPost, tcrPath, "", "application/json", body).code)
	}
	if fmt.Sprint(codes) != "[201 201 201 429 429]" {
		t.Errorf("codes = %v, want three exchanges then 429s", codes)
	}
	// Another (authenticated) client is not throttled.
	if r := ts.do(t, http.MethodPost, tcrPath, "user:ci", "application/json", body); r.code != 201 {
		t.Errorf("another client: %d", r.code)
	}
}
