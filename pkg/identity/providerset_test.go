package identity

import (
	"errors"
	"slices"
	"testing"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

func TestAuthenticateBearerRoutesByIssuer(t *testing.T) {
	dex := newFakeIssuer(t)
	other := newFakeIssuer(t)
	loginOnly := newFakeIssuer(t)

	loginOnlyIdP := loginOnly.idp("login-only")
	loginOnlyIdP.AcceptIDTokens = false
	cfg := &v1alpha1.PortcullisConfiguration{
		IssuerURL:         "https://portcullis.example.com",
		IdentityProviders: []v1alpha1.IdentityProvider{dex.idp("dex"), other.idp("other"), loginOnlyIdP},
	}
	ps, err := NewProviders(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ps.Close)
	for _, p := range ps.List() {
		waitReady(t, p)
	}
	if err := ps.HealthCheck(); err != nil {
		t.Fatal(err)
	}
	if names := []string{ps.List()[0].Name(), ps.List()[1].Name(), ps.List()[2].Name()}; !slices.Equal(names, []string{"dex", "other", "login-only"}) {
		t.Fatalf("List order %q", names)
	}
	if p, ok := ps.Get("other"); !ok || p.Issuer() != other.URL || p.DisplayName() != "other" {
		t.Fatalf("Get(other) = %v, %v", p, ok)
	}
	if _, ok := ps.Get("nope"); ok {
		t.Fatal("Get of an unknown name")
	}

	wrongAud := dex.claims()
	wrongAud["aud"] = "someone-else"
	foreign := dex.claims()
	foreign["iss"] = "https://portcullis.example.com"

	tests := []struct {
		name     string
		raw      string
		wantOK   bool
		wantErr  bool
		wantIdP  string
		wantUser string
	}{
		{name: "a token of the first IdP is verified by it", raw: dex.sign(dex.claims()), wantOK: true, wantIdP: "dex", wantUser: "alice-sub"},
		{name: "a token of the second IdP is verified by it", raw: other.sign(other.claims()), wantOK: true, wantIdP: "other", wantUser: "alice-sub"},
		{name: "a token of an unknown issuer is not ours", raw: dex.sign(foreign)},
		{name: "a token of an IdP that does not accept ID tokens is not ours", raw: loginOnly.sign(loginOnly.claims())},
		{name: "something that is not a JWT is not ours", raw: "opaque"},
		{name: "a token claiming the first IdP but signed by the second is rejected", raw: other.sign(dex.claims()), wantErr: true},
		{name: "a token of a known IdP for another audience is rejected", raw: dex.sign(wrongAud), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok, err := ps.AuthenticateBearer(t.Context(), tt.raw)
			if ok != tt.wantOK || (err != nil) != tt.wantErr {
				t.Fatalf("ok=%v err=%v; want ok=%v err=%v", ok, err, tt.wantOK, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, ErrRejected) {
					t.Fatalf("error %v: want ErrRejected", err)
				}
				assertNoToken(t, err, tt.raw)
			}
			if tt.wantOK && (id.IdentityProvider != tt.wantIdP || id.Username != tt.wantUser) {
				t.Fatalf("identity %+v", id)
			}
			if !tt.wantOK && id != nil {
				t.Fatalf("identity %+v without ok", id)
			}
		})
	}
}

func TestNewProvidersRefusesPortcullisOwnIssuer(t *testing.T) {
	f := newFakeIssuer(t)
	cfg := &v1alpha1.PortcullisConfiguration{IssuerURL: f.URL, IdentityProviders: []v1alpha1.IdentityProvider{f.idp("dex")}}
	if _, err := NewProviders(t.Context(), cfg); err == nil {
		t.Fatal("an IdP with Portcullis's own issuer was accepted")
	}
}

func TestNilProviders(t *testing.T) {
	var ps *Providers
	if id, ok, err := ps.AuthenticateBearer(t.Context(), "a.b.c"); id != nil || ok || err != nil {
		t.Fatal("nil Providers authenticated something")
	}
	if ps.List() != nil || ps.HealthCheck() != nil {
		t.Fatal("nil Providers")
	}
}
