package ldap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

func TestValidUsername(t *testing.T) {
	for name, ok := range map[string]bool{
		"alice": true, "jane.doe@example.com": true, `EXAMPLE\jane`: true, "e*v(i)l": true, "Zoë": true,
		"": false, " alice": false, "alice ": false, "al\x00ice": false, "al\nice": false, "\xff": false,
		strings.Repeat("a", MaxUsernameLength): true, strings.Repeat("a", MaxUsernameLength+1): false,
	} {
		if ValidUsername(name) != ok {
			t.Errorf("ValidUsername(%q) = %v, want %v", name, !ok, ok)
		}
	}
}

func TestFirstRDNValue(t *testing.T) {
	for dn, want := range map[string]string{
		"cn=devs,ou=groups,dc=example,dc=com":       "devs",
		`CN=Domain Admins,CN=Users,DC=corp,DC=test`: "Domain Admins",
		`cn=a\,b,dc=example`:                        "a,b",
		"not a dn":                                  "",
		"":                                          "",
	} {
		if got := firstRDNValue(dn); got != want {
			t.Errorf("firstRDNValue(%q) = %q, want %q", dn, got, want)
		}
	}
}

func TestAttributeString(t *testing.T) {
	guid := []byte{0x8f, 0x1c, 0x00, 0x42, 0xa1, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c}
	if got := attributeString(guid); got != "8f1c0042a102030405060708090a0b0c" {
		t.Errorf("a binary objectGUID: %q", got)
	}
	if got := attributeString([]byte("7e709a32-846f-1041-864b-955aa0584aff")); got != "7e709a32-846f-1041-864b-955aa0584aff" {
		t.Errorf("a textual entryUUID: %q", got)
	}
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	prefix := ""
	base := func() v1alpha1.IdentityProvider {
		return v1alpha1.IdentityProvider{Name: "corp", LDAP: &v1alpha1.LDAPConfig{
			Hosts: []string{"ldap.example.com"}, BindDN: "cn=x", BindPasswordFile: "/nonexistent",
			UserSearch: v1alpha1.LDAPUserSearch{BaseDN: "dc=example"}, UsernamePrefix: &prefix, GroupsPrefix: &prefix,
		}}
	}
	if _, err := New(v1alpha1.IdentityProvider{Name: "oidc"}); err == nil {
		t.Error("New accepted an OpenID Connect provider")
	}
	noPrefix := base()
	noPrefix.LDAP.GroupsPrefix = nil
	if _, err := New(noPrefix); err == nil {
		t.Error("New accepted a directory without groupsPrefix")
	}
	badCA := base()
	badCA.LDAP.CertificateAuthorityFile = "/nonexistent/ca.crt"
	if _, err := New(badCA); err == nil || !strings.Contains(err.Error(), "certificateAuthorityFile") {
		t.Errorf("a missing CA file: %v", err)
	}
	d, err := New(base())
	if err != nil {
		t.Fatal(err)
	}
	// The defaults apply to an undefaulted configuration.
	if d.cfg.TLSMode != v1alpha1.LDAPTLSModeLDAPS || d.timeout == 0 || d.DisplayName() != "corp" {
		t.Errorf("defaults not applied: %+v", d.cfg)
	}
}

func TestTheBindPasswordIsReadAtEachUse(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	prefix := ""
	d, err := New(v1alpha1.IdentityProvider{Name: "corp", LDAP: &v1alpha1.LDAPConfig{
		Hosts: []string{"127.0.0.1:1"}, BindDN: "cn=x", BindPasswordFile: file,
		UserSearch: v1alpha1.LDAPUserSearch{BaseDN: "dc=example"}, UsernamePrefix: &prefix, GroupsPrefix: &prefix,
	}})
	if err != nil {
		t.Fatal(err)
	}
	// No file yet: the operator's error, not the user's.
	if _, err := d.Authenticate(context.Background(), "alice", "pw"); !errors.Is(err, ErrBindCredentials) || errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("without the password file: %v", err)
	}
	for _, content := range []string{"first\n", "second\r\n"} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if pw, err := d.bindPassword(); err != nil || pw != strings.TrimRight(content, "\r\n") {
			t.Errorf("bindPassword after writing %q: %q, %v", content, pw, err)
		}
	}
	// Nothing listens on port 1: unavailable, naming the directory, never
	// a refused password.
	_, err = d.Authenticate(context.Background(), "alice", "pw")
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBindCredentials) || !strings.Contains(err.Error(), "directory corp") {
		t.Fatalf("an unreachable directory: %v", err)
	}
	if strings.Contains(err.Error(), "second") {
		t.Fatalf("the error shows the bind password: %v", err)
	}
	// Refusals that need no directory are the generic answer.
	for _, c := range [][2]string{{"alice", ""}, {"", "pw"}, {"al\x00ice", "pw"}} {
		if _, err := d.Authenticate(context.Background(), c[0], c[1]); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("%q/%q: %v, want ErrInvalidCredentials", c[0], c[1], err)
		}
	}
}

func TestFiltersEscapeWhatTheyAreGiven(t *testing.T) {
	us := v1alpha1.LDAPUserSearch{Filter: "(objectClass=person)", UsernameAttribute: "sAMAccountName"}
	for name, want := range map[string]string{
		"jane":     "(&(objectClass=person)(sAMAccountName=jane))",
		"*":        `(&(objectClass=person)(sAMAccountName=\2a))`,
		"*)(uid=*": `(&(objectClass=person)(sAMAccountName=\2a\29\28uid=\2a))`,
		"a\x00b":   `(&(objectClass=person)(sAMAccountName=a\00b))`,
		`EX\jane`:  `(&(objectClass=person)(sAMAccountName=EX\5cjane))`,
		"Zoë":      `(&(objectClass=person)(sAMAccountName=Zo\c3\ab))`,
	} {
		if got := userFilter(us, name); got != want {
			t.Errorf("userFilter(%q) = %s, want %s", name, got, want)
		}
	}
	gs := &v1alpha1.LDAPGroupSearch{Filter: "(objectClass=group)", MemberAttribute: "member"}
	dn := `uid=e*v(i)l\5c,ou=people,dc=example,dc=com`
	if got, want := groupFilter(gs, []string{dn}), `(&(objectClass=group)(member=uid=e\2av\28i\29l\5c5c,ou=people,dc=example,dc=com))`; got != want {
		t.Errorf("one member: %s, want %s", got, want)
	}
	if got, want := groupFilter(gs, []string{"cn=a", "cn=b"}), "(&(objectClass=group)(|(member=cn=a)(member=cn=b)))"; got != want {
		t.Errorf("two members: %s, want %s", got, want)
	}
	gs.Nested = v1alpha1.LDAPNestedInChain
	if got, want := groupFilter(gs, []string{"CN=Jane,DC=corp"}), "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Jane,DC=corp))"; got != want {
		t.Errorf("in chain: %s, want %s", got, want)
	}
}
