package v1alpha1

import (
	"path/filepath"
	"testing"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
)

// withLDAP is the valid configuration with a third identity provider, an
// LDAP directory, at identityProviders[2].
func withLDAP(f files) *PortcullisConfiguration {
	c := valid(f)
	c.IdentityProviders = append(c.IdentityProviders, IdentityProvider{
		Name: "corp",
		LDAP: &LDAPConfig{
			Hosts:                    []string{"ldap1.example.com", "ldap2.example.com:3269", "[2001:db8::1]:636"},
			CertificateAuthorityFile: f.ca,
			BindDN:                   "cn=portcullis,ou=services,dc=example,dc=com",
			BindPasswordFile:         f.secret,
			UserSearch: LDAPUserSearch{
				BaseDN: "ou=people,dc=example,dc=com",
				Filter: "(&(objectClass=person)(!(employeeType=disabled)))",
			},
			GroupSearch:    &LDAPGroupSearch{BaseDN: "ou=groups,dc=example,dc=com", Nested: LDAPNestedRecursive},
			UsernamePrefix: ptr("corp:"),
			GroupsPrefix:   ptr("corp:"),
		},
	})
	c.GroupMappings[0].Match.IdentityProviders = append(c.GroupMappings[0].Match.IdentityProviders, "corp")
	SetDefaults(c)
	return c
}

func TestAnLDAPIdentityProviderIsValidAndDefaulted(t *testing.T) {
	f := newFiles(t)
	c := withLDAP(f)
	checkErrors(t, Validate(c))
	l := c.IdentityProviders[2].LDAP
	if l.TLSMode != "LDAPS" || l.Timeout.Duration != 10*time.Second || l.UserSearch.UsernameAttribute != "uid" || l.UserSearch.UIDAttribute != "entryUUID" ||
		l.GroupSearch.Filter != "(objectClass=*)" || l.GroupSearch.MemberAttribute != "member" || l.GroupSearch.NameAttribute != "cn" {
		t.Errorf("defaults: %+v %+v", l, l.GroupSearch)
	}
	if len(c.IdentityProviders[2].Scopes) != 0 || c.IdentityProviders[2].DisplayName != "corp" {
		t.Errorf("an LDAP identity provider got OpenID Connect defaults: scopes %v, display name %q", c.IdentityProviders[2].Scopes, c.IdentityProviders[2].DisplayName)
	}
}

