package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"portcullis.dev/portcullis/pkg/apis/config"
	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/test/e2e/framework"
)

const (
	aggCluster  = "e2e"
	aggSession  = "e2e-session"
	aggAPIGroup = "/apis/login.portcullis.dev/v1alpha1"
)

// aggStack is kube-apiserver with Portcullis registered as an aggregated
// API (from artifacts/overlays/aggregated) and as its token webhook.
type aggStack struct {
	pki         *framework.PKI
	dex         *framework.Dex
	ci          *framework.TestIssuer // an IdP Portcullis trusts (arbitrary claims)
	unknown     *framework.TestIssuer // an issuer nobody trusts
	api         *framework.APIServer
	portcullis  *framework.Portcullis
	servingCA   *framework.CA
	direct      string // https://127.0.0.1:<port> of Portcullis
	auditLog    string
	carol, dave string // static-token users of kube-apiserver
	// sessionToken is a cluster token of the session aggSession, minted
	// before Portcullis started (the embedded store is single-process).
	sessionToken string
}

func aggConfig(port int, stateDir string, dex *framework.Dex, ci *framework.TestIssuer, pki *framework.PKI, webhookCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
identityProviders:
- name: dex
  issuer:
    url: %s
  certificateAuthorityFile: %s
  clientID: %s
  acceptIDTokens: true
  claimMappings:
    username:
      claim: email
      prefix: ""
- name: ci
  issuer:
    url: %s
    audiences: [portcullis-ci]
  certificateAuthorityFile: %s
  acceptIDTokens: true
  claimMappings:
    username:
      claim: sub
      prefix: "ci:"
groupMappings:
- match:
    emails: [alice@example.com]
  groups: [devs]
clusters:
- name: %s
  access:
    groups: [devs]
    users: [ci:runner]
webhook:
  clientCAFile: %s
`, port, filepath.Join(stateDir, "state.db"), dex.IssuerURL, dex.CAFile, dex.ClientID, ci.URL, pki.CA.CertFile, aggCluster, webhookCA)
}

// aggOptions change startAggStack's stack.
type aggOptions struct {
	// jit adds justInTime policies (jitPolicy) to cluster e2e and a second
	// cluster, aggProxyCluster, whose upstream is the same kube-apiserver
	// (proxy mode), with the artifacts' proxy RBAC.
	jit bool
	// notifications is appended to the configuration (a top-level
	// notifications: section) when set.
	notifications string
}

const aggProxyCluster = "e2e-proxy"

// jitPolicy: alice and carol approve; sre-admin for up to 1m; one approval.
const jitPolicy = `  justInTime:
    requestableGroups: [sre-admin]
    maxDuration: 1m
    approvers:
      users: [carol, alice@example.com]
`

func startAggStack(t *testing.T, opts ...aggOptions) *aggStack {
	t.Helper()
	var o aggOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx := context.Background()
	s := &aggStack{pki: framework.NewPKI(t)}
	s.dex = framework.StartDex(t, framework.DexOptions{
		PKI: s.pki, PasswordGrant: true,
		ExtraClients: []framework.DexClient{{ID: "other-app", Secret: "other-app-secret", RedirectURIs: []string{framework.DefaultDexRedirectURI}}},
	})
	s.ci = framework.StartTestIssuer(t, s.pki)
	s.unknown = framework.StartTestIssuer(t, s.pki)

	// Portcullis's serving certificate names the Service kube-apiserver
	// dials (portcullis.portcullis.svc), and is signed by a CA of its own
	// that the APIService's caBundle and the webhook kubeconfig trust.
	port := framework.FreePort(t)
	s.direct = fmt.Sprintf("https://127.0.0.1:%d", port)
	s.servingCA = s.pki.NewCA("portcullis-serving-ca", "portcullis-e2e-serving-ca")
	serving := s.servingCA.IssueServing("127.0.0.1", "localhost", "portcullis.portcullis.svc")
	webhookCA := s.pki.NewCA("webhook-client-ca", "portcullis-e2e-webhook-client-ca")
	webhookClient := webhookCA.IssueClient("kube-apiserver")

	carolToken, daveToken := "carol-"+randomToken(t), "dave-"+randomToken(t)
	s.api = framework.StartAPIServer(t, framework.APIServerOptions{
		PKI:               s.pki,
		WebhookKubeconfig: framework.WebhookKubeconfig(fmt.Sprintf("%s/tokenreview/%s", s.direct, aggCluster), s.servingCA.CertPEM, &webhookClient),
		WebhookVersion:    "v1",
		WebhookCacheTTL:   "0s",
		Tokens: []framework.StaticToken{
			{Token: carolToken, User: "carol", UID: "carol-uid", Groups: []string{"qa"}},
			{Token: daveToken, User: "dave", UID: "dave-uid", Groups: []string{"auditors"}},
		},
	})
	s.carol, s.dave = s.api.KubeconfigFor(carolToken), s.api.KubeconfigFor(daveToken)
	admin := s.api.AdminKubeconfig()

	// The aggregated overlay as an operator applies it, but for where
	// Portcullis runs: on loopback, behind an ExternalName Service.
	objs := decodeObjects(t, renderOverlay(t, "aggregated"))
	for _, o := range objs {
		switch {
		case o.GetKind() == "Service" && o.GetName() == "portcullis":
			o.Object["spec"] = map[string]any{
				"type": "ExternalName", "externalName": "localhost",
				"ports": []any{map[string]any{"name": "https", "port": int64(port), "protocol": "TCP"}},
			}
		case o.GetKind() == "APIService":
			must(t, unstructured.SetNestedField(o.Object, int64(port), "spec", "service", "port"))
			must(t, unstructured.SetNestedField(o.Object, base64.StdEncoding.EncodeToString(s.servingCA.CertPEM), "spec", "caBundle"))
		}
	}
	// The APIService goes in once Portcullis serves (below): registered
	// earlier, kube-apiserver's first OpenAPI download fails and is retried
	// only a minute later, and kubectl validates against that OpenAPI.
	var apiService []*unstructured.Unstructured
	objs = slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool {
		if o.GetKind() == "APIService" {
			apiService = append(apiService, o)
			return true
		}
		return false
	})
	apply := func(objs []*unstructured.Unstructured) {
		t.Helper()
		if out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: admin, Stdin: bytes.NewReader(encodeObjects(t, objs))}, "apply", "-f", "-"); err != nil {
			t.Fatalf("applying the aggregated overlay: %v\n%s%s", err, out, stderr)
		}
	}
	apply(objs)

	// Portcullis runs as the overlay's service account, with nothing but
	// the overlay's RBAC.
	saToken, stderr, err := framework.Kubectl(t, admin, "create", "token", "portcullis", "-n", "portcullis", "--duration=2h")
	if err != nil {
		t.Fatalf("kubectl create token: %v: %s", err, stderr)
	}
	saKubeconfig := s.api.KubeconfigFor(strings.TrimSpace(saToken))

	stateDir := t.TempDir()
	cfgYAML := aggConfig(port, stateDir, s.dex, s.ci, s.pki, webhookCA.CertFile)
	if o.jit {
		manifest := filepath.Join(framework.RepoRoot(t), "artifacts", "rbac", "proxy-clusterrole.yaml")
		if out, stderr, err := framework.Kubectl(t, admin, "apply", "-f", manifest); err != nil {
			t.Fatalf("applying %s: %v\n%s%s", manifest, err, out, stderr)
		}
		tok, stderr, err := framework.Kubectl(t, admin, "create", "token", "portcullis-proxy", "-n", "portcullis", "--duration", "2h")
		if err != nil {
			t.Fatalf("kubectl create token: %v: %s", err, stderr)
		}
		tokenFile := filepath.Join(stateDir, "proxy-token")
		must(t, os.WriteFile(tokenFile, []byte(strings.TrimSpace(tok)), 0o600))
		clusters := jitPolicy + fmt.Sprintf(`- name: %s
  access:
    groups: [devs]
  upstream:
    server: %s
    certificateAuthorityFile: %s
    tokenFile: %s
`, aggProxyCluster, s.api.URL, s.api.CAFile, tokenFile) + jitPolicy
		cfgYAML = strings.Replace(cfgYAML, "    users: [ci:runner]\n", "    users: [ci:runner]\n"+clusters, 1)
	}
	cfgYAML += o.notifications
	s.sessionToken = seedSession(t, ctx, stateDir, cfgYAML)

	s.auditLog = filepath.Join(stateDir, "audit.log")
	s.portcullis = framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: cfgYAML, Port: port, ExtraArgs: []string{
		"--tls-cert-file=" + serving.CertFile,
		"--tls-private-key-file=" + serving.KeyFile,
		"--authentication-kubeconfig=" + saKubeconfig,
		"--authorization-kubeconfig=" + saKubeconfig,
		"--audit-policy-file=" + filepath.Join(framework.RepoRoot(t), "artifacts", "audit", "policy.yaml"),
		"--audit-log-path=" + s.auditLog,
		"--audit-log-mode=blocking",
	}})

	// The APIService becomes Available once kube-apiserver reaches
	// Portcullis through the Service with the caBundle, and kubectl can
	// use the group once its OpenAPI is aggregated.
	apply(apiService)
	var last string
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		out, _, err := framework.Kubectl(t, admin, "get", "apiservice", "v1alpha1.login.portcullis.dev",
			"-o", `jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		last = out
		return err == nil && strings.HasPrefix(out, "True"), nil
	}); err != nil {
		t.Fatalf("the APIService never became Available: %s", last)
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		out, _, err := framework.Kubectl(t, admin, "get", "--raw", "/openapi/v3")
		return err == nil && strings.Contains(out, `"apis/login.portcullis.dev/v1alpha1"`), nil
	}); err != nil {
		t.Fatalf("kube-apiserver never aggregated Portcullis's OpenAPI")
	}
	return s
}

