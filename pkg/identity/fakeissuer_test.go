package identity

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"portcullis.dev/portcullis/internal/testkit"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// fakeIssuer is internal/testkit's fake OpenID provider, with the ID-token
// claims and the IdP configuration these tests start from.
type fakeIssuer struct{ *testkit.IdP }

const (
	testClientID    = "portcullis"
	testAccessToken = "access-token-for-alice"
	altDiscovery    = testkit.AltDiscoveryPath
)

func newFakeIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{IdP: testkit.NewIdP(t)}
	f.ClientID = testClientID
	return f
}

// setUserInfo makes userinfo answer claims to testAccessToken.
func (f *fakeIssuer) setUserInfo(claims map[string]any) { f.SetUserInfo(testAccessToken, claims) }

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

func (f *fakeIssuer) sign(claims map[string]any) string { return f.Sign(claims) }

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
			CertificateAuthority: f.CAPEM,
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