func TestValidateLDAPReportsEveryRuleWithItsFieldPath(t *testing.T) {
	f := newFiles(t)
	const p = "identityProviders[2]"
	for _, tc := range []struct {
		name   string
		mutate func(idp *IdentityProvider, l *LDAPConfig)
		want   []want
	}{
		{"OpenID Connect settings are refused beside ldap", func(idp *IdentityProvider, _ *LDAPConfig) {
			idp.Issuer = apiserverv1.Issuer{URL: "https://dex.example.com"}
			idp.ClientID, idp.AcceptIDTokens, idp.Scopes = "portcullis", true, []string{"openid"}
			idp.ClaimMappings.Username.Claim = "email"
		}, []want{{p + ".issuer", "Forbidden: is an OpenID Connect setting"}, {p + ".clientID", "Forbidden"}, {p + ".acceptIDTokens", "Forbidden"}, {p + ".scopes", "Forbidden"}, {p + ".claimMappings", "Forbidden"}}},
		{"a host is required", func(_ *IdentityProvider, l *LDAPConfig) { l.Hosts = nil }, []want{{p + ".ldap.hosts", "Required value"}}},
		{"hosts are host[:port], without a scheme", func(_ *IdentityProvider, l *LDAPConfig) {
			l.Hosts = []string{"ldaps://ldap.example.com", "ldap.example.com:0", "ldap.example.com:x", "", "2001:db8::1"}
		}, []want{{p + ".ldap.hosts[0]", "no ldap:// or ldaps://"}, {p + ".ldap.hosts[1]", "port must be a number"}, {p + ".ldap.hosts[2]", "port must be a number"}, {p + ".ldap.hosts[3]", "give a host name"}, {p + ".ldap.hosts[4]", "give a host name"}}},
		{"an unknown TLS mode is refused", func(_ *IdentityProvider, l *LDAPConfig) { l.TLSMode = "None" }, []want{{p + ".ldap.tlsMode", `supported values: "LDAPS", "StartTLS", "InsecurePlaintext"`}}},
		{"plaintext is explicit, and takes no CA", func(_ *IdentityProvider, l *LDAPConfig) { l.TLSMode = LDAPTLSModeInsecurePlaintext }, []want{{p + ".ldap.tlsMode", "mean nothing without TLS"}}},
		{"the CA file holds a certificate", func(_ *IdentityProvider, l *LDAPConfig) { l.CertificateAuthorityFile = f.key }, []want{{p + ".ldap.certificateAuthorityFile", "holds no PEM certificate"}}},
		{"the bind DN and its password file are required", func(_ *IdentityProvider, l *LDAPConfig) { l.BindDN, l.BindPasswordFile = "", "" }, []want{{p + ".ldap.bindDN", "Required value"}, {p + ".ldap.bindPasswordFile", "Required value"}}},
		{"the bind password file must exist", func(_ *IdentityProvider, l *LDAPConfig) { l.BindPasswordFile = filepath.Join(f.dir, "nope") }, []want{{p + ".ldap.bindPasswordFile", "cannot be read"}}},
		{"DNs must parse", func(_ *IdentityProvider, l *LDAPConfig) { l.BindDN, l.UserSearch.BaseDN = "portcullis", "" }, []want{{p + ".ldap.bindDN", "is not a distinguished name"}, {p + ".ldap.userSearch.baseDN", "Required value"}}},
		{"filters must parse", func(_ *IdentityProvider, l *LDAPConfig) {
			l.UserSearch.Filter, l.GroupSearch.Filter = "objectClass=person", "(&(a=b)"
		}, []want{{p + ".ldap.userSearch.filter", "is not an LDAP filter"}, {p + ".ldap.groupSearch.filter", "is not an LDAP filter"}}},
		{"attributes are names", func(_ *IdentityProvider, l *LDAPConfig) { l.UserSearch.UsernameAttribute = "uid)(x=*" }, []want{{p + ".ldap.userSearch.usernameAttribute", "give an attribute name"}}},
		{"memberOf and a group search do not mix", func(_ *IdentityProvider, l *LDAPConfig) { l.UserSearch.MemberOfAttribute = "memberOf" }, []want{{p + ".ldap.groupSearch", "not both"}}},
		{"an unknown nesting is refused", func(_ *IdentityProvider, l *LDAPConfig) { l.GroupSearch.Nested = "yes" }, []want{{p + ".ldap.groupSearch.nested", `supported values: "Recursive", "InChain"`}}},
		{"prefixes are required, as for OpenID Connect", func(_ *IdentityProvider, l *LDAPConfig) { l.UsernamePrefix, l.GroupsPrefix = nil, nil }, []want{{p + ".ldap.usernamePrefix", "Required value"}, {p + ".ldap.groupsPrefix", "Required value"}}},
		{"groups cannot be made system: groups", func(_ *IdentityProvider, l *LDAPConfig) { l.GroupsPrefix = ptr("system:") }, []want{{p + ".ldap.groupsPrefix", "reserved for Kubernetes"}}},
		{"a negative timeout is refused", func(_ *IdentityProvider, l *LDAPConfig) { l.Timeout.Duration = -time.Second }, []want{{p + ".ldap.timeout", "must be positive"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := withLDAP(f)
			tc.mutate(&c.IdentityProviders[2], c.IdentityProviders[2].LDAP)
			checkErrors(t, Validate(c), tc.want...)
		})
	}
}