// seedSession writes a login session for alice into the store and mints a
// cluster token for it, as the portal would, before the server holds the
// store.
func seedSession(t *testing.T, ctx context.Context, stateDir, cfgYAML string) string {
	t.Helper()
	path := filepath.Join(stateDir, "seed-config.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	km, err := server.NewKeys(ctx, cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	minter, err := token.NewMinter(km, cfg.IssuerURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hash := sha256.Sum256([]byte("refresh-secret"))
	must(t, st.CreateSession(ctx, store.Session{
		ID: aggSession, Username: "alice@example.com", Groups: []string{"devs"}, Email: "alice@example.com",
		IdentityProvider: "dex", RefreshTokenHash: hash[:], ClientAddress: "192.0.2.10",
		CreatedAt: now, LastUsedAt: now, IdleTimeout: time.Hour, ExpiresAt: now.Add(24 * time.Hour),
	}))
	raw, _, err := minter.Mint(ctx, token.Claims{
		Subject: "alice", Username: "alice@example.com", Groups: []string{"devs"}, Email: "alice@example.com",
		IdentityProvider: "dex", Audience: []string{aggCluster}, SessionID: aggSession, Expiry: now.Add(15 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func randomToken(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func tcrManifest(cluster, tok string) string {
	return fmt.Sprintf("apiVersion: login.portcullis.dev/v1alpha1\nkind: TokenCredentialRequest\nmetadata:\n  generateName: e2e-\nspec:\n  cluster: %s\n  token: %s\n", cluster, tok)
}

const whoamiManifest = "apiVersion: login.portcullis.dev/v1alpha1\nkind: WhoAmIRequest\n"

// kubectlCreate is `kubectl create -f - -o json <args>` of manifest.
//
// Users who may not list CustomResourceDefinitions need --validate=false
// for create-only kinds (ours, as kube-apiserver's own TokenReview): kubectl
// looks for the kind's PATCH operation in the OpenAPI to decide whether the
// server validates fields, finds none, and then asks whether the kind is a
// CRD. The server validates the object either way.
func kubectlCreate(t *testing.T, kubeconfig, manifest string, into any, args ...string) (string, error) {
	t.Helper()
	out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: kubeconfig, Stdin: strings.NewReader(manifest)}, append([]string{"create", "-f", "-", "-o", "json"}, args...)...)
	if err != nil {
		return stderr, err
	}
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("kubectl create -o json: %v: %s", err, out)
	}
	return stderr, nil
}

func aggWhoAmI(t *testing.T, kubeconfig string, args ...string) (loginv1alpha1.UserInfo, string, error) {
	t.Helper()
	var w loginv1alpha1.WhoAmIRequest
	stderr, err := kubectlCreate(t, kubeconfig, whoamiManifest, &w, args...)
	return w.Status.UserInfo, stderr, err
}

type httpResult struct {
	code       int
	body       []byte
	retryAfter string
}

// post sends body to url with an optional bearer token, client certificate
// and extra headers.
func post(t *testing.T, client *http.Client, method, url, bearer string, body []byte, headers map[string]string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{code: resp.StatusCode, body: b, retryAfter: resp.Header.Get("Retry-After")}
}

// directClient talks to Portcullis itself, not through kube-apiserver,
// optionally presenting a client certificate.
func (s *aggStack) directClient(t *testing.T, cert *framework.KeyPair) *http.Client {
	t.Helper()
	hc := framework.HTTPClientFor(framework.CertPool(s.servingCA))
	if cert != nil {
		c, err := cert.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{c}
	}
	return hc
}

func TestAggregatedAPI(t *testing.T) {
	t.Parallel()
	s := startAggStack(t)
	ctx := context.Background()
	admin := s.api.AdminKubeconfig()
	alice := framework.DefaultDexUsers[0]
	idToken, err := s.dex.IDToken(ctx, alice.Email, alice.Password, s.dex.ClientID, s.dex.ClientSecret, []string{"openid", "email", "profile"})
	if err != nil {
		t.Fatal(err)
	}
	var exchanged string

	t.Run("kubectl create of a TokenCredentialRequest with a Dex ID token returns a token that works in webhook mode", func(t *testing.T) {
		// carol has no rights of her own: every authenticated user may
		// exchange (artifacts' portcullis:credential-exchange).
		var got loginv1alpha1.TokenCredentialRequest
		if stderr, err := kubectlCreate(t, s.carol, tcrManifest(aggCluster, idToken), &got, "--validate=false"); err != nil {
			t.Fatalf("kubectl create: %v: %s", err, stderr)
		}
		if got.Status.Token == "" || got.Status.ExpirationTimestamp == nil || got.Status.Reason != "" {
			t.Fatalf("status = %+v, want a token", got.Status)
		}
		if got.Spec.Token != "" {
			t.Errorf("the response echoes the ID token")
		}
		if left := time.Until(got.Status.ExpirationTimestamp.Time); left <= 0 || left > 15*time.Minute+time.Minute {
			t.Errorf("the token expires in %v, want tokens.lifetime (15m)", left)
		}
		if !strings.HasPrefix(got.Name, "e2e-") {
			t.Errorf("name = %q, want one generated from e2e-", got.Name)
		}
		exchanged = got.Status.Token
		w, stderr, err := whoamiJSON(t, s.api.KubeconfigFor(exchanged))
		if err != nil {
			t.Fatalf("kubectl auth whoami with the exchanged token: %v: %s", err, stderr)
		}
		if w.Status.UserInfo.Username != alice.Email || !hasAll(w.Status.UserInfo.Groups, "devs", "system:authenticated") {
			t.Errorf("whoami = %+v, want %s in devs", w.Status.UserInfo, alice.Email)
		}
		if got := w.Status.UserInfo.Extra["portcullis.dev/cluster"]; !slices.Equal(got, []string{aggCluster}) {
			t.Errorf("extra portcullis.dev/cluster = %v, want [%s]", got, aggCluster)
		}
	})

	t.Run("an anonymous client exchanges a token through kube-apiserver", func(t *testing.T) {
		// kubectl prompts for a password when it has no credentials, so
		// anonymous clients (CI jobs, the portcullis CLI) post directly.
		hc := framework.HTTPClientFor(framework.CertPool(s.pki.CA))
		r := post(t, hc, http.MethodPost, s.api.URL+aggAPIGroup+"/tokencredentialrequests", "", []byte(tcrJSONBody(aggCluster, idToken)), nil)
		var got loginv1alpha1.TokenCredentialRequest
		if r.code != 201 || json.Unmarshal(r.body, &got) != nil || got.Status.Token == "" {
			t.Fatalf("HTTP %d %.400s, want 201 with a token", r.code, r.body)
		}
		w, stderr, err := whoamiJSON(t, s.api.KubeconfigFor(got.Status.Token))
		if err != nil || w.Status.UserInfo.Username != alice.Email {
			t.Errorf("whoami with the anonymously exchanged token: %+v %v %s", w, err, stderr)
		}
		// Anonymous clients may do that and nothing else.
		r = post(t, hc, http.MethodGet, s.api.URL+aggAPIGroup+"/sessions", "", nil, nil)
		if r.code != 403 {
			t.Errorf("anonymous list sessions: HTTP %d, want 403", r.code)
		}
	})

	t.Run("a WhoAmIRequest returns the caller as kube-apiserver authenticated them", func(t *testing.T) {
		u, stderr, err := aggWhoAmI(t, admin)
		if err != nil {
			t.Fatalf("as admin: %v: %s", err, stderr)
		}
		if u.Username != "admin" || u.UID != "admin-uid" || !hasAll(u.Groups, "system:masters", "system:authenticated") {
			t.Errorf("as admin: %+v, want admin in system:masters", u)
		}
		if u, stderr, err = aggWhoAmI(t, s.carol, "--validate=false"); err != nil || u.Username != "carol" || !hasAll(u.Groups, "qa") {
			t.Errorf("as carol: %+v %v %s", u, err, stderr)
		}
		if exchanged == "" {
			t.Skip("no exchanged token")
		}
		// kube-apiserver authenticated this one by asking Portcullis, and
		// passes its extras on through the front proxy.
		u, stderr, err = aggWhoAmI(t, s.api.KubeconfigFor(exchanged), "--validate=false")
		if err != nil {
			t.Fatalf("with the exchanged token: %v: %s", err, stderr)
		}
		if u.Username != alice.Email || !slices.Equal(u.Extra["portcullis.dev/idp"], loginv1alpha1.ExtraValue{"dex"}) {
			t.Errorf("with the exchanged token: %+v, want %s with extra portcullis.dev/idp=dex", u, alice.Email)
		}
		hc := framework.HTTPClientFor(framework.CertPool(s.pki.CA))
		if r := post(t, hc, http.MethodPost, s.api.URL+aggAPIGroup+"/whoamirequests", "", []byte(whoamiJSONBody), nil); r.code != 403 {
			t.Errorf("anonymous whoami: HTTP %d %.300s, want 403 (only authenticated users may ask)", r.code, r.body)
		}
	})

	t.Run("RBAC denies a user without the right verb", func(t *testing.T) {
		_, stderr, err := framework.Kubectl(t, s.carol, "get", "sessions.login.portcullis.dev")
		if err == nil || !strings.Contains(stderr, `cannot list resource "sessions"`) {
			t.Errorf("carol lists sessions: err=%v stderr=%s, want forbidden", err, stderr)
		}
		if _, stderr, err := framework.Kubectl(t, admin, "create", "clusterrolebinding", "dave-session-viewer", "--clusterrole=portcullis:session-viewer", "--user=dave"); err != nil {
			t.Fatalf("create clusterrolebinding: %v: %s", err, stderr)
		}
		var out string
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			out, stderr, err = framework.Kubectl(t, s.dave, "get", "sessions.login.portcullis.dev")
			return err == nil, nil
		}); err != nil {
			t.Fatalf("dave, a session viewer, cannot list sessions: %s", stderr)
		}
		if !strings.Contains(out, aggSession) || !strings.Contains(out, alice.Email) {
			t.Errorf("dave's session list lacks %s of %s:\n%s", aggSession, alice.Email, out)
		}
		_, stderr, err = framework.Kubectl(t, s.dave, "delete", "sessions.login.portcullis.dev", aggSession)
		if err == nil || !strings.Contains(stderr, `cannot delete resource "sessions"`) {
			t.Errorf("dave deletes a session: err=%v stderr=%s, want forbidden", err, stderr)
		}
	})

	t.Run("Portcullis asks the cluster's RBAC itself (delegated authorization)", func(t *testing.T) {
		// Straight to Portcullis with kube-apiserver's front-proxy
		// certificate: Portcullis trusts the headers and asks RBAC.
		hc := s.directClient(t, &s.pki.FrontProxyClient)
		if r := post(t, hc, http.MethodGet, s.direct+aggAPIGroup+"/sessions", "", nil, map[string]string{"X-Remote-User": "dave"}); r.code != 200 {
			t.Errorf("dave through the front proxy: HTTP %d %s, want 200", r.code, r.body)
		}
		r := post(t, hc, http.MethodGet, s.direct+aggAPIGroup+"/sessions", "", nil, map[string]string{"X-Remote-User": "carol"})
		if r.code != 403 || !bytes.Contains(r.body, []byte(`User \"carol\" cannot list resource \"sessions\"`)) {
			t.Errorf("carol through the front proxy: HTTP %d %s, want 403", r.code, r.body)
		}
	})

	t.Run("requests bypassing the front proxy with forged X-Remote-User headers are refused", func(t *testing.T) {
		forged := map[string]string{"X-Remote-User": "admin", "X-Remote-Group": "system:masters", "X-Remote-Uid": "admin-uid"}
		impostor := s.pki.FrontProxyCA.IssueClient("impostor")
		mallory := s.pki.IssueClient("mallory")
		for _, tc := range []struct {
			name string
			cert *framework.KeyPair
			code int
			who  string
		}{
			{name: "without a client certificate the headers are ignored", code: 403, who: `User \"system:anonymous\"`},
			{name: "with a cluster client certificate the headers are ignored", cert: &mallory, code: 403, who: `User \"mallory\"`},
			{name: "with a front-proxy CA certificate of a name not allowed the request is refused", cert: &impostor, code: 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hc := s.directClient(t, tc.cert)
				r := post(t, hc, http.MethodGet, s.direct+aggAPIGroup+"/sessions", "", nil, forged)
				if r.code != tc.code || !bytes.Contains(r.body, []byte(tc.who)) {
					t.Errorf("list sessions: HTTP %d %s, want %d naming %s", r.code, r.body, tc.code, tc.who)
				}
				r = post(t, hc, http.MethodDelete, s.direct+aggAPIGroup+"/sessions/"+aggSession, "", nil, forged)
				if r.code != tc.code {
					t.Errorf("delete a session: HTTP %d %s, want %d", r.code, r.body, tc.code)
				}
				r = post(t, hc, http.MethodPost, s.direct+aggAPIGroup+"/whoamirequests", "", []byte(whoamiJSONBody), forged)
				if bytes.Contains(r.body, []byte(`"username":"admin"`)) {
					t.Errorf("whoami believed the forged headers: %s", r.body)
				}
			})
		}
	})

	t.Run("an administrator lists and revokes a session, and its tokens stop working", func(t *testing.T) {
		session := s.api.KubeconfigFor(s.sessionToken)
		if w, stderr, err := whoamiJSON(t, session); err != nil || w.Status.UserInfo.Username != alice.Email {
			t.Fatalf("the session's token before revocation: %+v %v %s", w, err, stderr)
		}
		out, stderr, err := framework.Kubectl(t, admin, "get", "sessions.login.portcullis.dev", "-o", "wide")
		if err != nil || !strings.Contains(out, aggSession) || !strings.Contains(out, "192.0.2.10") {
			t.Fatalf("kubectl get sessions -o wide: %v %s\n%s", err, stderr, out)
		}
		// Field selectors pass kube-apiserver's aggregation and the
		// scheme's field label check to the storage.
		out, stderr, err = framework.Kubectl(t, admin, "get", "sessions.login.portcullis.dev", "-o", "name", "--field-selector", "spec.username="+alice.Email)
		if err != nil || !strings.Contains(out, aggSession) {
			t.Errorf("kubectl get sessions --field-selector spec.username=%s: %v %s\n%s", alice.Email, err, stderr, out)
		}
		out, stderr, err = framework.Kubectl(t, admin, "get", "sessions.login.portcullis.dev", "-o", "name", "--field-selector", "spec.username=nobody@example.com")
		if err != nil || strings.Contains(out, aggSession) {
			t.Errorf("kubectl get sessions --field-selector spec.username=nobody@example.com: %v %s\n%s", err, stderr, out)
		}
		if _, stderr, err = framework.Kubectl(t, admin, "get", "sessions.login.portcullis.dev", "--field-selector", "spec.color=blue"); err == nil || !strings.Contains(stderr, "spec.color") {
			t.Errorf("kubectl get sessions --field-selector spec.color=blue: err=%v %s, want a refusal naming the field", err, stderr)
		}
		out, stderr, err = framework.Kubectl(t, admin, "delete", "sessions.login.portcullis.dev", aggSession)
		if err != nil || !strings.Contains(out, "deleted") {
			t.Fatalf("kubectl delete session: %v %s\n%s", err, stderr, out)
		}
		// kube-apiserver caches a successful token authentication for 10s
		// whatever the webhook's cache TTL.
		if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			_, stderr, err := whoamiJSON(t, session)
			return err != nil && strings.Contains(stderr, "Unauthorized"), nil
		}); err != nil {
			t.Errorf("the revoked session's token still works")
		}
		if out, _, _ := framework.Kubectl(t, admin, "get", "sessions.login.portcullis.dev", "-o", "name"); strings.Contains(out, aggSession) {
			t.Errorf("the revoked session is still listed: %s", out)
		}
		if _, stderr, err := framework.Kubectl(t, admin, "delete", "sessions.login.portcullis.dev", aggSession); err == nil || !strings.Contains(stderr, "NotFound") {
			t.Errorf("deleting it again: err=%v stderr=%s, want NotFound", err, stderr)
		}
	})

	t.Run("hostile exchanges get a Status or status.message, never a 500", func(t *testing.T) {
		otherAudience, err := s.dex.IDToken(ctx, alice.Email, alice.Password, "other-app", "other-app-secret", []string{"openid", "email"})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		expired := s.ci.IDToken(t, map[string]any{"aud": "portcullis-ci", "sub": "runner", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
		refused := s.ci.IDToken(t, map[string]any{"aud": "portcullis-ci", "sub": "intruder"})
		stranger := s.unknown.IDToken(t, map[string]any{"aud": "portcullis-ci", "sub": "runner"})
		body := func(tok string) []byte { return []byte(tcrJSONBody(aggCluster, tok)) }
		cases := []struct {
			name    string
			body    []byte
			code    int
			reason  string // status.reason of a 201, or the Status reason
			message string
		}{
			{"an ID token of the trusted CI issuer", body(s.ci.IDToken(t, map[string]any{"aud": "portcullis-ci", "sub": "runner"})), 201, "", ""},
			{"an expired ID token", body(expired), 201, "AuthenticationFailed", "expired"},
			{"an ID token for another audience", body(otherAudience), 201, "AuthenticationFailed", "authentication failed"},
			{"an ID token of an unknown issuer", body(stranger), 201, "AuthenticationFailed", "not issued by Portcullis or a trusted identity provider"},
			{"a user the policy refuses", body(refused), 201, "PolicyDenied", "ci:intruder"},
			{"an unknown cluster", []byte(tcrJSONBody("elsewhere", idToken)), 201, "UnknownCluster", `no cluster "elsewhere"`},
			{"missing fields", []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"TokenCredentialRequest","spec":{"cluster":"e2e"}}`), 422, "Invalid", "spec.token: Required value"},
			{"the wrong kind", []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"WhoAmIRequest"}`), 400, "BadRequest", ""},
			{"not JSON", []byte(`{"spec": [`), 400, "BadRequest", ""},
			{"an oversized token", body(strings.Repeat("A", 100<<10)), 422, "Invalid", "spec.token: Too long"},
			{"an oversized body", body(strings.Repeat("A", 4<<20)), 413, "RequestEntityTooLarge", ""},
		}
		check := func(t *testing.T, r httpResult, code int, reason, message string) {
			t.Helper()
			if r.code >= 500 || r.code != code {
				t.Fatalf("HTTP %d, want %d: %.400s", r.code, code, r.body)
			}
			if bytes.Contains(r.body, []byte(strings.Repeat("A", 64))) {
				t.Errorf("the response echoes the token")
			}
			if code == 201 {
				var got loginv1alpha1.TokenCredentialRequest
				must(t, json.Unmarshal(r.body, &got))
				if string(got.Status.Reason) != reason || !strings.Contains(got.Status.Message, message) || (reason == "") == (got.Status.Token == "") {
					t.Errorf("status = %+v, want reason %q and a message containing %q", got.Status, reason, message)
				}
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(r.body, &st); err != nil || st.Kind != "Status" || string(st.Reason) != reason || !strings.Contains(st.Message, message) {
				t.Errorf("want a Status %s containing %q, got %.400s", reason, message, r.body)
			}
		}
		// Through kube-apiserver, as an authenticated client (its own rate
		// limit bucket), and straight to Portcullis, anonymously.
		apiClient := framework.HTTPClientFor(framework.CertPool(s.pki.CA))
		for _, tc := range cases {
			t.Run(tc.name+" through kube-apiserver", func(t *testing.T) {
				check(t, post(t, apiClient, http.MethodPost, s.api.URL+aggAPIGroup+"/tokencredentialrequests", s.api.AdminToken, tc.body, nil), tc.code, tc.reason, tc.message)
			})
			t.Run(tc.name+" directly", func(t *testing.T) {
				check(t, post(t, s.directClient(t, nil), http.MethodPost, s.direct+aggAPIGroup+"/tokencredentialrequests", "", tc.body, nil), tc.code, tc.reason, tc.message)
			})
		}
		// kubectl shows the reasons too.
		_, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: s.carol, Stdin: strings.NewReader(tcrManifest(aggCluster, ""))}, "create", "--validate=false", "-f", "-")
		if err == nil || !strings.Contains(stderr, "spec.token") {
			t.Errorf("kubectl create without a token: err=%v stderr=%s, want spec.token named", err, stderr)
		}
	})

	t.Run("the service account has exactly the overlay's rights", func(t *testing.T) {
		// Compared with a service account bound to nothing, which still
		// has what every authenticated user has.
		if _, stderr, err := framework.Kubectl(t, admin, "create", "serviceaccount", "baseline", "-n", "portcullis"); err != nil {
			t.Fatalf("create serviceaccount: %v: %s", err, stderr)
		}
		rights := func(sa string) []string {
			out, stderr, err := framework.Kubectl(t, admin, "auth", "can-i", "--list", "-n", "kube-system", "--as=system:serviceaccount:portcullis:"+sa)
			if err != nil {
				t.Fatalf("kubectl auth can-i --list: %v: %s", err, stderr)
			}
			var lines []string
			for _, l := range strings.Split(out, "\n")[1:] {
				if l = strings.Join(strings.Fields(l), " "); l != "" {
					lines = append(lines, l)
				}
			}
			return lines
		}
		base := rights("baseline")
		var extra []string
		for _, l := range rights("portcullis") {
			if !slices.Contains(base, l) {
				extra = append(extra, l)
			}
		}
		want := []string{
			"configmaps [] [extension-apiserver-authentication] [get list watch]",
			"subjectaccessreviews.authorization.k8s.io [] [] [create]",
		}
		slices.Sort(extra)
		if !slices.Equal(extra, want) {
			t.Errorf("beyond any authenticated user, the service account may\n  %s\nwant exactly\n  %s", strings.Join(extra, "\n  "), strings.Join(want, "\n  "))
		}
	})

	t.Run("a client exchanging too fast is throttled with 429 and Retry-After", func(t *testing.T) {
		// Last: it empties the bucket of anonymous clients on loopback.
		hc := s.directClient(t, nil)
		var codes []int
		var retry string
		for range 40 {
			r := post(t, hc, http.MethodPost, s.direct+aggAPIGroup+"/tokencredentialrequests", "", []byte(tcrJSONBody(aggCluster, "a.b.c")), nil)
			codes = append(codes, r.code)
			if r.code == 429 {
				retry = r.retryAfter
				break
			}
		}
		if codes[len(codes)-1] != 429 || retry == "" {
			t.Errorf("40 exchanges at once: codes %v, Retry-After %q; want a 429 with Retry-After", codes, retry)
		}
		if slices.ContainsFunc(codes, func(c int) bool { return c >= 500 }) {
			t.Errorf("codes %v include a 5xx", codes)
		}
	})

	t.Run("the audit log records exchanges and revocations, never a token", func(t *testing.T) {
		data, err := os.ReadFile(s.auditLog)
		if err != nil {
			t.Fatal(err)
		}
		log := string(data)
		for _, want := range []string{
			`"portcullis.dev/exchange-result":"success"`,
			`"portcullis.dev/user":"alice@example.com"`,
			`"portcullis.dev/exchange-result":"AuthenticationFailed"`,
			`"portcullis.dev/session":"` + aggSession + `"`,
			`"resource":"sessions"`,
		} {
			if !strings.Contains(log, want) {
				t.Errorf("Portcullis's audit log lacks %s", want)
			}
		}
		for name, tok := range map[string]string{"the Dex ID token": idToken, "the exchanged token": exchanged, "the session's token": s.sessionToken} {
			if tok != "" && strings.Contains(log, tok) {
				t.Errorf("%s appears in the audit log", name)
			}
		}
	})
}

const whoamiJSONBody = `{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"WhoAmIRequest"}`

func tcrJSONBody(cluster, tok string) string {
	return fmt.Sprintf(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"TokenCredentialRequest","spec":{"cluster":%q,"token":%q}}`, cluster, tok)
}
