package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// User is who the fake IdP logs in.
type User struct {
	Subject string
	Email   string
	Groups  []string
}

// IdP is the tests' fake OpenID Connect provider, over TLS: discovery (also
// at AltDiscoveryPath), JWKS, an authorization endpoint with PKCE that logs
// in User at once (no form) and redirects back with a code, a token
// endpoint (authorization code and refresh token grants) and userinfo. Sign
// makes ID tokens with any claims.
type IdP struct {
	URL      string
	CAPEM    string
	ClientID string
	Secret   string
	Server   *httptest.Server

	// key signs ID tokens with alg.
	key crypto.Signer
	alg jose.SignatureAlgorithm
	// KeyID is the kid of the signing key.
	KeyID string

	mu sync.Mutex
	// User is logged in by the authorization endpoint.
	user User
	// authError, when set, is returned by the authorization endpoint.
	authError string
	// removed users' refresh tokens are refused (invalid_grant).
	removed map[string]bool
	codes   map[string]*codeGrant
	refresh map[string]User
	// noIDTokenOnRefresh leaves the ID token out of refresh responses.
	noIDTokenOnRefresh bool
	// badNonce signs ID tokens with a wrong nonce.
	badNonce bool

	down          atomic.Bool
	discoveryDown atomic.Bool

	// userinfoToken and userinfoClaims, when set, are the only access token
	// userinfo accepts and its answer.
	userinfoToken  string
	userinfoClaims map[string]any

	TokenRequests   atomic.Int64
	RefreshRequests atomic.Int64
}

type codeGrant struct {
	user      User
	nonce     string
	challenge string
	redirect  string
	used      bool
}

// NewIdP starts a fake IdP for client "portcullis" that signs with ES256.
func NewIdP(t testing.TB) *IdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newIdP(t, key, jose.ES256)
}

// NewRS256IdP is NewIdP signing with RS256 (2048-bit RSA), as most public
// identity providers do.
func NewRS256IdP(t testing.TB) *IdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return newIdP(t, key, jose.RS256)
}

func newIdP(t testing.TB, key crypto.Signer, alg jose.SignatureAlgorithm) *IdP {
	t.Helper()
	f := &IdP{
		alg:      alg,
		ClientID: "portcullis",
		Secret:   "idp-client-secret",
		key:      key,
		KeyID:    "k1",
		user:     User{Subject: "alice-sub", Email: "alice@example.com", Groups: []string{"idp-devs"}},
		removed:  map[string]bool{},
		codes:    map[string]*codeGrant{},
		refresh:  map[string]User{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if f.discoveryDown.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		f.discovery(w, r)
	})
	mux.HandleFunc(AltDiscoveryPath, f.discovery)
	mux.HandleFunc("/keys", f.jwks)
	mux.HandleFunc("/auth", f.auth)
	mux.HandleFunc("/token", f.token)
	mux.HandleFunc("/userinfo", f.userinfo)
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Server.Close)
	f.URL = f.Server.URL
	f.CAPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Server.Certificate().Raw}))
	return f
}

// SetUser sets the user the next login logs in.
func (f *IdP) SetUser(u User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.user = u
}

// SetAuthError makes the authorization endpoint redirect back with this
// error (empty: log in normally).
func (f *IdP) SetAuthError(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authError = e
}

// RemoveUser makes the IdP refuse refreshes of subject's sessions.
func (f *IdP) RemoveUser(subject string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed[subject] = true
}

// AltDiscoveryPath also serves the discovery document (for discovery URL
// overrides).
const AltDiscoveryPath = "/alt/openid-configuration"

// SetDown makes every endpoint answer 503.
func (f *IdP) SetDown(down bool) { f.down.Store(down) }

// SetDiscoveryDown makes the well-known discovery document answer 503.
func (f *IdP) SetDiscoveryDown(down bool) { f.discoveryDown.Store(down) }

// SetUserInfo makes userinfo accept only accessToken, answering claims.
// Another token gets a 401 that echoes the Authorization header, as a
// careless IdP might.
func (f *IdP) SetUserInfo(accessToken string, claims map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userinfoToken, f.userinfoClaims = accessToken, claims
}

