package identity

import (
	"slices"
	"testing"

	"golang.org/x/oauth2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// An identity provider cannot make its users Kubernetes system groups or
// Portcullis's own webhook callers, whether through ID-token claims or
// userinfo; with a prefix configured its groups are ordinary names again.
func TestReservedGroupsFromIdentityProvidersAreDropped(t *testing.T) {
	f := newFakeIssuer(t)
	asserted := []string{"dev", "system:masters", "portcullis.dev:tokenreview-callers", "system:nodes", "ops", "System:Masters", "portcullis.devs"}

	t.Run("ID-token groups without a prefix lose the reserved ones", func(t *testing.T) {
		cfg := f.idp("dex")
		cfg.ClaimMappings.Groups.Prefix = ptr("")
		p := readyProvider(t, cfg)
		claims := f.claims()
		claims["groups"] = asserted
		id, err := p.VerifyIDToken(t.Context(), f.sign(claims))
		if err != nil {
			t.Fatal(err)
		}
		// Matching is exact, as Kubernetes' own is: "System:Masters" is no
		// system group.
		if want := []string{"dev", "ops", "System:Masters", "portcullis.devs"}; !slices.Equal(id.Groups, want) {
			t.Fatalf("groups %q, want %q", id.Groups, want)
		}
	})

	t.Run("a single reserved group claim leaves no group", func(t *testing.T) {
		cfg := f.idp("dex")
		cfg.ClaimMappings.Groups.Prefix = ptr("")
		p := readyProvider(t, cfg)
		claims := f.claims()
		claims["groups"] = "system:masters"
		id, err := p.VerifyIDToken(t.Context(), f.sign(claims))
		if err != nil {
			t.Fatal(err)
		}
		if len(id.Groups) != 0 {
			t.Fatalf("groups %q, want none", id.Groups)
		}
	})

	t.Run("a configured prefix makes them ordinary groups", func(t *testing.T) {
		p := readyProvider(t, f.idp("dex")) // prefix "dex:"
		claims := f.claims()
		claims["groups"] = []string{"system:masters", "dev"}
		id, err := p.VerifyIDToken(t.Context(), f.sign(claims))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"dex:system:masters", "dex:dev"}; !slices.Equal(id.Groups, want) {
			t.Fatalf("groups %q, want %q", id.Groups, want)
		}
	})

	t.Run("a prefix that is itself reserved drops every group", func(t *testing.T) {
		cfg := f.idp("dex")
		cfg.ClaimMappings.Groups.Prefix = ptr("system:")
		p := readyProvider(t, cfg)
		id, err := p.VerifyIDToken(t.Context(), f.sign(f.claims()))
		if err != nil {
			t.Fatal(err)
		}
		if len(id.Groups) != 0 {
			t.Fatalf("groups %q, want none", id.Groups)
		}
	})

	t.Run("userinfo groups lose the reserved ones", func(t *testing.T) {
		f.setUserInfo(map[string]any{"sub": "alice-sub", "groups": asserted})
		cfg := f.idp("dex")
		cfg.UserInfo = &v1alpha1.UserInfoConfig{GroupsClaim: "groups"}
		p := readyProvider(t, cfg)
		got, err := p.UserInfoGroups(t.Context(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: testAccessToken, TokenType: "Bearer"}))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"dev", "ops", "System:Masters", "portcullis.devs"}; !slices.Equal(got, want) {
			t.Fatalf("groups %q, want %q", got, want)
		}
	})
}

func TestDropReservedGroupsDoesNotAllocateWhenNothingIsDropped(t *testing.T) {
	groups := []string{"dev", "ops", "oncall"}
	if n := testing.AllocsPerRun(100, func() { _ = dropReservedGroups("dex", "alice", groups) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
