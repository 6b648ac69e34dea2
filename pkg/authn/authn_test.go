package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/store/memory"
	"portcullis.dev/portcullis/pkg/token"
)

const testIssuer = "https://portcullis.test"

type fixture struct {
	t      *testing.T
	minter *token.Minter
	authn  *Authenticator
	// verifications counts the verifier's cache hits and misses: every
	// Verify that got past the size check.
	verifications atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t}
	cfg := &v1alpha1.PortcullisConfiguration{
		IssuerURL: testIssuer,
		Clusters: []v1alpha1.Cluster{
			{Name: "c1", Access: v1alpha1.AccessPolicy{Groups: []string{"ops"}}},
		},
	}
	v1alpha1.SetDefaults(cfg)
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	km, err := token.NewKeyManager(st, token.KeyOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.minter, err = token.NewMinter(km, testIssuer, nil); err != nil {
		t.Fatal(err)
	}
	count := func() { f.verifications.Add(1) }
	ver, err := token.NewVerifier(km, testIssuer, st, token.VerifierOptions{OnCacheHit: count, OnCacheMiss: count})
	if err != nil {
		t.Fatal(err)
	}
	f.authn = &Authenticator{
		IssuerURL: testIssuer,
		Verifier:  ver,
		Policy:    policy.NewHolder(policy.New(cfg)),
		Grants:    st,
	}
	return f
}

