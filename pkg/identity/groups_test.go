package identity

import (
	"slices"
	"testing"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

func TestGroupMapperApply(t *testing.T) {
	mappings := []v1alpha1.GroupMapping{
		{Match: v1alpha1.GroupMatch{Users: []string{"alice"}}, Groups: []string{"by-user"}},
		{Match: v1alpha1.GroupMatch{Emails: []string{"Bob@Example.com"}}, Groups: []string{"by-email"}},
		{Match: v1alpha1.GroupMatch{EmailDomains: []string{"Example.COM"}}, Groups: []string{"staff", "by-domain"}},
		{Match: v1alpha1.GroupMatch{Groups: []string{"dex:dev"}}, Groups: []string{"developers"}},
		// Would match only if groups added by earlier mappings were seen.
		{Match: v1alpha1.GroupMatch{Groups: []string{"staff"}}, Groups: []string{"chained"}},
		{Match: v1alpha1.GroupMatch{Users: []string{"carol"}, IdentityProviders: []string{"corp"}}, Groups: []string{"corp-only"}},
	}
	m := NewGroupMapper(mappings)

	tests := []struct {
		name string
		id   Identity
		want []string
	}{
		{"a user matches by exact name", Identity{Username: "alice"}, []string{"by-user"}},
		{"user names are case-sensitive", Identity{Username: "Alice"}, nil},
		{"an email matches case-insensitively, and its domain too",
			Identity{Username: "u1", Email: "bob@example.com"}, []string{"by-email", "staff", "by-domain"}},
		{"a domain matches the part after the last @",
			Identity{Username: "u2", Email: `"odd@evil.com"@EXAMPLE.com`}, []string{"staff", "by-domain"}},
		{"a subdomain does not match its parent domain",
			Identity{Username: "u3", Email: "eve@mail.example.com"}, nil},
		{"a domain must end the address",
			Identity{Username: "u4", Email: "eve@example.com.evil.org"}, nil},
		{"no email (not verified) matches no email mapping", Identity{Username: "u5"}, nil},
		{"an upstream group matches, and existing groups stay first without duplicates",
			Identity{Username: "alice", Groups: []string{"dex:dev", "by-user", "dex:dev"}}, []string{"dex:dev", "by-user", "developers"}},
		{"groups added by a mapping do not make later mappings match (one pass)",
			Identity{Username: "u6", Email: "x@example.com"}, []string{"staff", "by-domain"}},
		{"an upstream group matches a mapping on it whatever the order",
			Identity{Username: "u7", Groups: []string{"staff"}}, []string{"staff", "chained"}},
		{"a mapping restricted to an IdP matches its users", Identity{Username: "carol", IdentityProvider: "corp"}, []string{"corp-only"}},
		{"a mapping restricted to an IdP ignores other IdPs' users", Identity{Username: "carol", IdentityProvider: "dex"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id.Clone()
			m.Apply(id)
			if !slices.Equal(id.Groups, tt.want) {
				t.Fatalf("groups %q, want %q", id.Groups, tt.want)
			}
		})
	}

	t.Run("the order of mappings does not change the groups added", func(t *testing.T) {
		reversed := slices.Clone(mappings)
		slices.Reverse(reversed)
		id1 := &Identity{Username: "alice", Email: "bob@example.com", Groups: []string{"dex:dev"}}
		id2 := id1.Clone()
		m.Apply(id1)
		NewGroupMapper(reversed).Apply(id2)
		slices.Sort(id1.Groups)
		slices.Sort(id2.Groups)
		if !slices.Equal(id1.Groups, id2.Groups) {
			t.Fatalf("%q != %q", id1.Groups, id2.Groups)
		}
	})
	t.Run("a nil mapper and a nil identity are fine", func(t *testing.T) {
		var nm *GroupMapper
		id := &Identity{Groups: []string{"a", "a"}}
		nm.Apply(id)
		m.Apply(nil)
		if !slices.Equal(id.Groups, []string{"a"}) {
			t.Fatalf("groups %q", id.Groups)
		}
	})
}
