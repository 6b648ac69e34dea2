package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
	"portcullis.dev/portcullis/pkg/token"
)

const testIssuer = "https://portcullis.test"

// The cluster under review and its kube-apiserver's API audiences.
const (
	clusterC1    = "c1"
	clusterC2    = "c2"
	audDefault   = "https://kubernetes.default.svc"
	audC1        = "https://c1.example.com"
	audElsewhere = "https://elsewhere.example.com"
)

// testConfig has two clusters, so a review without a cluster in its path is
// ambiguous. c1 admits groups devs and ops; c2 admits bob only.
const testConfig = `apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: ` + testIssuer + `
store:
  path: /nonexistent/state.db
clusters:
- name: c1
  apiAudiences: [` + audDefault + `, ` + audC1 + `]
  access:
    groups: [devs, ops]
- name: c2
  access:
    users: [bob]
`

func loadConfig(t testing.TB, yaml string) *v1alpha1.PortcullisConfiguration {
	t.Helper()
	cfg, err := config.Decode("test config", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// logs captures klog's output (the handler's and pkg/authn's logs), so tests
// can check that no token is ever logged.
var logs syncBuffer

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(&logs)
	os.Exit(m.Run())
}

// fixture is one Portcullis: a memory store, its keys, a minter, a verifier,
// the shared authenticator with the configuration's policy, and the handler
// wired as pkg/server wires it.
type fixture struct {
	t       testing.TB
	cfg     *v1alpha1.PortcullisConfiguration
	st      store.Store
	km      *token.KeyManager
	minter  *token.Minter
	ver     *token.Verifier
	authn   *authn.Authenticator
	handler *Handler
	hits    atomic.Int64
	misses  atomic.Int64
}

type fixtureOptions struct {
	config    string // default testConfig
	cacheSize int    // token.VerifierOptions.CacheSize
	revoker   token.Revoker
	metrics   *Metrics
	// store is the state store; a memory store when nil.
	store func(testing.TB) store.Store
}

func newFixture(t testing.TB) *fixture { return newFixtureWith(t, fixtureOptions{}) }

func newFixtureWith(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	if o.config == "" {
		o.config = testConfig
	}
	f := &fixture{t: t, cfg: loadConfig(t, o.config)}
	if o.store != nil {
		f.st = o.store(t)
	} else {
		f.st = memory.New()
	}
	t.Cleanup(func() { f.st.Close() })
	var err error
	if f.km, err = token.NewKeyManager(f.st, token.KeyOptions{Logger: quietLogger}); err != nil {
		t.Fatal(err)
	}
	if err := f.km.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.minter, err = token.NewMinter(f.km, testIssuer, nil); err != nil {
		t.Fatal(err)
	}
	var revoker token.Revoker = f.st
	if o.revoker != nil {
		revoker = o.revoker
	}
	if f.ver, err = token.NewVerifier(f.km, testIssuer, revoker, token.VerifierOptions{
		CacheSize:   o.cacheSize,
		OnCacheHit:  func() { f.hits.Add(1) },
		OnCacheMiss: func() { f.misses.Add(1) },
	}); err != nil {
		t.Fatal(err)
	}
	f.authn = &authn.Authenticator{
		IssuerURL: testIssuer,
		Verifier:  f.ver,
		Policy:    policy.NewHolder(policy.New(f.cfg)),
		Grants:    f.st,
	}
	f.handler = &Handler{
		Authn:          f.authn,
		APIAudiences:   f.apiAudiences,
		DefaultCluster: f.defaultCluster,
		Metrics:        o.metrics,
	}
	return f
}

// apiAudiences and defaultCluster behave as pkg/server's configState.
func (f *fixture) apiAudiences(name string) ([]string, bool) {
	for _, c := range f.cfg.Clusters {
		if c.Name == name {
			return c.APIAudiences, true
		}
	}
	return nil, false
}

func (f *fixture) defaultCluster() string {
	if len(f.cfg.Clusters) == 1 {
		return f.cfg.Clusters[0].Name
	}
	return ""
}

// claims are carol's, in ops and oncall, for c1, from a login session.
func claimsFor(cluster string) token.Claims {
	return token.Claims{
		Subject:          "CgVjYXJvbBIEY29ycA",
		Username:         "carol",
		UID:              "uid-carol",
		Groups:           []string{"ops", "oncall"},
		Audience:         []string{cluster},
		SessionID:        "session-carol",
		IdentityProvider: "corp",
		Email:            "carol@example.com",
		Expiry:           time.Now().Add(15 * time.Minute),
	}
}

func (f *fixture) mint(c token.Claims) string {
	f.t.Helper()
	raw, _, err := f.minter.Mint(context.Background(), c)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// mintAt mints with a minter whose clock reads now+offset, for tokens that
// are not yet valid or already expired.
func (f *fixture) mintAt(offset, lifetime time.Duration) string {
	f.t.Helper()
	at := time.Now().Add(offset)
	m, err := token.NewMinter(f.km, testIssuer, testingclock.NewFakePassiveClock(at))
	if err != nil {
		f.t.Fatal(err)
	}
	c := claimsFor(clusterC1)
	c.Expiry = at.Add(lifetime)
	raw, _, err := m.Mint(context.Background(), c)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// activeKey returns the private key the fixture signs with, and its ID, read
// back from the store as any replica would.
func (f *fixture) activeKey() (*ecdsa.PrivateKey, string) {
	f.t.Helper()
	active, err := f.km.ActiveKey()
	if err != nil {
		f.t.Fatal(err)
	}
	keys, err := f.st.ListSigningKeys(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == active.ID {
			return parseKey(f.t, k), k.ID
		}
	}
	f.t.Fatalf("active key %s is not in the store", active.ID)
	return nil, ""
}

func parseKey(t testing.TB, k store.SigningKey) *ecdsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(k.PrivateKeyPEM)
	if block == nil {
		t.Fatalf("key %s: no PEM", k.ID)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return priv.(*ecdsa.PrivateKey)
}

var b64 = base64.RawURLEncoding

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(b)
}

// signES256 builds a compact JWS of header and payload signed with priv,
// bypassing Minter's checks, to make tokens Minter never would.
func signES256(t testing.TB, priv *ecdsa.PrivateKey, header, payload any) string {
	t.Helper()
	input := b64JSON(t, header) + "." + b64JSON(t, payload)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}

// validPayload is a payload that verifies for c1 when signed with the active
// key, as a map to be altered.
func validPayload() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss":      testIssuer,
		"sub":      "subject-carol",
		"aud":      clusterC1,
		"iat":      now,
		"nbf":      now,
		"exp":      now + 600,
		"jti":      "jti-" + randomString(8),
		"username": "carol",
		"groups":   []string{"ops"},
	}
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b64.EncodeToString(b)
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// reviewBody is a TokenReview as kube-apiserver sends it.
func reviewBody(t testing.TB, version, tok string, audiences ...string) []byte {
	t.Helper()
	var obj any
	switch version {
	case "v1":
		obj = &authenticationv1.TokenReview{
			TypeMeta:   metav1.TypeMeta{APIVersion: authenticationv1.SchemeGroupVersion.String(), Kind: "TokenReview"},
			ObjectMeta: metav1.ObjectMeta{UID: types.UID("review-uid")},
			Spec:       authenticationv1.TokenReviewSpec{Token: tok, Audiences: audiences},
		}
	case "v1beta1":
		obj = &authenticationv1beta1.TokenReview{
			TypeMeta:   metav1.TypeMeta{APIVersion: authenticationv1beta1.SchemeGroupVersion.String(), Kind: "TokenReview"},
			ObjectMeta: metav1.ObjectMeta{UID: types.UID("review-uid")},
			Spec:       authenticationv1beta1.TokenReviewSpec{Token: tok, Audiences: audiences},
		}
	default:
		t.Fatalf("unknown version %q", version)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// result is one handled request: the response and the request's audit
// annotations.
type result struct {
	code        int
	contentType string
	body        []byte
	annotations map[string]string
}

// serve sends one request through the handler, with an audit context in the
// request as the generic apiserver's audit filter sets up.
// It does not fail the test itself, so fuzz targets can use it.
func (f *fixture) serve(method, path string, body []byte) result {
	ctx := audit.WithAuditContext(context.Background())
	req := httptest.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return result{
		code:        rec.Code,
		contentType: rec.Header().Get("Content-Type"),
		body:        rec.Body.Bytes(),
		annotations: audit.AuditContextFrom(ctx).GetEventAnnotations(),
	}
}

func (f *fixture) review(version, cluster, tok string, audiences ...string) result {
	f.t.Helper()
	return f.serve(http.MethodPost, PathPrefix+"/"+cluster, reviewBody(f.t, version, tok, audiences...))
}

// reviewResponse is the JSON shape shared by v1 and v1beta1 TokenReviews.
type reviewResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		UID string `json:"uid"`
	} `json:"metadata"`
	Spec   map[string]any `json:"spec"`
	Status struct {
		Authenticated bool `json:"authenticated"`
		User          struct {
			Username string              `json:"username"`
			UID      string              `json:"uid"`
			Groups   []string            `json:"groups"`
			Extra    map[string][]string `json:"extra"`
		} `json:"user"`
		Audiences []string `json:"audiences"`
		Error     string   `json:"error"`
	} `json:"status"`
}

func (r result) review(t testing.TB) reviewResponse {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("HTTP %d, want 200: %s", r.code, r.body)
	}
	if !strings.HasPrefix(r.contentType, "application/json") {
		t.Errorf("Content-Type %q, want application/json", r.contentType)
	}
	var out reviewResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	if out.Kind != "TokenReview" {
		t.Fatalf("kind %q, want TokenReview: %s", out.Kind, r.body)
	}
	return out
}

