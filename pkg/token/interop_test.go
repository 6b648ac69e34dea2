//go:build interop

// Interoperability tests against the verifiers cluster tokens meet in the
// field: kube-apiserver's JWT authenticator (structured authentication
// configuration, which uses go-oidc) and go-jose. They are behind the
// "interop" build tag because they need modules the main build does not
// (github.com/go-jose/go-jose/v4, and k8s.io/apiserver's oidc plugin with
// its go-oidc v2 and go-jose v2 dependencies); with those in go.mod/go.sum:
//
//	go test -tags interop ./pkg/token/ -run Interop -bench GoJose

package token

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/apiserver/pkg/apis/apiserver"
	kubeoidc "k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"

	"portcullis.dev/portcullis/pkg/store/memory"
)

// issuerServer serves discovery and JWKS over TLS at its own URL.
func issuerServer(t *testing.T) (*httptest.Server, *KeyManager, *Minter) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	km, err := NewKeyManager(memory.New(), KeyOptions{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	mux.Handle("GET "+DiscoveryPath, DiscoveryHandler(srv.URL))
	mux.Handle("GET "+JWKSPath, JWKSHandler(km))
	m, err := NewMinter(km, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, km, m
}

func interopClaims() Claims {
	return Claims{
		Subject:   "CgR1c2VyEgRsZGFw",
		Username:  "alice@example.com",
		UID:       "1234",
		Groups:    []string{"dev", "oncall"},
		Extra:     map[string][]string{"portcullis.dev/login": {"oidc"}},
		Audience:  []string{"cluster-a"},
		SessionID: "session-1",
		Expiry:    time.Now().Add(10 * time.Minute),
	}
}

func TestInteropKubeAPIServerAcceptsClusterTokens(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, km, m := issuerServer(t)
	empty := ""
	authn, err := kubeoidc.New(ctx, kubeoidc.Options{
		JWTAuthenticator: apiserver.JWTAuthenticator{
			Issuer: apiserver.Issuer{URL: srv.URL, Audiences: []string{"cluster-a"}},
			ClaimMappings: apiserver.ClaimMappings{
				Username: apiserver.PrefixedClaimOrExpression{Claim: "username", Prefix: &empty},
				Groups:   apiserver.PrefixedClaimOrExpression{Claim: "groups", Prefix: &empty},
				UID:      apiserver.ClaimOrExpression{Claim: "uid"},
				Extra: []apiserver.ExtraMapping{
					{Key: "portcullis.dev/login", ValueExpression: `claims.extra["portcullis.dev/login"]`},
				},
			},
		},
		Client:               srv.Client(),
		SupportedSigningAlgs: kubeoidc.AllValidSigningAlgorithms(),
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for authn.HealthCheck() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the authenticator never initialized: %v", authn.HealthCheck())
		}
		time.Sleep(20 * time.Millisecond)
	}
	check := func(t *testing.T, raw string) {
		t.Helper()
		resp, ok, err := authn.AuthenticateToken(ctx, raw)
		if err != nil || !ok {
			t.Fatalf("kube-apiserver's authenticator refused the token: ok=%v err=%v", ok, err)
		}
		u := resp.User
		if u.GetName() != "alice@example.com" || u.GetUID() != "1234" || !slices.Equal(u.GetGroups(), []string{"dev", "oncall"}) ||
			!slices.Equal(u.GetExtra()["portcullis.dev/login"], []string{"oidc"}) {
			t.Fatalf("user %+v", u)
		}
	}
	t.Run("kube-apiserver's JWT authenticator accepts a cluster token via discovery and JWKS", func(t *testing.T) {
		raw, _, err := m.Mint(ctx, interopClaims())
		if err != nil {
			t.Fatal(err)
		}
		check(t, raw)
	})
	t.Run("kube-apiserver accepts a token signed by a key made after it fetched the JWKS", func(t *testing.T) {
		if err := km.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		raw, _, err := m.Mint(ctx, interopClaims())
		if err != nil {
			t.Fatal(err)
		}
		check(t, raw)
	})
	t.Run("kube-apiserver refuses a token for another audience", func(t *testing.T) {
		c := interopClaims()
		c.Audience = []string{"cluster-b"}
		raw, _, err := m.Mint(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := authn.AuthenticateToken(ctx, raw); ok {
			t.Fatal("accepted")
		}
	})
}

func TestInteropGoJoseVerifiesClusterTokens(t *testing.T) {
	ctx := t.Context()
	_, km, m := issuerServer(t)
	raw, minted, err := m.Mint(ctx, interopClaims())
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(km.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q found %d times in the JWKS", tok.Headers[0].KeyID, len(keys))
	}
	var std josejwt.Claims
	var custom struct {
		Username string              `json:"username"`
		Groups   []string            `json:"groups"`
		Extra    map[string][]string `json:"extra"`
		SID      string              `json:"sid"`
	}
	if err := tok.Claims(keys[0].Key, &std, &custom); err != nil {
		t.Fatal(err)
	}
	if err := std.Validate(josejwt.Expected{Issuer: minted.Issuer, AnyAudience: josejwt.Audience{"cluster-a"}, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if std.ID != minted.ID || custom.Username != minted.Username || custom.SID != minted.SessionID || !slices.Equal(custom.Groups, minted.Groups) {
		t.Fatalf("go-jose read %+v %+v", std, custom)
	}
	tp, err := keys[0].Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if b64.EncodeToString(tp) != keys[0].KeyID {
		t.Fatal("kid is not go-jose's RFC 7638 thumbprint")
	}

	t.Run("our verifier accepts a token go-jose signs with our key", func(t *testing.T) {
		mk := km.set.Load().signingKey(time.Now())
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: mk.priv, KeyID: mk.info.ID}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		c := struct {
			josejwt.Claims
			Username string `json:"username"`
		}{josejwt.Claims{Issuer: minted.Issuer, Subject: "s", Audience: josejwt.Audience{"cluster-a"}, ID: "j",
			IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Minute))}, "bob"}
		raw, err := josejwt.Signed(signer).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVerifier(km, minted.Issuer, memory.New(), VerifierOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(ctx, raw, []string{"cluster-a"})
		if err != nil {
			t.Fatal(err)
		}
		if got.Username != "bob" {
			t.Fatalf("claims %+v", got)
		}
	})
}

// BenchmarkGoJoseVerify does what BenchmarkVerifyCold's signature and claims
// steps do, with go-jose, for comparison.
func BenchmarkGoJoseVerify(b *testing.B) {
	f := newFixture(b)
	tokens := mintN(b, f, b.N)
	active, _ := f.km.ActiveKey()
	pub := active.PublicKey
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok, err := josejwt.ParseSigned(tokens[i], []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			b.Fatal(err)
		}
		var std josejwt.Claims
		var custom struct {
			Username string              `json:"username"`
			Groups   []string            `json:"groups"`
			Extra    map[string][]string `json:"extra"`
			SID      string              `json:"sid"`
		}
		if err := tok.Claims(pub, &std, &custom); err != nil {
			b.Fatal(err)
		}
	}
}
