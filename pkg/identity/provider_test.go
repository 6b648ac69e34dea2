package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testkit"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

func TestVerifyIDTokenMapsClaimsWithKubeAPIServerSemantics(t *testing.T) {
	f := newFakeIssuer(t)

	celIdP := f.idp("cel")
	celIdP.ClaimMappings = apiserverv1.ClaimMappings{
		Username: apiserverv1.PrefixedClaimOrExpression{Expression: `"oidc:" + claims.email`},
		Groups:   apiserverv1.PrefixedClaimOrExpression{Expression: `dyn(claims.roles).map(r, "role:" + r)`},
		UID:      apiserverv1.ClaimOrExpression{Claim: "sub"},
		Extra: []apiserverv1.ExtraMapping{
			{Key: "example.com/hd", ValueExpression: "claims.hd"},
		},
	}
	// kube-apiserver requires a username taken from the email to look at
	// email_verified.
	celIdP.ClaimValidationRules = []apiserverv1.ClaimValidationRule{
		{Expression: "claims.email_verified == true", Message: "the email is not verified"},
	}

	tests := []struct {
		name string
		cfg  v1alpha1.IdentityProvider
		edit func(map[string]any)
		want Identity
	}{
		{
			name: "a claim mapping with a prefix gives username and prefixed groups",
			cfg:  f.idp("dex"),
			want: Identity{
				Username:         "alice-sub",
				Groups:           []string{"dex:dev", "dex:oncall"},
				Email:            "Alice@Example.com",
				IdentityProvider: "dex",
			},
		},
		{
			name: "a single string groups claim is one group",
			cfg:  f.idp("dex"),
			edit: func(c map[string]any) { c["groups"] = "admins" },
			want: Identity{Username: "alice-sub", Groups: []string{"dex:admins"}, Email: "Alice@Example.com", IdentityProvider: "dex"},
		},
		{
			name: "CEL expressions map username, groups, uid and extra",
			cfg:  celIdP,
			want: Identity{
				Username:         "oidc:Alice@Example.com",
				UID:              "alice-sub",
				Groups:           []string{"role:reader", "role:writer"},
				Extra:            map[string][]string{"example.com/hd": {"example.com"}},
				Email:            "Alice@Example.com",
				IdentityProvider: "cel",
			},
		},
		{
			name: "an email with email_verified false is not taken",
			cfg:  f.idp("dex"),
			edit: func(c map[string]any) { c["email_verified"] = false },
			want: Identity{Username: "alice-sub", Groups: []string{"dex:dev", "dex:oncall"}, IdentityProvider: "dex"},
		},
		{
			name: "an email with email_verified as the string \"true\" is taken",
			cfg:  f.idp("dex"),
			edit: func(c map[string]any) { c["email_verified"] = "true" },
			want: Identity{Username: "alice-sub", Groups: []string{"dex:dev", "dex:oncall"}, Email: "Alice@Example.com", IdentityProvider: "dex"},
		},
		{
			name: "an email without email_verified is taken",
			cfg:  f.idp("dex"),
			edit: func(c map[string]any) { delete(c, "email_verified") },
			want: Identity{Username: "alice-sub", Groups: []string{"dex:dev", "dex:oncall"}, Email: "Alice@Example.com", IdentityProvider: "dex"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := readyProvider(t, tt.cfg)
			claims := f.claims()
			if tt.edit != nil {
				tt.edit(claims)
			}
			got, err := p.VerifyIDToken(t.Context(), f.sign(claims))
			if err != nil {
				t.Fatalf("VerifyIDToken: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("identity\n got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestVerifyIDTokenRejects(t *testing.T) {
	f := newFakeIssuer(t)
	cfg := f.idp("dex")
	cfg.ClaimValidationRules = []apiserverv1.ClaimValidationRule{
		{Claim: "hd", RequiredValue: "example.com"},
		{Expression: `!claims.?blocked.orValue(false)`, Message: "user is blocked"},
	}
	cfg.UserValidationRules = []apiserverv1.UserValidationRule{
		{Expression: `!user.username.startsWith("system:")`, Message: "username must not start with system:"},
	}
	p := readyProvider(t, cfg)

	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token func() string
		want  string // in the error
	}{
		{"a token for another audience", func() string {
			c := f.claims()
			c["aud"] = "someone-else"
			return f.sign(c)
		}, "audience"},
		{"a token from another issuer", func() string {
			c := f.claims()
			c["iss"] = "https://evil.example.com"
			return f.sign(c)
		}, "another issuer"},
		{"an expired token", func() string {
			c := f.claims()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			return f.sign(c)
		}, "expired"},
		{"a token signed by another key with the same key ID", func() string {
			return testkit.SignJWT(jose.ES256, jose.JSONWebKey{Key: otherKey, KeyID: f.KeyID}, f.claims())
		}, "signature"},
		{"an unsigned token (alg none)", func() string {
			return unsigned(t, f.claims())
		}, ""},
		{"an HMAC token (alg HS256)", func() string {
			return testkit.SignJWT(jose.HS256, []byte("0123456789abcdef0123456789abcdef"), f.claims())
		}, "algorithm"},
		{"a token failing a required claim", func() string {
			c := f.claims()
			c["hd"] = "evil.example.com"
			return f.sign(c)
		}, "hd"},
		{"a token failing a claim validation expression", func() string {
			c := f.claims()
			c["blocked"] = true
			return f.sign(c)
		}, "user is blocked"},
		{"a token failing a user validation rule", func() string {
			c := f.claims()
			c["sub"] = "system:admin"
			return f.sign(c)
		}, "username must not start with system:"},
		{"a token whose username claim is missing", func() string {
			c := f.claims()
			delete(c, "sub")
			return f.sign(c)
		}, "sub"},
		{"something that is not a JWT", func() string { return "opaque-access-token" }, "not a JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.token()
			id, err := p.VerifyIDToken(t.Context(), raw)
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if !errors.Is(err, ErrRejected) || errors.Is(err, ErrNotReady) {
				t.Fatalf("error %v: want ErrRejected", err)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Provider != "dex" {
				t.Fatalf("error %#v: want a *VerifyError of dex", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			assertNoToken(t, err, raw)
		})
	}
}

func TestVerifyIDTokenBeforeDiscoveryIsRetryable(t *testing.T) {
	f := newFakeIssuer(t)
	f.SetDiscoveryDown(true)
	p, err := NewProvider(t.Context(), f.idp("dex"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.HealthCheck() == nil {
		t.Fatal("HealthCheck passed before discovery worked")
	}
	raw := f.sign(f.claims())
	_, err = p.VerifyIDToken(t.Context(), raw)
	if !errors.Is(err, ErrNotReady) || errors.Is(err, ErrRejected) {
		t.Fatalf("error %v: want ErrNotReady", err)
	}
	if !strings.Contains(err.Error(), "not ready") || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("error %q does not say to retry", err)
	}
	assertNoToken(t, err, raw)
}

func TestProviderTrustsOnlyTheConfiguredCA(t *testing.T) {
	f := newFakeIssuer(t)

	t.Run("a certificateAuthorityFile is read", func(t *testing.T) {
		cfg := f.idp("dex")
		cfg.Issuer.CertificateAuthority = ""
		cfg.CertificateAuthorityFile = filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(cfg.CertificateAuthorityFile, []byte(f.CAPEM), 0o600); err != nil {
			t.Fatal(err)
		}
		p := readyProvider(t, cfg)
		if _, err := p.VerifyIDToken(t.Context(), f.sign(f.claims())); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("without the CA the issuer's certificate is not trusted", func(t *testing.T) {
		cfg := f.idp("dex")
		cfg.Issuer.CertificateAuthority = ""
		p, err := NewProvider(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := contextWithTimeout(t, 300*time.Millisecond)
		defer cancel()
		if err := p.WaitReady(ctx); err == nil {
			t.Fatal("became ready with an untrusted issuer certificate")
		}
		if _, err := p.OAuth2Config("https://portcullis.example.com/callback"); !errors.Is(err, ErrNotReady) {
			t.Fatalf("discovery with an untrusted certificate: %v", err)
		}
	})
	t.Run("an invalid CA is a configuration error", func(t *testing.T) {
		cfg := f.idp("dex")
		cfg.Issuer.CertificateAuthority = "not a certificate"
		if _, err := NewProvider(t.Context(), cfg); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("invalid CEL is a configuration error", func(t *testing.T) {
		cfg := f.idp("dex")
		cfg.ClaimMappings.Username = apiserverv1.PrefixedClaimOrExpression{Expression: "claims.("}
		if _, err := NewProvider(t.Context(), cfg); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestOAuth2Config(t *testing.T) {
	f := newFakeIssuer(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	writeSecret := func(s string) {
		if err := os.WriteFile(secretFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeSecret("first-secret\n")

	cfg := f.idp("dex")
	cfg.ClientSecretFile = secretFile
	cfg.Issuer.DiscoveryURL = nil
	p := readyProvider(t, cfg)

	const redirect = "https://portcullis.example.com/callback"
	got, err := p.OAuth2Config(redirect)
	if err != nil {
		t.Fatal(err)
	}
	want := &oauth2.Config{
		ClientID:     testClientID,
		ClientSecret: "first-secret",
		Endpoint:     oauth2.Endpoint{AuthURL: f.URL + "/auth", TokenURL: f.URL + "/token"},
		RedirectURL:  redirect,
		Scopes:       []string{"openid", "email"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config\n got %+v\nwant %+v", got, want)
	}

	t.Run("the client secret is re-read at each call", func(t *testing.T) {
		writeSecret("second-secret")
		got, err := p.OAuth2Config(redirect)
		if err != nil {
			t.Fatal(err)
		}
		if got.ClientSecret != "second-secret" {
			t.Fatalf("secret %q", got.ClientSecret)
		}
	})
	t.Run("discovery is remembered once it worked", func(t *testing.T) {
		f.SetDiscoveryDown(true)
		defer f.SetDiscoveryDown(false)
		if _, err := p.OAuth2Config(redirect); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an unreadable secret file is an error that does not hold the secret", func(t *testing.T) {
		writeSecret("")
		_, err := p.OAuth2Config(redirect)
		if err == nil || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("an IdP without a client ID cannot log users in", func(t *testing.T) {
		cfg := f.idp("bearer-only")
		cfg.ClientID = ""
		p := readyProvider(t, cfg)
		if _, err := p.OAuth2Config(redirect); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("issuer.discoveryURL is used for discovery", func(t *testing.T) {
		f.SetDiscoveryDown(true)
		defer f.SetDiscoveryDown(false)
		cfg := f.idp("alt")
		cfg.Issuer.DiscoveryURL = ptr(f.URL + altDiscovery)
		p := readyProvider(t, cfg)
		if _, err := p.VerifyIDToken(t.Context(), f.sign(f.claims())); err != nil {
			t.Fatal(err)
		}
		got, err := p.OAuth2Config(redirect)
		if err != nil {
			t.Fatal(err)
		}
		if got.Endpoint.TokenURL != f.URL+"/token" {
			t.Fatalf("endpoint %+v", got.Endpoint)
		}
	})
}

func TestUserInfoGroups(t *testing.T) {
	f := newFakeIssuer(t)
	good := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: testAccessToken, TokenType: "Bearer"})

	tests := []struct {
		name     string
		userInfo *v1alpha1.UserInfoConfig
		claims   map[string]any
		ts       oauth2.TokenSource
		want     []string
		wantErr  string
	}{
		{
			name:     "a list of groups is prefixed",
			userInfo: &v1alpha1.UserInfoConfig{GroupsClaim: "groups", GroupsPrefix: "ui:"},
			claims:   map[string]any{"sub": "alice-sub", "groups": []string{"dev", "ops"}},
			ts:       good,
			want:     []string{"ui:dev", "ui:ops"},
		},
		{
			name:     "a single string is one group",
			userInfo: &v1alpha1.UserInfoConfig{GroupsClaim: "team"},
			claims:   map[string]any{"sub": "alice-sub", "team": "platform"},
			ts:       good,
			want:     []string{"platform"},
		},
		{
			name:     "the groups claim defaults to groups",
			userInfo: &v1alpha1.UserInfoConfig{},
			claims:   map[string]any{"sub": "alice-sub", "groups": []string{"dev"}},
			ts:       good,
			want:     []string{"dev"},
		},
		{
			name:     "an absent claim gives no groups",
			userInfo: &v1alpha1.UserInfoConfig{GroupsClaim: "groups"},
			claims:   map[string]any{"sub": "alice-sub"},
			ts:       good,
		},
		{
			name:     "a claim of another type is an error",
			userInfo: &v1alpha1.UserInfoConfig{GroupsClaim: "groups"},
			claims:   map[string]any{"sub": "alice-sub", "groups": map[string]any{"dev": true}},
			ts:       good,
			wantErr:  "neither a string nor a list of strings",
		},
		{
			name:     "a refused access token is an error",
			userInfo: &v1alpha1.UserInfoConfig{GroupsClaim: "groups"},
			claims:   map[string]any{"sub": "alice-sub", "groups": []string{"dev"}},
			ts:       oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "wrong-access-token", TokenType: "Bearer"}),
			wantErr:  "401",
		},
		{
			name: "no userInfo configuration asks nothing",
			ts:   oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "wrong", TokenType: "Bearer"}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.setUserInfo(tt.claims)
			cfg := f.idp("dex")
			cfg.UserInfo = tt.userInfo
			p := readyProvider(t, cfg)
			got, err := p.UserInfoGroups(t.Context(), tt.ts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "wrong-access-token") {
					t.Fatalf("error holds the access token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("groups %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIdentityClone(t *testing.T) {
	id := &Identity{Username: "alice", Groups: []string{"a"}, Extra: map[string][]string{"k": {"v"}}, Email: "a@example.com", IdentityProvider: "dex"}
	c := id.Clone()
	if !reflect.DeepEqual(c, id) {
		t.Fatalf("clone %+v", c)
	}
	c.Groups[0] = "changed"
	c.Extra["k"][0] = "changed"
	c.Extra["new"] = nil
	if id.Groups[0] != "a" || id.Extra["k"][0] != "v" || len(id.Extra) != 1 {
		t.Fatalf("the clone shares memory with the original: %+v", id)
	}
	if (*Identity)(nil).Clone() != nil {
		t.Fatal("nil clone")
	}
}
