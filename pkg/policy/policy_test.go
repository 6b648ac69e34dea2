package policy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/store"
)

func testConfig() *v1alpha1.PortcullisConfiguration {
	return &v1alpha1.PortcullisConfiguration{
		Clusters: []v1alpha1.Cluster{
			{Name: "dev", Access: v1alpha1.AccessPolicy{AllUsers: true}},
			{Name: "prod", Access: v1alpha1.AccessPolicy{
				Users:        []string{"alice@example.com"},
				Groups:       []string{"sre"},
				EmailDomains: []string{"Example.COM"},
			}},
			{Name: "locked"},
		},
	}
}

func TestAdmit(t *testing.T) {
	p := New(testConfig())
	tests := []struct {
		name    string
		cluster string
		id      *identity.Identity
		allowed bool
		reason  string
	}{
		{"a cluster for all users admits anyone", "dev",
			&identity.Identity{Username: "mallory"}, true, "cluster dev admits all authenticated users"},
		{"a named user is admitted", "prod",
			&identity.Identity{Username: "alice@example.com"}, true, "user alice@example.com is admitted to cluster prod by name"},
		{"user names are exact", "prod",
			&identity.Identity{Username: "Alice@example.com"}, false, "user Alice@example.com is not admitted to cluster prod by policy"},
		{"a member of a named group is admitted", "prod",
			&identity.Identity{Username: "bob", Groups: []string{"dev", "sre"}}, true, "user bob is admitted to cluster prod as a member of group sre"},
		{"group names are exact", "prod",
			&identity.Identity{Username: "bob", Groups: []string{"SRE"}}, false, "user bob is not admitted to cluster prod by policy"},
		{"an email in a named domain is admitted, case-insensitively", "prod",
			&identity.Identity{Username: "carol", Email: "Carol@EXAMPLE.com"}, true, "user carol is admitted to cluster prod by email domain example.com"},
		{"the domain is the part after the last @", "prod",
			&identity.Identity{Username: "eve", Email: `"x@example.com"@evil.org`}, false, "user eve is not admitted to cluster prod by policy"},
		{"a subdomain is not its parent domain", "prod",
			&identity.Identity{Username: "eve", Email: "eve@mail.example.com"}, false, "user eve is not admitted to cluster prod by policy"},
		{"a user name that looks like an email does not count as one", "prod",
			&identity.Identity{Username: "dave@example.com"}, false, "user dave@example.com is not admitted to cluster prod by policy"},
		{"an empty access policy admits nobody", "locked",
			&identity.Identity{Username: "alice@example.com", Groups: []string{"sre"}}, false, "user alice@example.com is not admitted to cluster locked by policy"},
		{"an unknown cluster is denied", "staging",
			&identity.Identity{Username: "alice@example.com"}, false, `unknown cluster "staging"`},
		{"no identity is denied", "dev", nil, false, "no authenticated user"},
		{"an identity without a name is denied", "dev", &identity.Identity{}, false, "no authenticated user"},
		{"odd names are quoted in reasons", "prod",
			&identity.Identity{Username: "bad\nname"}, false, `user "bad\nname" is not admitted to cluster prod by policy`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.admit(tt.cluster, tt.id)
			want := Decision{Allowed: tt.allowed, Reason: tt.reason}
			if got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestNilPolicyDeniesEverything(t *testing.T) {
	var p *Policy
	d := p.admit("dev", &identity.Identity{Username: "alice"})
	if d.Allowed || d.Reason != "no access policy is loaded" {
		t.Fatalf("%+v", d)
	}
	d, extra := p.Evaluate(t.Context(), "dev", &identity.Identity{Username: "alice"}, nil, time.Now())
	if d.Allowed || extra != nil {
		t.Fatalf("%+v %q", d, extra)
	}
	if p.HasCluster("dev") || p.Clusters() != nil {
		t.Fatal("nil policy has clusters")
	}
}

func TestClusters(t *testing.T) {
	p := New(testConfig())
	if got := p.Clusters(); !slices.Equal(got, []string{"dev", "prod", "locked"}) {
		t.Fatalf("%q", got)
	}
	if !p.HasCluster("prod") || p.HasCluster("staging") {
		t.Fatal("HasCluster")
	}
}

type grantList struct {
	grants []store.Grant
	err    error
}

func (g grantList) ListGrants(context.Context) ([]store.Grant, error) { return g.grants, g.err }

func TestEvaluateWithGrants(t *testing.T) {
	p := New(testConfig())
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	grant := func(id, user, cluster string, from, to time.Duration, groups ...string) store.Grant {
		return store.Grant{ID: id, Username: user, Cluster: cluster, Groups: groups, NotBefore: now.Add(from), ExpiresAt: now.Add(to)}
	}
	grants := grantList{grants: []store.Grant{
		grant("g-active", "bob", "prod", -time.Hour, time.Hour, "incident-admin", "sre"),
		grant("g-active-2", "bob", "prod", -time.Minute, 2*time.Hour, "incident-admin", "viewer"),
		grant("g-future", "bob", "prod", time.Hour, 2*time.Hour, "future"),
		grant("g-expired", "bob", "prod", -2*time.Hour, -time.Hour, "expired"),
		grant("g-ends-now", "bob", "prod", -2*time.Hour, 0, "ends-now"),
		grant("g-starts-now", "carol", "prod", 0, time.Hour, "starts-now"),
		grant("g-other-cluster", "bob", "locked", -time.Hour, time.Hour, "other-cluster"),
		grant("g-other-user", "Bob", "prod", -time.Hour, time.Hour, "other-user"),
		grant("g-alice", "alice@example.com", "prod", -time.Hour, time.Hour, "incident-admin"),
	}}

	tests := []struct {
		name      string
		cluster   string
		id        *identity.Identity
		grants    GrantLister
		allowed   bool
		reason    string
		wantExtra []string
	}{
		{
			name: "active grants admit a user the policy does not, and add their groups once",
			id:   &identity.Identity{Username: "bob", Groups: []string{"viewer"}}, cluster: "prod", grants: grants,
			allowed: true, reason: "user bob is admitted to cluster prod by grant g-active-2 until 2026-11-27T14:00:00Z",
			wantExtra: []string{"incident-admin", "sre"},
		},
		{
			name: "a grant is active from NotBefore, inclusive",
			id:   &identity.Identity{Username: "carol"}, cluster: "prod", grants: grants,
			allowed: true, reason: "user carol is admitted to cluster prod by grant g-starts-now until 2026-11-27T13:00:00Z",
			wantExtra: []string{"starts-now"},
		},
		{
			name: "a user admitted by policy keeps the policy's reason and gets the grant's groups",
			id:   &identity.Identity{Username: "alice@example.com"}, cluster: "prod", grants: grants,
			allowed: true, reason: "user alice@example.com is admitted to cluster prod by name",
			wantExtra: []string{"incident-admin"},
		},
		{
			name: "grants for other clusters, users or times do nothing",
			id:   &identity.Identity{Username: "dave"}, cluster: "prod", grants: grants,
			reason: "user dave is not admitted to cluster prod by policy",
		},
		{
			name: "a grant does not open an unknown cluster",
			id:   &identity.Identity{Username: "bob"}, cluster: "staging", grants: grantList{grants: []store.Grant{grant("g", "bob", "staging", -time.Hour, time.Hour, "x")}},
			reason: `unknown cluster "staging"`,
		},
		{
			name: "no grant lister means the static policy",
			id:   &identity.Identity{Username: "bob"}, cluster: "prod",
			reason: "user bob is not admitted to cluster prod by policy",
		},
		{
			name: "a failing grant lister denies with the static policy",
			id:   &identity.Identity{Username: "bob"}, cluster: "prod", grants: grantList{err: errors.New("store down")},
			reason: "user bob is not admitted to cluster prod by policy (time-bound grants could not be checked)",
		},
		{
			name: "a failing grant lister does not deny a user the policy admits",
			id:   &identity.Identity{Username: "bob"}, cluster: "dev", grants: grantList{err: errors.New("store down")},
			allowed: true, reason: "cluster dev admits all authenticated users",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, extra := p.Evaluate(t.Context(), tt.cluster, tt.id, tt.grants, now)
			if want := (Decision{Allowed: tt.allowed, Reason: tt.reason}); d != want {
				t.Fatalf("decision %+v, want %+v", d, want)
			}
			if !slices.Equal(extra, tt.wantExtra) {
				t.Fatalf("extra groups %q, want %q", extra, tt.wantExtra)
			}
		})
	}
}

func TestNewCopiesTheConfiguration(t *testing.T) {
	cfg := testConfig()
	p := New(cfg)
	cfg.Clusters[1].Access.Users[0] = "mallory"
	if !p.admit("prod", &identity.Identity{Username: "alice@example.com"}).Allowed {
		t.Fatal("changing the configuration changed the policy")
	}
	if p.admit("prod", &identity.Identity{Username: "mallory"}).Allowed {
		t.Fatal("changing the configuration changed the policy")
	}
}

func TestReasonsAreShort(t *testing.T) {
	p := New(testConfig())
	d := p.admit("prod", &identity.Identity{Username: strings.Repeat("x", 10000)})
	if len(d.Reason) > 300 {
		t.Fatalf("reason of %d bytes", len(d.Reason))
	}
}
