// Package portaltest runs the login portal in tests: internal/testkit's fake
// OpenID Connect provider and a portal served over TLS in front of it, with
// an in-memory or bolt store. It is for tests only.
package portaltest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testkit"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/clientlimit"
	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/ldap"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/portal"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
	"portcullis.dev/portcullis/pkg/token"
)

// IdP is the fake identity provider (internal/testkit's).
type IdP = testkit.IdP

// User is who the fake identity provider logs in.
type User = testkit.User

// Options configures New.
type Options struct {
	// Store is the state store; an in-memory one when nil.
	Store store.Store
	// Configure changes the default configuration (see DefaultConfig)
	// before it is defaulted.
	Configure func(*v1alpha1.PortcullisConfiguration)
	// Clock is the portal's and minter's clock; clock.RealClock when nil.
	Clock clock.Clock
	// DeviceInterval is the device flow's interval; 1s when zero.
	DeviceInterval time.Duration
	// StartLimits are the portal's login-start limits;
	// portal.DefaultStartLimits when nil.
	StartLimits *clientlimit.Limits
}

// Env is a portal served over TLS in front of a fake IdP.
type Env struct {
	IdP      *IdP
	Portal   *portal.Portal
	Server   *httptest.Server
	URL      string
	CAPEM    []byte
	Store    store.Store
	Keys     *token.KeyManager
	Verifier *token.Verifier
	Config   *v1alpha1.PortcullisConfiguration
	Policy   *policy.Holder
	// Sessions is the portal's session manager.
	Sessions *session.Manager
}

// DefaultConfig configures one IdP ("fake", usernames from email, groups
// from the groups claim) and two clusters: "c1" admits group devs (alice is
// mapped into it by email), "c2" admits user bob@example.com.
func DefaultConfig(issuer string, idp *IdP, secretFile string) *v1alpha1.PortcullisConfiguration {
	empty := ""
	return &v1alpha1.PortcullisConfiguration{
		IssuerURL: issuer,
		IdentityProviders: []v1alpha1.IdentityProvider{{
			Name:        "fake",
			DisplayName: "Fake IdP",
			Issuer: apiserverv1.Issuer{
				URL:                  idp.URL,
				CertificateAuthority: idp.CAPEM,
			},
			ClaimMappings: apiserverv1.ClaimMappings{
				Username: apiserverv1.PrefixedClaimOrExpression{Claim: "email", Prefix: &empty},
				Groups:   apiserverv1.PrefixedClaimOrExpression{Claim: "groups", Prefix: &empty},
			},
			ClientID:         idp.ClientID,
			ClientSecretFile: secretFile,
		}},
		GroupMappings: []v1alpha1.GroupMapping{{
			Match:  v1alpha1.GroupMatch{Emails: []string{"alice@example.com"}},
			Groups: []string{"devs"},
		}},
		Clusters: []v1alpha1.Cluster{
			{Name: "c1", Access: v1alpha1.AccessPolicy{Groups: []string{"devs"}}},
			{Name: "c2", Access: v1alpha1.AccessPolicy{Users: []string{"bob@example.com"}}},
		},
		Tokens: v1alpha1.TokensConfig{Lifetime: metav1.Duration{Duration: 15 * time.Minute}},
	}
}

// New starts a fake IdP and a portal in front of it.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	idp := testkit.NewIdP(t)
	var handler atomic.Pointer[http.Handler]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*handler.Load()).ServeHTTP(w, r)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)

	secretFile := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secretFile, []byte(idp.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(srv.URL, idp, secretFile)
	if opts.Configure != nil {
		opts.Configure(cfg)
	}
	v1alpha1.SetDefaults(cfg)

	st := opts.Store
	if st == nil {
		st = memory.New()
	}
	km, err := token.NewKeyManager(st, token.KeyOptions{MaxTokenLifetime: cfg.Tokens.MaxLifetime.Duration, Clock: opts.Clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	minter, err := token.NewMinter(km, cfg.IssuerURL, opts.Clock)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := token.NewVerifier(km, cfg.IssuerURL, st, token.VerifierOptions{Clock: opts.Clock})
	if err != nil {
		t.Fatal(err)
	}
	idps, err := identity.NewProviders(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idps.Close)
	for _, p := range idps.List() {
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		err := p.WaitReady(wctx)
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	directories, err := ldap.NewDirectories(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := identity.NewGroupMapper(cfg.GroupMappings)
	pol := policy.NewHolder(policy.New(cfg))
	interval := opts.DeviceInterval
	if interval == 0 {
		interval = time.Second
	}
	caPEM := idp.CAPEM // httptest servers share one certificate
	cfgFunc := func() *v1alpha1.PortcullisConfiguration { return cfg }
	sessions := session.NewManager(st, session.SettingsFrom(cfgFunc), opts.Clock)
	p, err := portal.New(portal.Deps{
		Config:         cfgFunc,
		Sessions:       sessions,
		IdPs:           idps,
		Directories:    directories,
		Groups:         func() *identity.GroupMapper { return mapper },
		Policy:         pol,
		Store:          st,
		Minter:         minter,
		IssuerURL:      cfg.IssuerURL,
		Clock:          opts.Clock,
		DeviceInterval: interval,
		StartLimits:    opts.StartLimits,
		ServingCA:      func() []byte { return []byte(caPEM) },
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Install(serveMux{mux})
	var h http.Handler = mux
	handler.Store(&h)
	return &Env{Sessions: sessions,
		IdP: idp, Portal: p, Server: srv, URL: srv.URL, CAPEM: []byte(caPEM),
		Store: st, Keys: km, Verifier: verifier, Config: cfg, Policy: pol,
	}
}

// Pool trusts the portal and the IdP.
func (e *Env) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.CAPEM)
	return pool
}

// Client is an HTTP client that trusts the portal and the IdP and does not
// follow redirects.
func (e *Env) Client() *http.Client {
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.Pool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// Browser is an HTTP client with a cookie jar that follows redirects (a
// browser without a screen).
func (e *Env) Browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.Pool()}},
		Jar:       jar,
		Timeout:   30 * time.Second,
	}
}

// serveMux mounts the portal on an http.ServeMux with the generic server's
// mux semantics (Handle: an exact path; HandlePrefix: a subtree).
type serveMux struct{ *http.ServeMux }

func (m serveMux) Handle(path string, h http.Handler) { m.ServeMux.Handle(path, h) }

func (m serveMux) HandlePrefix(prefix string, h http.Handler) { m.ServeMux.Handle(prefix, h) }
