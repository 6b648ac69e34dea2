package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// fakeIssuer is a minimal OpenID provider over TLS: discovery, JWKS and
// userinfo. It signs ID tokens with go-jose.
type fakeIssuer struct {
	t     *testing.T
	srv   *httptest.Server
	URL   string
	caPEM string
	key   *ecdsa.PrivateKey
	kid   string

	// discoveryDown makes the well-known discovery document fail.
	discoveryDown atomic.Bool

	mu sync.Mutex
	// userinfo is the userinfo response for accessToken.
	userinfo    map[string]any
	accessToken string
}

const (
	testClientID    = "portcullis"
	testAccessToken = "access-token-for-alice"
	altDiscovery    = "/alt/openid-configuration"
)

func newFakeIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIssuer{t: t, key: key, kid: "key-1", accessToken: testAccessToken}
	mux := http.NewServeMux()
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	f.URL = f.srv.URL
	f.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}))

	discovery := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                f.URL,
			"authorization_endpoint":                f.URL + "/auth",
			"token_endpoint":                        f.URL + "/token",
			"jwks_uri":                              f.URL + "/keys",
			"userinfo_endpoint":                     f.URL + "/userinfo",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if f.discoveryDown.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		discovery(w, r)
	})
	mux.HandleFunc("GET "+altDiscovery, discovery)
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /userinfo", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.accessToken {
			// Echoes what it got, as a careless IdP might.
			http.Error(w, "invalid token: "+r.Header.Get("Authorization"), http.StatusUnauthorized)
			return
		}
		writeJSON(w, f.userinfo)
	})
	return f
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeIssuer) setUserInfo(claims map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userinfo = claims
}

// claims are valid ID-token claims for alice, to be changed by tests.
func (f *fakeIssuer) claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":            f.URL,
		"aud":            testClientID,
		"sub":            "alice-sub",
		"iat":            now.Unix(),
		"exp":            now.Add(10 * time.Minute).Unix(),
		"email":          "Alice@Example.com",
		"email_verified": true,
		"groups":         []string{"dev", "oncall"},
		"hd":             "example.com",
		"roles":          []string{"reader", "writer"},
	}
}

func (f *fakeIssuer) sign(claims map[string]any) string {
	return signWith(f.t, jose.ES256, jose.JSONWebKey{Key: f.key, KeyID: f.kid}, claims)
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsigned is an "alg: none" token.
func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

func ptr[T any](v T) *T { return &v }

// idp is the configuration of an IdP for f: username from "sub", groups from
// "groups" with the prefix "dex:".
func (f *fakeIssuer) idp(name string) v1alpha1.IdentityProvider {
	return v1alpha1.IdentityProvider{
		Name:           name,
		ClientID:       testClientID,
		AcceptIDTokens: true,
		Scopes:         []string{"openid", "email"},
		Issuer: apiserverv1.Issuer{
			URL:                  f.URL,
			Audiences:            []string{testClientID},
			CertificateAuthority: f.caPEM,
		},
		ClaimMappings: apiserverv1.ClaimMappings{
			Username: apiserverv1.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr("")},
			Groups:   apiserverv1.PrefixedClaimOrExpression{Claim: "groups", Prefix: ptr("dex:")},
		},
	}
}

// readyProvider makes a provider for cfg and waits until it has loaded
// discovery and keys.
func readyProvider(t *testing.T, cfg v1alpha1.IdentityProvider) *Provider {
	t.Helper()
	p, err := NewProvider(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	waitReady(t, p)
	return p
}

func waitReady(t *testing.T, p *Provider) {
	t.Helper()
	ctx, cancel := contextWithTimeout(t, 20*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatalf("provider never became ready: %v", err)
	}
}