func (f *fixture) mint(username string, groups ...string) string {
	f.t.Helper()
	raw, _, err := f.minter.Mint(context.Background(), token.Claims{
		Subject: "sub-" + username, Username: username, UID: "uid-" + username,
		Groups: groups, Audience: []string{"c1"}, SessionID: "sid-" + username,
		IdentityProvider: "corp", Extra: map[string][]string{"team": {"a", "b"}, ExtraCluster: {"forged"}},
		Expiry: time.Now().Add(10 * time.Minute),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

func key(raw string) *[sha256.Size]byte {
	k := sha256.Sum256([]byte(raw))
	return &k
}

// known says whether the verifier has raw in its verification cache.
func (f *fixture) known(t *testing.T, raw string) bool {
	t.Helper()
	_, known, _ := f.authn.Verifier.VerifyCached(context.Background(), key(raw), nil)
	return known
}

// TestAuthenticateResult pins the Result a cluster token gives, the extras
// that share a backing array included.
func TestAuthenticateResult(t *testing.T) {
	f := newFixture(t)
	raw := f.mint("carol", "ops", "oncall")
	for i := range 2 { // a miss of the route memo, then a hit
		res, err := f.authn.Authenticate(context.Background(), "c1", raw)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		u := res.User
		if u.Name != "carol" || u.UID != "uid-carol" || !slices.Equal(u.Groups, []string{"ops", "oncall"}) || res.Source != "portcullis" {
			t.Fatalf("%d: %+v", i, res)
		}
		for k, want := range map[string][]string{
			ExtraCluster:          {"c1"},
			ExtraSessionID:        {"sid-carol"},
			ExtraIdentityProvider: {"corp"},
			"team":                {"a", "b"},
		} {
			if got := u.Extra[k]; !slices.Equal(got, want) {
				t.Errorf("%d: extra %s = %q, want %q", i, k, got, want)
			}
		}
		if jti := u.Extra[ExtraTokenID]; len(jti) != 1 || jti[0] == "" {
			t.Errorf("%d: extra %s = %q", i, ExtraTokenID, jti)
		}
		// Appending to one extra must not change another.
		_ = append(u.Extra[ExtraCluster], "x")
		_ = append(u.Extra[ExtraSessionID], "x")
		if !slices.Equal(u.Extra[ExtraSessionID], []string{"sid-carol"}) || len(u.Extra[ExtraTokenID]) != 1 || u.Extra[ExtraTokenID][0] == "x" {
			t.Errorf("%d: extras share storage: %q", i, u.Extra)
		}
	}
}

// TestKnownTokensSkipParsing: a token is known only once the verifier
// accepted it, and a known token is routed to the verifier without reading
// its payload; the verifier still decides.
func TestKnownTokensSkipParsing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	good := f.mint("carol", "ops")
	if f.known(t, good) {
		t.Fatal("known before any authentication")
	}
	if _, err := f.authn.Authenticate(ctx, "c1", good); err != nil {
		t.Fatal(err)
	}
	if !f.known(t, good) {
		t.Fatal("a verified token is not known")
	}

	// A token the policy refuses was still verified: it is ours.
	refused := f.mint("mallory", "nobody")
	res, err := f.authn.Authenticate(ctx, "c1", refused)
	var ae *Error
	if !errors.As(err, &ae) || !ae.Denied || res == nil {
		t.Fatalf("mallory: %v", err)
	}
	if !f.known(t, refused) {
		t.Fatal("a verified, refused token is not known")
	}

	// Tokens the verifier refuses, and tokens not ours, are not known.
	parts := strings.Split(f.mint("carol", "ops"), ".")
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	foreign := unsignedToken(t, map[string]any{"iss": "https://idp.example.com", "sub": "x"})
	for name, raw := range map[string]string{"bad signature": badSig, "foreign": foreign, "garbage": "a.b.c"} {
		n := f.verifications.Load()
		_, err := f.authn.Authenticate(ctx, "c1", raw)
		if err == nil {
			t.Fatalf("%s: authenticated", name)
		}
		if f.known(t, raw) {
			t.Errorf("%s: known", name)
		}
		if ours := name == "bad signature"; (f.verifications.Load() > n) != ours {
			t.Errorf("%s: verifier consulted: %v, want %v", name, !ours, ours)
		}
		if name == "foreign" && err.Error() != ReasonNotOurs {
			t.Errorf("%s: %v, want %q", name, err, ReasonNotOurs)
		}
	}

	// An oversized token is refused as such, before anything reads it.
	n := f.verifications.Load()
	if _, err := f.authn.Authenticate(ctx, "c1", good+strings.Repeat("A", token.MaxTokenSize)); err == nil || err.Error() != token.ReasonTooLarge {
		t.Errorf("oversized token: %v, want %q", err, token.ReasonTooLarge)
	}
	if f.verifications.Load() != n {
		t.Error("the verifier was consulted for an oversized token")
	}
}

// TestKnownTokenStillVerifies: a known token goes to the verifier, which
// refuses it for another cluster (not for "not ours").
func TestKnownTokenStillVerifies(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	raw := f.mint("carol", "ops")
	if _, err := f.authn.Authenticate(ctx, "c1", raw); err != nil {
		t.Fatal(err)
	}
	f.authn.Policy.Store(policy.New(&v1alpha1.PortcullisConfiguration{
		IssuerURL: testIssuer,
		Clusters:  []v1alpha1.Cluster{{Name: "c1", Access: v1alpha1.AccessPolicy{AllUsers: true}}, {Name: "c2", Access: v1alpha1.AccessPolicy{AllUsers: true}}},
	}))
	n := f.verifications.Load()
	_, err := f.authn.Authenticate(ctx, "c2", raw)
	if err == nil || err.Error() != token.ReasonAudience {
		t.Fatalf("c2: %v, want %q", err, token.ReasonAudience)
	}
	if f.verifications.Load() != n+1 {
		t.Fatal("the verifier was not consulted")
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	f := newFixture(t)
	var toks []string
	for i := range 8 {
		toks = append(toks, f.mint("user"+string(rune('a'+i)), "ops"))
	}
	foreign := unsignedToken(t, map[string]any{"iss": "https://idp.example.com"})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				raw := toks[(w+i)%len(toks)]
				if _, err := f.authn.Authenticate(context.Background(), "c1", raw); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.authn.Authenticate(context.Background(), "c1", foreign); err == nil {
					t.Error("a foreign token was authenticated")
					return
				}
			}
		})
	}
	wg.Wait()
}

// unsignedToken is a compact JWS of payload with a junk ES256 signature.
func unsignedToken(t *testing.T, payload map[string]any) string {
	t.Helper()
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding
	return b64.EncodeToString([]byte(`{"alg":"ES256","kid":"k"}`)) + "." + b64.EncodeToString(p) + "." + b64.EncodeToString(make([]byte, 64))
}
