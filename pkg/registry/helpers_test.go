package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
	"portcullis.dev/portcullis/pkg/token"
)

const testIssuer = "https://portcullis.example.com"

// unlimited turns the exchange's rate limit off.
var unlimited = RateLimit{QPS: math.Inf(1)}

// fixture is one Portcullis's worth of real token machinery (keys, minter,
// verifier, authenticator, policy) over a memory store, with a settable
// clock.
type fixture struct {
	t      testing.TB
	clk    *testingclock.FakeClock
	cfg    *configv1alpha1.PortcullisConfiguration
	store  *memory.Store
	keys   *token.KeyManager
	minter *token.Minter
	verify *token.Verifier
	authn  *authn.Authenticator
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, clk: testingclock.NewFakeClock(time.Now().Truncate(time.Second)), store: memory.New()}
	f.cfg = &configv1alpha1.PortcullisConfiguration{
		IssuerURL: testIssuer,
		Clusters: []configv1alpha1.Cluster{
			{Name: "dev", Access: configv1alpha1.AccessPolicy{AllUsers: true}},
			{Name: "prod", TokenLifetime: &metav1.Duration{Duration: 5 * time.Minute}, Access: configv1alpha1.AccessPolicy{Users: []string{"alice"}}},
		},
	}
	configv1alpha1.SetDefaults(f.cfg)
	var err error
	if f.keys, err = token.NewKeyManager(f.store, token.KeyOptions{MaxTokenLifetime: f.cfg.Tokens.MaxLifetime.Duration, Clock: f.clk}); err != nil {
		t.Fatal(err)
	}
	if err := f.keys.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.minter, err = token.NewMinter(f.keys, testIssuer, f.clk); err != nil {
		t.Fatal(err)
	}
	if f.verify, err = token.NewVerifier(f.keys, testIssuer, f.store, token.VerifierOptions{Clock: f.clk, CacheSize: -1}); err != nil {
		t.Fatal(err)
	}
	f.authn = &authn.Authenticator{
		IssuerURL: testIssuer,
		Verifier:  f.verify,
		Policy:    policy.NewHolder(policy.New(f.cfg)),
		Grants:    f.store,
		Clock:     f.clk,
	}
	return f
}

func (f *fixture) clock() time.Time { return f.clk.Now() }

func (f *fixture) advance(d time.Duration) { f.clk.Step(d) }

func (f *fixture) config() *configv1alpha1.PortcullisConfiguration { return f.cfg }

// sessions ends sessions as the server's does (pkg/session).
func (f *fixture) sessions() *session.Manager {
	return session.NewManager(f.store, session.SettingsFrom(f.config), f.clk)
}

func (f *fixture) options() Options {
	return Options{Authn: f.authn, Minter: f.minter, Store: f.store, Sessions: f.sessions(), Config: f.config, Clock: f.clk, RateLimit: unlimited}
}

// mint returns a Portcullis token for user on cluster.
func (f *fixture) mint(username, cluster, sid string, ttl time.Duration, groups ...string) string {
	f.t.Helper()
	raw, _, err := f.minter.Mint(context.Background(), token.Claims{
		Subject: "sub-" + username, Username: username, UID: "uid-" + username, Groups: groups,
		Audience: []string{cluster}, SessionID: sid, Expiry: f.clock().Add(ttl),
		Extra: map[string][]string{"example.com/team": {"blue"}},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

func (f *fixture) addSession(id, username string, createdAgo time.Duration) store.Session {
	f.t.Helper()
	now := f.clock()
	s := store.Session{
		ID: id, Username: username, UID: "uid-" + username, Groups: []string{"devs"}, Email: username + "@example.com",
		IdentityProvider: "dex", UpstreamRefreshToken: "upstream-secret", RefreshTokenHash: []byte("hash"),
		ClientAddress: "192.0.2.1", CreatedAt: now.Add(-createdAgo), LastUsedAt: now.Add(-time.Minute),
		IdleTimeout: time.Hour, ExpiresAt: now.Add(24 * time.Hour),
	}
	if err := f.store.CreateSession(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// withUser is a request context authenticated as name.
func withUser(name string, groups ...string) context.Context {
	return request.WithUser(context.Background(), &user.DefaultInfo{Name: name, Groups: groups})
}

// fakeJWT is an unsigned JWT-shaped string with the given claims, for the
// fake authenticator (which decides by itself, as a verified IdP would).
func fakeJWT(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString(b) + ".c2ln"
}

// fakeAuthn returns a fixed result, as pkg/authn would for an IdP token.
type fakeAuthn struct {
	res *authn.Result
	err error
}

func (a *fakeAuthn) Authenticate(ctx context.Context, cluster, raw string) (*authn.Result, error) {
	if a.res == nil {
		return nil, a.err
	}
	r := *a.res
	u := *r.User
	r.User = &u
	return &r, a.err
}
