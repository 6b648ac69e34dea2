package framework

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ldapv3 "github.com/go-ldap/ldap/v3"
)

// SlapdBinary returns the path of OpenLDAP's slapd, or "" when it is not
// installed (Debian: apt-get install -y slapd ldap-utils).
func SlapdBinary() string {
	for _, p := range []string{os.Getenv("PORTCULLIS_SLAPD"), "/usr/sbin/slapd"} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("slapd"); err == nil {
		return p
	}
	return ""
}

// slapdModuleDir is where Debian's slapd keeps its backends and overlays.
const slapdModuleDir = "/usr/lib/ldap"

// LDAPUser is a person of the test directory (objectClass inetOrgPerson
// under ou=people), who logs in with Name (uid) and Password.
type LDAPUser struct {
	Name     string
	Password string
	Mail     string
	// Disabled sets employeeType: disabled, which the filter of
	// LDAP.UserFilter leaves out: the account exists but may not log in.
	Disabled bool
}

// LDAPGroup is a groupOfNames under ou=groups. Members are user names, or
// "group:<name>" for a nested group.
type LDAPGroup struct {
	Name    string
	Members []string
}

// LDAPOptions configures StartLDAP.
type LDAPOptions struct {
	// PKI signs slapd's serving certificate; a new one when nil.
	PKI    *PKI
	Users  []LDAPUser
	Groups []LDAPGroup
}

// LDAP is a running OpenLDAP slapd on loopback, with an LDAPS listener and a
// plain one (for StartTLS), suffix dc=example,dc=com, the memberof overlay,
// and a read-only service account for Portcullis.
type LDAP struct {
	LDAPSAddr string // 127.0.0.1:<port>, TLS from the first byte
	LDAPAddr  string // 127.0.0.1:<port>, plain LDAP (StartTLS)
	CAFile    string // the CA of slapd's certificate

	BaseDN, UsersDN, GroupsDN string
	// BindDN and BindPasswordFile are Portcullis's service account.
	BindDN           string
	BindPassword     string
	BindPasswordFile string
	// AdminDN and AdminPassword are the rootdn (tests change the directory
	// with them).
	AdminDN, AdminPassword string

	Process *Process
	pki     *PKI
	t       testing.TB
}

// UserFilter is the user search filter that leaves out disabled accounts.
const UserFilter = "(&(objectClass=inetOrgPerson)(!(employeeType=disabled)))"