// SetBadNonce makes ID tokens carry a nonce that matches no login.
func (f *IdP) SetBadNonce(bad bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.badNonce = bad
}

// SetGroups changes the groups of a user (seen at the next refresh).
func (f *IdP) SetGroups(subject string, groups []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, u := range f.refresh {
		if u.Subject == subject {
			u.Groups = groups
			f.refresh[k] = u
		}
	}
	if f.user.Subject == subject {
		f.user.Groups = groups
	}
}

func (f *IdP) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                f.URL,
		"authorization_endpoint":                f.URL + "/auth",
		"token_endpoint":                        f.URL + "/token",
		"jwks_uri":                              f.URL + "/keys",
		"userinfo_endpoint":                     f.URL + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(f.alg)},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (f *IdP) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.key.Public(), KeyID: f.KeyID, Algorithm: string(f.alg), Use: "sig"}}})
}

func (f *IdP) auth(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != f.ClientID || q.Get("response_type") != "code" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "PKCE S256 required", http.StatusBadRequest)
		return
	}
	back := redirect.Query()
	back.Set("state", q.Get("state"))
	f.mu.Lock()
	if f.authError != "" {
		back.Set("error", f.authError)
		back.Set("error_description", "the user said no")
	} else {
		code := randomString()
		f.codes[code] = &codeGrant{user: f.user, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: redirect.String()}
		back.Set("code", code)
	}
	f.mu.Unlock()
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (f *IdP) token(w http.ResponseWriter, r *http.Request) {
	f.TokenRequests.Add(1)
	if err := r.ParseForm(); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != f.ClientID || secret != f.Secret {
		oauthErr(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var user User
	var nonce string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g := f.codes[r.PostForm.Get("code")]
		if g == nil || g.used || g.redirect != r.PostForm.Get("redirect_uri") {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		g.used = true
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		user, nonce = g.user, g.nonce
	case "refresh_token":
		f.RefreshRequests.Add(1)
		rt := r.PostForm.Get("refresh_token")
		u, ok := f.refresh[rt]
		if !ok || f.removed[u.Subject] {
			oauthErr(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		delete(f.refresh, rt) // rotated
		user = u
	default:
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	if f.badNonce {
		nonce = "not-the-nonce"
	}
	rt := randomString()
	f.refresh[rt] = user
	resp := map[string]any{
		"access_token":  "at-" + randomString(),
		"token_type":    "Bearer",
		"expires_in":    300,
		"refresh_token": rt,
	}
	if r.PostForm.Get("grant_type") == "authorization_code" || !f.noIDTokenOnRefresh {
		resp["id_token"] = f.signIDToken(user, nonce)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (f *IdP) userinfo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	token, claims := f.userinfoToken, f.userinfoClaims
	f.mu.Unlock()
	if token == "" {
		writeJSON(w, http.StatusOK, map[string]any{"sub": "unused", "groups": []string{"userinfo-group"}})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, "invalid token: "+r.Header.Get("Authorization"), http.StatusUnauthorized)
		return
	}
	writeJSON(w, http.StatusOK, claims)
}

// Sign signs an ID token with the IdP's key, whatever the claims.
func (f *IdP) Sign(claims map[string]any) string {
	return SignJWT(f.alg, jose.JSONWebKey{Key: f.key, KeyID: f.KeyID}, claims)
}

// SignJWT signs claims as a JWT with key (a go-jose signing key) and alg.
func SignJWT(alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	raw, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return raw
}

// signIDToken signs an ID token for u.
func (f *IdP) signIDToken(u User, nonce string) string {
	now := time.Now()
	claims := map[string]any{
		"iss":            f.URL,
		"sub":            u.Subject,
		"aud":            f.ClientID,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"email":          u.Email,
		"email_verified": true,
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if u.Groups != nil {
		claims["groups"] = u.Groups
	}
	return f.Sign(claims)
}

func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthErr(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": fmt.Sprintf("fake IdP: %s", code)})
}
