package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/ldap"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// ldapTestUsers and ldapTestGroups are the directory every LDAP test
// starts with: alice in devs (which is nested in platform), bob in ops,
// carol disabled, dave in no group; and hostile names that must match
// nobody unless escaped.
var (
	ldapTestUsers = []framework.LDAPUser{
		{Name: "alice", Password: "alice-pw", Mail: "alice@example.com"},
		{Name: "bob", Password: "bob-pw", Mail: "bob@example.com"},
		{Name: "carol", Password: "carol-pw", Disabled: true},
		{Name: "dave", Password: "dave-pw"},
		// A real user whose name holds filter syntax: it must be found
		// exactly, by its escaped name.
		{Name: "e*v(i)l\\", Password: "evil-pw"},
	}
	ldapTestGroups = []framework.LDAPGroup{
		{Name: "devs", Members: []string{"alice", "carol"}},
		{Name: "ops", Members: []string{"bob", `e*v(i)l\`}},
		{Name: "platform", Members: []string{"group:devs"}},
	}
)

func startTestDirectory(t *testing.T) *framework.LDAP {
	t.Helper()
	return framework.StartLDAP(t, framework.LDAPOptions{Users: ldapTestUsers, Groups: ldapTestGroups})
}

func ldapIdP(l *framework.LDAP, mutate func(*v1alpha1.LDAPConfig)) v1alpha1.IdentityProvider {
	prefix := "corp:"
	cfg := &v1alpha1.LDAPConfig{
		Hosts:                    []string{l.LDAPSAddr},
		TLSMode:                  v1alpha1.LDAPTLSModeLDAPS,
		CertificateAuthorityFile: l.CAFile,
		BindDN:                   l.BindDN,
		BindPasswordFile:         l.BindPasswordFile,
		UserSearch: v1alpha1.LDAPUserSearch{
			BaseDN: l.UsersDN, Filter: framework.UserFilter, UsernameAttribute: "uid", UIDAttribute: "entryUUID", EmailAttribute: "mail",
		},
		GroupSearch: &v1alpha1.LDAPGroupSearch{
			BaseDN: l.GroupsDN, Filter: "(objectClass=groupOfNames)", MemberAttribute: "member", NameAttribute: "cn", Nested: v1alpha1.LDAPNestedRecursive,
		},
		UsernamePrefix: &prefix,
		GroupsPrefix:   &prefix,
	}
	cfg.Timeout.Duration = 5 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	return v1alpha1.IdentityProvider{Name: "corp", LDAP: cfg}
}

func newDirectory(t *testing.T, idp v1alpha1.IdentityProvider) *ldap.Directory {
	t.Helper()
	d, err := ldap.New(idp)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLDAP_DirectoryChecksPasswordsAndReadsGroups(t *testing.T) {
	t.Parallel()
	l := startTestDirectory(t)
	ctx := context.Background()

	for _, tc := range []struct {
		name     string
		mutate   func(*v1alpha1.LDAPConfig)
		groups   []string
		noGroups bool
	}{
		{name: "over LDAPS with groups searched recursively", groups: []string{"corp:devs", "corp:platform"}},
		{name: "over StartTLS", mutate: func(c *v1alpha1.LDAPConfig) {
			c.Hosts, c.TLSMode = []string{l.LDAPAddr}, v1alpha1.LDAPTLSModeStartTLS
		}, groups: []string{"corp:devs", "corp:platform"}},
		{name: "over plain LDAP, with the explicit opt-in", mutate: func(c *v1alpha1.LDAPConfig) {
			c.Hosts, c.TLSMode, c.CertificateAuthorityFile = []string{l.LDAPAddr}, v1alpha1.LDAPTLSModeInsecurePlaintext, ""
		}, groups: []string{"corp:devs", "corp:platform"}},
		{name: "with direct membership only", mutate: func(c *v1alpha1.LDAPConfig) { c.GroupSearch.Nested = "" }, groups: []string{"corp:devs"}},
		{name: "with groups from memberOf", mutate: func(c *v1alpha1.LDAPConfig) {
			c.GroupSearch, c.UserSearch.MemberOfAttribute = nil, "memberOf"
		}, groups: []string{"corp:devs"}},
		{name: "after an unreachable first host", mutate: func(c *v1alpha1.LDAPConfig) {
			c.Hosts = []string{"127.0.0.1:1", l.LDAPSAddr}
		}, groups: []string{"corp:devs", "corp:platform"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDirectory(t, ldapIdP(l, tc.mutate))
			res, err := d.Authenticate(ctx, "alice", "alice-pw")
			if err != nil {
				t.Fatalf("alice with her password: %v", err)
			}
			id := res.Identity
			if id.Username != "corp:alice" || id.Email != "alice@example.com" || id.IdentityProvider != "corp" || len(id.UID) != 36 {
				t.Errorf("identity = %+v, want corp:alice, alice@example.com, idp corp and an entryUUID", id)
			}
			if !slices.Equal(id.Groups, tc.groups) {
				t.Errorf("groups = %v, want %v", id.Groups, tc.groups)
			}
			if res.DN != l.UserDN("alice") {
				t.Errorf("DN = %q, want %q", res.DN, l.UserDN("alice"))
			}
		})
	}

	t.Run("the user name is the directory's, whatever case was typed", func(t *testing.T) {
		res, err := newDirectory(t, ldapIdP(l, nil)).Authenticate(ctx, "ALICE", "alice-pw")
		if err != nil || res.Identity.Username != "corp:alice" {
			t.Fatalf("ALICE: %v, %+v; want corp:alice", err, res)
		}
	})

	d := newDirectory(t, ldapIdP(l, nil))
	t.Run("every refusal is the same error", func(t *testing.T) {
		for _, c := range []struct{ name, user, password string }{
			{"a wrong password", "alice", "wrong"},
			{"an empty password (an unauthenticated bind would succeed)", "alice", ""},
			{"an unknown user", "nobody", "alice-pw"},
			{"a disabled account with its right password", "carol", "carol-pw"},
			{"the service account's DN as a user name", l.BindDN, l.BindPassword},
			{"a user name with leading spaces", " alice", "alice-pw"},
		} {
			_, err := d.Authenticate(ctx, c.user, c.password)
			if !errors.Is(err, ldap.ErrInvalidCredentials) || err.Error() != "invalid username or password" {
				t.Errorf("%s: %v, want exactly %q", c.name, err, ldap.ErrInvalidCredentials)
			}
		}
	})

	t.Run("hostile user names are data, not filter syntax", func(t *testing.T) {
		for _, name := range []string{
			"*", "a*", "*)(uid=*", "alice)(|(uid=*", "*)(employeeType=disabled", "alice)(objectClass=*",
			"carol)(!(employeeType=disabled)", "\x00", "alice\x00", "(uid=alice)", "alice\\2a", "*))%00",
		} {
			for _, pw := range []string{"alice-pw", "carol-pw", "x"} {
				if res, err := d.Authenticate(ctx, name, pw); !errors.Is(err, ldap.ErrInvalidCredentials) {
					t.Errorf("user name %q with password %q: %+v, %v; want the generic refusal", name, pw, res, err)
				}
			}
		}
		// The user whose name holds those characters logs in with it.
		// (Its DN, with those characters, is escaped in the group search too.)
		res, err := d.Authenticate(ctx, `e*v(i)l\`, "evil-pw")
		if err != nil || res.Identity.Username != `corp:e*v(i)l\` || !slices.Equal(res.Identity.Groups, []string{"corp:ops"}) {
			t.Fatalf(`e*v(i)l\ with its password: %+v, %v`, res, err)
		}
	})

	t.Run("a lookup by DN sees deletion, disabling and group changes", func(t *testing.T) {
		l.AddUser(framework.LDAPUser{Name: "frank", Password: "frank-pw"})
		l.AddMember("ops", "frank")
		res, err := d.Authenticate(ctx, "frank", "frank-pw")
		if err != nil || !slices.Equal(res.Identity.Groups, []string{"corp:ops"}) {
			t.Fatalf("frank: %+v, %v", res, err)
		}
		l.RemoveMember("ops", "frank")
		l.AddMember("devs", "frank")
		again, err := d.Lookup(ctx, res.DN)
		if err != nil || !slices.Equal(again.Identity.Groups, []string{"corp:devs", "corp:platform"}) {
			t.Fatalf("frank after moving from ops to devs: %+v, %v", again, err)
		}
		l.SetDisabled("frank", true)
		if _, err := d.Lookup(ctx, res.DN); !errors.Is(err, ldap.ErrUserGone) {
			t.Fatalf("frank disabled: %v, want ErrUserGone", err)
		}
		l.SetDisabled("frank", false)
		l.DeleteUser("frank")
		if _, err := d.Lookup(ctx, res.DN); !errors.Is(err, ldap.ErrUserGone) {
			t.Fatalf("frank deleted: %v, want ErrUserGone", err)
		}
	})

	t.Run("directory groups named like Kubernetes' or Portcullis's own are dropped", func(t *testing.T) {
		l.AddGroup(framework.LDAPGroup{Name: "system:masters", Members: []string{"alice"}})
		l.AddGroup(framework.LDAPGroup{Name: "portcullis.dev:tokenreview-callers", Members: []string{"alice"}})
		defer l.DeleteGroup("system:masters")
		defer l.DeleteGroup("portcullis.dev:tokenreview-callers")
		empty := ""
		res, err := newDirectory(t, ldapIdP(l, func(c *v1alpha1.LDAPConfig) { c.GroupsPrefix = &empty })).Authenticate(ctx, "alice", "alice-pw")
		if err != nil || !slices.Equal(res.Identity.Groups, []string{"devs", "platform"}) {
			t.Fatalf("alice without a groups prefix: %+v, %v; want [devs platform] only", res, err)
		}
		// With a prefix they are ordinary groups, as for OpenID Connect.
		res, err = d.Authenticate(ctx, "alice", "alice-pw")
		if err != nil || !slices.Contains(res.Identity.Groups, "corp:system:masters") {
			t.Fatalf("alice with the corp: prefix: %+v, %v", res, err)
		}
	})

	t.Run("a wrong bind password is the operator's error, not the user's", func(t *testing.T) {
		bad := ldapIdP(l, func(c *v1alpha1.LDAPConfig) {
			c.BindPasswordFile = filepath.Join(t.TempDir(), "wrong-bind-password")
			if err := os.WriteFile(c.BindPasswordFile, []byte("not-it\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
		dd := newDirectory(t, bad)
		_, err := dd.Authenticate(ctx, "alice", "alice-pw")
		if !errors.Is(err, ldap.ErrBindCredentials) || !errors.Is(err, ldap.ErrUnavailable) || errors.Is(err, ldap.ErrInvalidCredentials) {
			t.Fatalf("login with a wrong bind password: %v, want ErrBindCredentials", err)
		}
		if err := dd.Check(ctx); !errors.Is(err, ldap.ErrBindCredentials) || !strings.Contains(err.Error(), "bindPasswordFile") {
			t.Fatalf("Check: %v, want the bind error naming ldap.bindPasswordFile", err)
		}
		if strings.Contains(err.Error(), "not-it") {
			t.Fatalf("the error shows the bind password: %v", err)
		}
	})

	t.Run("an unreachable directory is unavailable, never a wrong password", func(t *testing.T) {
		dd := newDirectory(t, ldapIdP(l, func(c *v1alpha1.LDAPConfig) { c.Hosts = []string{"127.0.0.1:1"} }))
		_, err := dd.Authenticate(ctx, "alice", "wrong")
		if !errors.Is(err, ldap.ErrUnavailable) || errors.Is(err, ldap.ErrInvalidCredentials) || !strings.Contains(err.Error(), `directory corp`) {
			t.Fatalf("login against a closed port: %v, want ErrUnavailable naming the directory", err)
		}
	})

	t.Run("LDAPS to a plain listener, or StartTLS to a TLS one, is unavailable, not a refused password", func(t *testing.T) {
		for _, c := range []struct {
			mode, host string
		}{{v1alpha1.LDAPTLSModeLDAPS, l.LDAPAddr}, {v1alpha1.LDAPTLSModeStartTLS, l.LDAPSAddr}} {
			dd := newDirectory(t, ldapIdP(l, func(cfg *v1alpha1.LDAPConfig) { cfg.Hosts, cfg.TLSMode = []string{c.host}, c.mode }))
			if _, err := dd.Authenticate(ctx, "alice", "alice-pw"); !errors.Is(err, ldap.ErrUnavailable) {
				t.Errorf("%s to %s: %v, want ErrUnavailable", c.mode, c.host, err)
			}
		}
	})

	t.Run("a certificate from another CA is refused", func(t *testing.T) {
		other := framework.NewPKI(t)
		dd := newDirectory(t, ldapIdP(l, func(c *v1alpha1.LDAPConfig) { c.CertificateAuthorityFile = other.CA.CertFile }))
		if _, err := dd.Authenticate(ctx, "alice", "alice-pw"); !errors.Is(err, ldap.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("login through a directory with an untrusted certificate: %v", err)
		}
	})
}