// status decodes an error answer, which must be a metav1.Status whose code
// is the HTTP status.
func (r result) status(t testing.TB) metav1.Status {
	t.Helper()
	var s metav1.Status
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("HTTP %d answer is not JSON: %v: %q", r.code, err, r.body)
	}
	if s.Kind != "Status" || s.APIVersion != "v1" || s.Status != metav1.StatusFailure || int(s.Code) != r.code {
		t.Fatalf("HTTP %d answer is not a failure Status with that code: %s", r.code, r.body)
	}
	return s
}

// assertNoSecret fails if tok, or any long part of it, is in the response
// body, the audit annotations or the log.
func (r result) assertNoSecret(t testing.TB, tok string) {
	t.Helper()
	if tok == "" {
		return
	}
	needles := []string{tok}
	for _, part := range strings.Split(tok, ".") {
		if len(part) >= 16 {
			needles = append(needles, part)
		}
	}
	for _, n := range needles {
		if bytes.Contains(r.body, []byte(n)) {
			t.Errorf("the response body contains the token (or a part of it)")
		}
		if logs.Contains(n) {
			t.Errorf("the log contains the token (or a part of it)")
		}
		for k, v := range r.annotations {
			if strings.Contains(v, n) || strings.Contains(k, n) {
				t.Errorf("audit annotation %s contains the token (or a part of it)", k)
			}
		}
	}
}
