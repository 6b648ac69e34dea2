package authn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"portcullis.dev/portcullis/internal/testkit"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
)

// withIdP gives the fixture's authenticator an identity provider whose ID
// tokens are accepted as bearer tokens (groups claim without a prefix),
// ready to verify.
func (f *fixture) withIdP(t *testing.T) *testkit.IdP {
	t.Helper()
	idp := testkit.NewIdP(t)
	empty := ""
	cfg := &v1alpha1.PortcullisConfiguration{IssuerURL: testIssuer, IdentityProviders: []v1alpha1.IdentityProvider{{
		Name:           "corp",
		ClientID:       idp.ClientID,
		AcceptIDTokens: true,
		Issuer:         apiserverv1.Issuer{URL: idp.URL, Audiences: []string{idp.ClientID}, CertificateAuthority: idp.CAPEM},
		ClaimMappings: apiserverv1.ClaimMappings{
			Username: apiserverv1.PrefixedClaimOrExpression{Claim: "sub", Prefix: &empty},
			Groups:   apiserverv1.PrefixedClaimOrExpression{Claim: "groups", Prefix: &empty},
		},
	}}}
	ps, err := identity.NewProviders(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ps.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, p := range ps.List() {
		if err := p.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f.authn.IdPs = ps
	return idp
}

func idTokenClaims(idp *testkit.IdP, groups ...string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": idp.URL, "aud": idp.ClientID, "sub": "olivia", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "groups": groups}
}

// An identity provider that cannot be reached is an outage (Internal and
// Unavailable), not a bad token; the same token authenticates once it is
// back; a tampered token from a reachable IdP is a bad token.
func TestAuthenticateIdPTokenDuringAnOutage(t *testing.T) {
	f := newFixture(t)
	idp := f.withIdP(t)
	raw := idp.Sign(idTokenClaims(idp, "ops"))

	idp.SetDown(true)
	res, err := f.authn.Authenticate(t.Context(), "c1", raw)
	if res != nil || !IsUnavailable(err) {
		t.Fatalf("with the IdP down: %v, %v; want an Unavailable error", res, err)
	}
	if ae := err.(*Error); !ae.Internal || ae.Denied {
		t.Fatalf("with the IdP down: %+v; want Internal and not Denied", ae)
	}

	idp.SetDown(false)
	// The key set's failed fetch may still be settling: retry briefly.
	if err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		res, err = f.authn.Authenticate(ctx, "c1", raw)
		return err == nil, nil
	}); err != nil || res.User.Name != "olivia" {
		t.Fatalf("with the IdP back: %+v, %v", res, err)
	}
	tampered := raw[:len(raw)-6] + "AAAAAA"
	if _, err := f.authn.Authenticate(t.Context(), "c1", tampered); err == nil || IsUnavailable(err) || err.(*Error).Internal {
		t.Fatalf("a tampered token from a reachable IdP: %v; want a plain refusal", err)
	}
}

// Reserved groups an IdP asserts reach neither the policy nor the answer.
func TestAuthenticateIdPTokenDropsReservedGroups(t *testing.T) {
	f := newFixture(t)
	idp := f.withIdP(t)
	raw := idp.Sign(idTokenClaims(idp, "system:masters", "ops", "portcullis.dev:tokenreview-callers"))
	res, err := f.authn.Authenticate(t.Context(), "c1", raw)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.User.Groups, []string{"ops"}) {
		t.Fatalf("groups %q, want [ops]", res.User.Groups)
	}
}

// The chain's authenticator union reports every authenticator's error in
// an aggregate: an outage among them is still found.
func TestUnavailableInAnAggregate(t *testing.T) {
	outage := &Error{Reason: "idp down", Internal: true, Unavailable: true}
	for _, tc := range []struct {
		err  error
		want *Error
	}{
		{outage, outage},
		{fmt.Errorf("wrapped: %w", outage), outage},
		{utilerrors.NewAggregate([]error{errors.New("invalid bearer token"), outage}), outage},
		{utilerrors.NewAggregate([]error{errors.New("invalid bearer token"), utilerrors.NewAggregate([]error{outage})}), outage},
		{utilerrors.NewAggregate([]error{errors.New("invalid bearer token"), &Error{Reason: "bad"}}), nil},
		{&Error{Reason: "store down", Internal: true}, nil},
		{nil, nil},
	} {
		if got := Unavailable(tc.err); got != tc.want || IsUnavailable(tc.err) != (tc.want != nil) {
			t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