// StartLDAP starts slapd with a generated configuration, seeds it, and
// returns once it answers on both listeners. The test is skipped (and listed
// in the skipped report) when slapd is not installed.
func StartLDAP(t testing.TB, opts LDAPOptions) *LDAP {
	t.Helper()
	bin := SlapdBinary()
	if bin == "" {
		SkipMissing(t, "OpenLDAP slapd", "apt-get install -y slapd ldap-utils; .ci/run installs it", "the LDAP identity provider is not tested against a real directory")
	}
	if opts.PKI == nil {
		opts.PKI = NewPKI(t)
	}
	dir := filepath.Join(WorkDir(t), "slapd")
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	serving := opts.PKI.IssueServing("127.0.0.1", "localhost")
	l := &LDAP{
		LDAPSAddr:     hostPort(FreePort(t)),
		LDAPAddr:      hostPort(FreePort(t)),
		CAFile:        opts.PKI.CA.CertFile,
		BaseDN:        "dc=example,dc=com",
		UsersDN:       "ou=people,dc=example,dc=com",
		GroupsDN:      "ou=groups,dc=example,dc=com",
		BindDN:        "cn=portcullis,ou=services,dc=example,dc=com",
		BindPassword:  "bind-" + randomHex(t, 12),
		AdminDN:       "cn=admin,dc=example,dc=com",
		AdminPassword: "admin-" + randomHex(t, 12),
		pki:           opts.PKI,
		t:             t,
	}
	l.BindPasswordFile = writeFile(t, "slapd/bind-password", []byte(l.BindPassword+"\n"), 0o600)
	// The service account reads everything but passwords; people may bind
	// (auth) but read nothing, not even their own entry, so a login proves
	// only the password.
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath %s
moduleload back_mdb
moduleload memberof
pidfile %s
TLSCACertificateFile %s
TLSCertificateFile %s
TLSCertificateKeyFile %s
database mdb
maxsize 33554432
suffix "%s"
rootdn "%s"
rootpw %s
directory %s
index objectClass eq
index uid eq
index member eq
overlay memberof
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="%s" read
  by * none
`, slapdModuleDir, filepath.Join(dir, "slapd.pid"), opts.PKI.CA.CertFile, serving.CertFile, serving.KeyFile,
		l.BaseDN, l.AdminDN, l.AdminPassword, filepath.Join(dir, "db"), l.BindDN)
	confPath := writeFile(t, "slapd/slapd.conf", []byte(conf), 0o600)
	l.Process = StartProcess(t, ProcessSpec{
		Name: "slapd",
		Path: bin,
		// -d 0: stay in the foreground, log nothing but errors.
		Args:        []string{"-d", "0", "-f", confPath, "-h", fmt.Sprintf("ldaps://%s/ ldap://%s/", l.LDAPSAddr, l.LDAPAddr)},
		Dir:         dir,
		StopTimeout: 10 * time.Second,
	})
	l.waitReady()
	l.seed(opts)
	return l
}

func (l *LDAP) waitReady() {
	l.t.Helper()
	err := l.Process.WaitUntil(context.Background(), 30*time.Second, "answering LDAPS", func(ctx context.Context) error {
		c, err := l.adminConn()
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		l.t.Fatal(err)
	}
}

// Stop stops slapd (the directory becomes unreachable).
func (l *LDAP) Stop() {
	l.t.Helper()
	if err := l.Process.Stop(); err != nil {
		l.t.Logf("stopping slapd: %v", err)
	}
}

// Start starts slapd again after Stop, on the same ports and data.
func (l *LDAP) Start() {
	l.t.Helper()
	if err := l.Process.Restart(); err != nil {
		l.t.Fatalf("restarting slapd: %v", err)
	}
	l.waitReady()
}

// adminConn is an LDAPS connection bound as the rootdn.
func (l *LDAP) adminConn() (*ldapv3.Conn, error) {
	c, err := ldapv3.DialURL("ldaps://"+l.LDAPSAddr, ldapv3.DialWithTLSConfig(&tls.Config{RootCAs: CertPool(l.pki.CA), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(l.AdminDN, l.AdminPassword); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Admin runs f with a connection bound as the rootdn, failing the test on
// error.
func (l *LDAP) Admin(f func(c *ldapv3.Conn) error) {
	l.t.Helper()
	c, err := l.adminConn()
	if err != nil {
		l.t.Fatalf("connecting to slapd as its admin: %v", err)
	}
	defer c.Close()
	if err := f(c); err != nil {
		l.t.Fatalf("changing the test directory: %v", err)
	}
}

// UserDN is the DN of the user called name.
func (l *LDAP) UserDN(name string) string { return "uid=" + ldapv3.EscapeDN(name) + "," + l.UsersDN }

// GroupDN is the DN of the group called name.
func (l *LDAP) GroupDN(name string) string { return "cn=" + ldapv3.EscapeDN(name) + "," + l.GroupsDN }

func (l *LDAP) memberDN(m string) string {
	if g, ok := strings.CutPrefix(m, "group:"); ok {
		return l.GroupDN(g)
	}
	return l.UserDN(m)
}

func (l *LDAP) seed(opts LDAPOptions) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error {
		add := func(dn string, attrs map[string][]string) error {
			r := ldapv3.NewAddRequest(dn, nil)
			for k, v := range attrs {
				r.Attribute(k, v)
			}
			if err := c.Add(r); err != nil {
				return fmt.Errorf("adding %s: %w", dn, err)
			}
			return nil
		}
		for _, e := range []struct {
			dn    string
			attrs map[string][]string
		}{
			{l.BaseDN, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"example"}, "o": {"Example"}}},
			{l.UsersDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}}},
			{l.GroupsDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"groups"}}},
			{"ou=services," + l.BaseDN, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"services"}}},
			{l.BindDN, map[string][]string{"objectClass": {"organizationalRole", "simpleSecurityObject"}, "cn": {"portcullis"}, "userPassword": {l.BindPassword}}},
		} {
			if err := add(e.dn, e.attrs); err != nil {
				return err
			}
		}
		for _, u := range opts.Users {
			if err := l.addUser(c, u); err != nil {
				return err
			}
		}
		// Nested groups are added after the groups they contain.
		added := map[string]bool{}
		for range opts.Groups {
			for _, g := range opts.Groups {
				if added[g.Name] {
					continue
				}
				ready := true
				for _, m := range g.Members {
					if n, ok := strings.CutPrefix(m, "group:"); ok && !added[n] {
						ready = false
					}
				}
				if !ready {
					continue
				}
				if err := l.addGroup(c, g); err != nil {
					return err
				}
				added[g.Name] = true
			}
		}
		if len(added) != len(opts.Groups) {
			return fmt.Errorf("the groups' nesting has a cycle or names a group that is not defined")
		}
		return nil
	})
}

func (l *LDAP) addUser(c *ldapv3.Conn, u LDAPUser) error {
	r := ldapv3.NewAddRequest(l.UserDN(u.Name), nil)
	r.Attribute("objectClass", []string{"inetOrgPerson"})
	r.Attribute("uid", []string{u.Name})
	r.Attribute("cn", []string{u.Name})
	r.Attribute("sn", []string{u.Name})
	r.Attribute("userPassword", []string{u.Password})
	if u.Mail != "" {
		r.Attribute("mail", []string{u.Mail})
	}
	if u.Disabled {
		r.Attribute("employeeType", []string{"disabled"})
	}
	if err := c.Add(r); err != nil {
		return fmt.Errorf("adding user %s: %w", u.Name, err)
	}
	return nil
}

func (l *LDAP) addGroup(c *ldapv3.Conn, g LDAPGroup) error {
	r := ldapv3.NewAddRequest(l.GroupDN(g.Name), nil)
	r.Attribute("objectClass", []string{"groupOfNames"})
	r.Attribute("cn", []string{g.Name})
	var members []string
	for _, m := range g.Members {
		members = append(members, l.memberDN(m))
	}
	if len(members) == 0 {
		// groupOfNames requires a member: an empty group names itself.
		members = []string{l.GroupDN(g.Name)}
	}
	r.Attribute("member", members)
	if err := c.Add(r); err != nil {
		return fmt.Errorf("adding group %s: %w", g.Name, err)
	}
	return nil
}

// AddUser adds a user.
func (l *LDAP) AddUser(u LDAPUser) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error { return l.addUser(c, u) })
}

// DeleteUser deletes a user's entry (groups keep naming it, as in
// directories without referential integrity).
func (l *LDAP) DeleteUser(name string) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error { return c.Del(ldapv3.NewDelRequest(l.UserDN(name), nil)) })
}

// SetDisabled disables (or enables again) a user's account.
func (l *LDAP) SetDisabled(name string, disabled bool) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error {
		r := ldapv3.NewModifyRequest(l.UserDN(name), nil)
		if disabled {
			r.Replace("employeeType", []string{"disabled"})
		} else {
			r.Delete("employeeType", nil)
		}
		return c.Modify(r)
	})
}

// AddGroup adds a group.
func (l *LDAP) AddGroup(g LDAPGroup) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error { return l.addGroup(c, g) })
}

// DeleteGroup deletes a group.
func (l *LDAP) DeleteGroup(name string) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error { return c.Del(ldapv3.NewDelRequest(l.GroupDN(name), nil)) })
}

// AddMember adds a user (or "group:<name>") to a group.
func (l *LDAP) AddMember(group, member string) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error {
		r := ldapv3.NewModifyRequest(l.GroupDN(group), nil)
		r.Add("member", []string{l.memberDN(member)})
		return c.Modify(r)
	})
}

// RemoveMember removes a user (or "group:<name>") from a group.
func (l *LDAP) RemoveMember(group, member string) {
	l.t.Helper()
	l.Admin(func(c *ldapv3.Conn) error {
		r := ldapv3.NewModifyRequest(l.GroupDN(group), nil)
		r.Delete("member", []string{l.memberDN(member)})
		return c.Modify(r)
	})
}

// IdentityProviderYAML is an identityProviders entry of the Portcullis
// configuration for this directory over LDAPS (or StartTLS), with the
// user filter that leaves out disabled accounts, groups searched
// recursively, and the given prefix for users and groups. indent is put
// before every line.
func (l *LDAP) IdentityProviderYAML(name, prefix string, startTLS bool, indent string) string {
	host, mode := l.LDAPSAddr, "LDAPS"
	if startTLS {
		host, mode = l.LDAPAddr, "StartTLS"
	}
	y := fmt.Sprintf(`- name: %s
  displayName: Example directory
  ldap:
    hosts: [%q]
    tlsMode: %s
    certificateAuthorityFile: %s
    bindDN: %s
    bindPasswordFile: %s
    userSearch:
      baseDN: %s
      filter: %q
      usernameAttribute: uid
      uidAttribute: entryUUID
      emailAttribute: mail
    groupSearch:
      baseDN: %s
      filter: (objectClass=groupOfNames)
      memberAttribute: member
      nameAttribute: cn
      nested: Recursive
    usernamePrefix: %q
    groupsPrefix: %q
`, name, host, mode, l.CAFile, l.BindDN, l.BindPasswordFile, l.UsersDN, UserFilter, l.GroupsDN, prefix, prefix)
	var b strings.Builder
	for _, line := range strings.SplitAfter(y, "\n") {
		if line != "" {
			b.WriteString(indent + line)
		}
	}
	return b.String()
}
