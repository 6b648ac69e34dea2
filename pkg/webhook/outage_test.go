package webhook

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"portcullis.dev/portcullis/internal/testkit"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
)

// TestIdentityProviderOutageIsA503: with an identity provider whose ID
// tokens are accepted, a token that cannot be verified because the IdP is
// unreachable gets a 503 Status suggesting a retry (kube-apiserver retries
// it and caches nothing), never authenticated: false (which it would cache);
// once the IdP is back the same token is reviewed without a restart, and a
// tampered token from the reachable IdP is authenticated: false.
func TestIdentityProviderOutageIsA503(t *testing.T) {
	f := newFixture(t)
	idp := testkit.NewIdP(t)
	empty := ""
	ps, err := identity.NewProviders(t.Context(), &v1alpha1.PortcullisConfiguration{IssuerURL: testIssuer, IdentityProviders: []v1alpha1.IdentityProvider{{
		Name: "corp", ClientID: idp.ClientID, AcceptIDTokens: true,
		Issuer: apiserverv1.Issuer{URL: idp.URL, Audiences: []string{idp.ClientID}, CertificateAuthority: idp.CAPEM},
		ClaimMappings: apiserverv1.ClaimMappings{
			Username: apiserverv1.PrefixedClaimOrExpression{Claim: "sub", Prefix: &empty},
			Groups:   apiserverv1.PrefixedClaimOrExpression{Claim: "groups", Prefix: &empty},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ps.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := ps.List()[0].WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	f.authn.IdPs = ps
	now := time.Now()
	raw := idp.Sign(map[string]any{"iss": idp.URL, "aud": idp.ClientID, "sub": "olivia", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"groups": []string{"ops", "system:masters", "portcullis.dev:tokenreview-callers"}})

	idp.SetDown(true)
	for _, version := range versions {
		res := f.review(version, clusterC1, raw)
		if res.code != http.StatusServiceUnavailable {
			t.Fatalf("%s with the IdP down: HTTP %d, want 503: %s", version, res.code, res.body)
		}
		s := res.status(t)
		if s.Reason != "ServiceUnavailable" || s.Details == nil || s.Details.RetryAfterSeconds < 1 || !strings.Contains(s.Message, `identity provider "corp"`) {
			t.Errorf("%s: Status %+v, want ServiceUnavailable naming the IdP, with a retry delay", version, s)
		}
		if res.annotations[AnnotationDecision] != "error" {
			t.Errorf("%s: decision %q, want error", version, res.annotations[AnnotationDecision])
		}
		res.assertNoSecret(t, raw)
	}

	idp.SetDown(false)
	// The key set's failed fetch may still be settling: retry briefly.
	var res result
	_ = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		res = f.review("v1", clusterC1, raw)
		return res.code == http.StatusOK, nil
	})
	st := res.review(t).Status
	if !st.Authenticated || st.User.Username != "olivia" {
		t.Fatalf("with the IdP back: %+v", st)
	}
	// Reserved groups the IdP asserted are not in the answer.
	if len(st.User.Groups) != 1 || st.User.Groups[0] != "ops" {
		t.Errorf("groups %q, want [ops]", st.User.Groups)
	}
	tampered := raw[:len(raw)-6] + "AAAAAA"
	if st := f.review("v1", clusterC1, tampered).review(t).Status; st.Authenticated || st.Error == "" {
		t.Fatalf("a tampered token from a reachable IdP: %+v, want authenticated: false with a reason", st)
	}
}
