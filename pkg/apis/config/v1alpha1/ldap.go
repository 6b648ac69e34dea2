package v1alpha1

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	ldapv3 "github.com/go-ldap/ldap/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// LDAPConfig makes an identity provider an LDAP directory (OpenLDAP, Active
// Directory, ...): people log in with a user name and password, which
// Portcullis checks by binding as the user, and their groups come from the
// directory. The OpenID Connect fields of the identity provider (issuer,
// claimMappings, clientID, ...) must then be left out.
type LDAPConfig struct {
	// Hosts are the directory's servers, "host" or "host:port", tried in
	// order. The port defaults to 636 with LDAPS, 389 otherwise.
	Hosts []string `json:"hosts"`
	// TLSMode is how the connection is protected: "LDAPS" (TLS from the
	// first byte, the default), "StartTLS" (plain LDAP upgraded with the
	// StartTLS operation before anything is sent), or "InsecurePlaintext"
	// (no TLS at all: passwords cross the network in clear; for tests only).
	TLSMode string `json:"tlsMode,omitempty"`
	// CertificateAuthorityFile is a PEM file of the CAs that sign the
	// directory's certificates. Default: the system roots.
	CertificateAuthorityFile string `json:"certificateAuthorityFile,omitempty"`
	// ServerName is the name the directory's certificate must carry.
	// Default: the host being dialled.
	ServerName string `json:"serverName,omitempty"`
	// Timeout bounds connecting and each operation. Default 10s.
	Timeout metav1.Duration `json:"timeout,omitempty"`

	// BindDN and BindPasswordFile are the service account Portcullis
	// searches the directory with. The file is re-read at each use, so the
	// password can be rotated in place.
	BindDN           string `json:"bindDN"`
	BindPasswordFile string `json:"bindPasswordFile"`

	// UserSearch finds the entry of the person logging in.
	UserSearch LDAPUserSearch `json:"userSearch"`
	// GroupSearch finds the groups the person is a member of. Optional:
	// without it (and without userSearch.memberOfAttribute) users have no
	// groups from the directory.
	GroupSearch *LDAPGroupSearch `json:"groupSearch,omitempty"`

	// UsernamePrefix is prepended to the user name (as in
	// claimMappings.username.prefix of OpenID Connect providers). Required;
	// "" means no prefix.
	UsernamePrefix *string `json:"usernamePrefix"`
	// GroupsPrefix is prepended to every group. Required; "" means no prefix.
	GroupsPrefix *string `json:"groupsPrefix"`
}

// LDAPUserSearch says how to find a user's entry.
type LDAPUserSearch struct {
	// BaseDN is where users are searched, with the whole subtree.
	BaseDN string `json:"baseDN"`
	// Filter is ANDed with (usernameAttribute=<what the person typed>),
	// e.g. "(objectClass=inetOrgPerson)", or, to leave out disabled
	// accounts of Active Directory,
	// "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))".
	// Default "(objectClass=*)".
	Filter string `json:"filter,omitempty"`
	// UsernameAttribute is matched against the user name typed at login, and
	// its value (as the directory holds it) is the Kubernetes user name.
	// Default "uid"; "sAMAccountName" or "userPrincipalName" for Active
	// Directory.
	UsernameAttribute string `json:"usernameAttribute,omitempty"`
	// UIDAttribute is the user's Kubernetes UID. Default "entryUUID";
	// "objectGUID" for Active Directory. Binary values are hex-encoded.
	UIDAttribute string `json:"uidAttribute,omitempty"`
	// EmailAttribute, when set, is the user's email address (used by group
	// mappings and access policies on emails). Directories do not verify
	// addresses: set it only if yours are managed by the company.
	EmailAttribute string `json:"emailAttribute,omitempty"`
	// MemberOfAttribute, when set, takes the user's groups from this
	// attribute of the user's entry (e.g. "memberOf"): each value is a group
	// DN, and the group's name is the value of its first RDN (cn=devs,... is
	// "devs"). Use this or groupSearch, not both.
	MemberOfAttribute string `json:"memberOfAttribute,omitempty"`
}

// LDAPGroupSearch says how to find a user's groups.
type LDAPGroupSearch struct {
	// BaseDN is where groups are searched, with the whole subtree.
	BaseDN string `json:"baseDN"`
	// Filter is ANDed with (memberAttribute=<the user's DN>). Default
	// "(objectClass=*)".
	Filter string `json:"filter,omitempty"`
	// MemberAttribute is the attribute of a group holding its members' DNs.
	// Default "member" ("uniqueMember" for groupOfUniqueNames).
	MemberAttribute string `json:"memberAttribute,omitempty"`
	// NameAttribute is the group's name. Default "cn".
	NameAttribute string `json:"nameAttribute,omitempty"`
	// Nested says whether the groups of groups count: "" (no: direct
	// membership only), "Recursive" (Portcullis searches again for groups
	// having the groups found as members, up to 10 levels; works with any
	// directory) or "InChain" (one search with Active Directory's
	// LDAP_MATCHING_RULE_IN_CHAIN, 1.2.840.113556.1.4.1941).
	Nested string `json:"nested,omitempty"`
}

// LDAP defaults.
const (
	LDAPTLSModeLDAPS             = "LDAPS"
	LDAPTLSModeStartTLS          = "StartTLS"
	LDAPTLSModeInsecurePlaintext = "InsecurePlaintext"

	LDAPNestedRecursive = "Recursive"
	LDAPNestedInChain   = "InChain"

	DefaultLDAPTimeout           = 10 * time.Second
	DefaultLDAPFilter            = "(objectClass=*)"
	DefaultLDAPUsernameAttribute = "uid"
	DefaultLDAPUIDAttribute      = "entryUUID"
	DefaultLDAPMemberAttribute   = "member"
	DefaultLDAPNameAttribute     = "cn"
)

// IsLDAP reports whether the identity provider is an LDAP directory.
func (idp *IdentityProvider) IsLDAP() bool { return idp.LDAP != nil }

// DeepCopy returns a copy of l that shares nothing with it.
func (l *LDAPConfig) DeepCopy() *LDAPConfig {
	if l == nil {
		return nil
	}
	out := *l
	out.Hosts = append([]string(nil), l.Hosts...)
	if l.GroupSearch != nil {
		g := *l.GroupSearch
		out.GroupSearch = &g
	}
	if l.UsernamePrefix != nil {
		v := *l.UsernamePrefix
		out.UsernamePrefix = &v
	}
	if l.GroupsPrefix != nil {
		v := *l.GroupsPrefix
		out.GroupsPrefix = &v
	}
	return &out
}

// SetLDAPDefaults fills the defaults of an LDAP identity provider's ldap block.
func SetLDAPDefaults(l *LDAPConfig) {
	if l.TLSMode == "" {
		l.TLSMode = LDAPTLSModeLDAPS
	}
	defaultDuration(&l.Timeout, DefaultLDAPTimeout)
	if l.UserSearch.Filter == "" {
		l.UserSearch.Filter = DefaultLDAPFilter
	}
	if l.UserSearch.UsernameAttribute == "" {
		l.UserSearch.UsernameAttribute = DefaultLDAPUsernameAttribute
	}
	if l.UserSearch.UIDAttribute == "" {
		l.UserSearch.UIDAttribute = DefaultLDAPUIDAttribute
	}
	if g := l.GroupSearch; g != nil {
		if g.Filter == "" {
			g.Filter = DefaultLDAPFilter
		}
		if g.MemberAttribute == "" {
			g.MemberAttribute = DefaultLDAPMemberAttribute
		}
		if g.NameAttribute == "" {
			g.NameAttribute = DefaultLDAPNameAttribute
		}
	}
}

// validateLDAPIdentityProvider checks an LDAP identity provider: its ldap
// block, and that no OpenID Connect field is set beside it.
func validateLDAPIdentityProvider(idp *IdentityProvider, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	oidcOnly := func(name string, set bool) {
		if set {
			errs = append(errs, field.Forbidden(p.Child(name), "is an OpenID Connect setting, and this identity provider is an LDAP directory (it has ldap): remove it"))
		}
	}
	oidcOnly("issuer", idp.Issuer.URL != "" || idp.Issuer.DiscoveryURL != nil || idp.Issuer.CertificateAuthority != "" || len(idp.Issuer.Audiences) > 0 || idp.Issuer.AudienceMatchPolicy != "" || idp.Issuer.EgressSelectorType != "")
	oidcOnly("claimValidationRules", len(idp.ClaimValidationRules) > 0)
	cm := idp.ClaimMappings
	oidcOnly("claimMappings", cm.Username.Claim != "" || cm.Username.Expression != "" || cm.Username.Prefix != nil ||
		cm.Groups.Claim != "" || cm.Groups.Expression != "" || cm.Groups.Prefix != nil ||
		cm.UID.Claim != "" || cm.UID.Expression != "" || len(cm.Extra) > 0)
	oidcOnly("userValidationRules", len(idp.UserValidationRules) > 0)
	oidcOnly("certificateAuthorityFile", idp.CertificateAuthorityFile != "")
	oidcOnly("clientID", idp.ClientID != "")
	oidcOnly("clientSecretFile", idp.ClientSecretFile != "")
	oidcOnly("acceptIDTokens", idp.AcceptIDTokens)
	oidcOnly("userInfo", idp.UserInfo != nil)
	// Scopes are defaulted for OpenID Connect providers only, so any are the
	// operator's.
	oidcOnly("scopes", len(idp.Scopes) > 0)

	l := idp.LDAP
	lp := p.Child("ldap")
	if len(l.Hosts) == 0 {
		errs = append(errs, field.Required(lp.Child("hosts"), "name at least one directory server, e.g. ldap.example.com:636"))
	}
	for i, h := range l.Hosts {
		errs = append(errs, validateLDAPHost(h, lp.Child("hosts").Index(i))...)
	}
	switch l.TLSMode {
	case LDAPTLSModeLDAPS, LDAPTLSModeStartTLS:
	case LDAPTLSModeInsecurePlaintext:
		if l.CertificateAuthorityFile != "" || l.ServerName != "" {
			errs = append(errs, field.Invalid(lp.Child("tlsMode"), l.TLSMode, "certificateAuthorityFile and serverName mean nothing without TLS: use LDAPS or StartTLS"))
		}
	default:
		errs = append(errs, field.NotSupported(lp.Child("tlsMode"), l.TLSMode, []string{LDAPTLSModeLDAPS, LDAPTLSModeStartTLS, LDAPTLSModeInsecurePlaintext}))
	}
	errs = append(errs, validateCAFile(l.CertificateAuthorityFile, lp.Child("certificateAuthorityFile"))...)
	if l.Timeout.Duration < 0 {
		errs = append(errs, field.Invalid(lp.Child("timeout"), l.Timeout.String(), "must be positive, e.g. 10s"))
	}
	if l.BindDN == "" {
		errs = append(errs, field.Required(lp.Child("bindDN"), "set the DN of the account Portcullis searches the directory with, e.g. cn=portcullis,ou=services,dc=example,dc=com"))
	} else {
		errs = append(errs, validateDN(l.BindDN, lp.Child("bindDN"))...)
	}
	if l.BindPasswordFile == "" {
		errs = append(errs, field.Required(lp.Child("bindPasswordFile"), "set the file holding the password of bindDN"))
	}
	errs = append(errs, validateReadableFile(l.BindPasswordFile, lp.Child("bindPasswordFile"))...)

	us := lp.Child("userSearch")
	errs = append(errs, validateRequiredDN(l.UserSearch.BaseDN, us.Child("baseDN"), "ou=people,dc=example,dc=com")...)
	errs = append(errs, validateLDAPFilter(l.UserSearch.Filter, us.Child("filter"))...)
	for _, a := range []struct{ name, v string }{
		{"usernameAttribute", l.UserSearch.UsernameAttribute},
		{"uidAttribute", l.UserSearch.UIDAttribute},
		{"emailAttribute", l.UserSearch.EmailAttribute},
		{"memberOfAttribute", l.UserSearch.MemberOfAttribute},
	} {
		errs = append(errs, validateLDAPAttribute(a.v, us.Child(a.name))...)
	}
	if g := l.GroupSearch; g != nil {
		gs := lp.Child("groupSearch")
		if l.UserSearch.MemberOfAttribute != "" {
			errs = append(errs, field.Invalid(gs, "", "set either groupSearch or userSearch.memberOfAttribute, not both"))
		}
		errs = append(errs, validateRequiredDN(g.BaseDN, gs.Child("baseDN"), "ou=groups,dc=example,dc=com")...)
		errs = append(errs, validateLDAPFilter(g.Filter, gs.Child("filter"))...)
		errs = append(errs, validateLDAPAttribute(g.MemberAttribute, gs.Child("memberAttribute"))...)
		errs = append(errs, validateLDAPAttribute(g.NameAttribute, gs.Child("nameAttribute"))...)
		switch g.Nested {
		case "", LDAPNestedRecursive, LDAPNestedInChain:
		default:
			errs = append(errs, field.NotSupported(gs.Child("nested"), g.Nested, []string{LDAPNestedRecursive, LDAPNestedInChain}))
		}
	}
	if l.UsernamePrefix == nil {
		errs = append(errs, field.Required(lp.Child("usernamePrefix"), `set the prefix of user names from this directory (e.g. "corp:"); "" means no prefix`))
	}
	if l.GroupsPrefix == nil {
		errs = append(errs, field.Required(lp.Child("groupsPrefix"), `set the prefix of groups from this directory (e.g. "corp:"); "" means no prefix`))
	} else if strings.HasPrefix(*l.GroupsPrefix, "system:") {
		errs = append(errs, field.Invalid(lp.Child("groupsPrefix"), *l.GroupsPrefix, `groups starting with "system:" are reserved for Kubernetes itself`))
	}
	return errs
}

func validateLDAPHost(h string, fld *field.Path) field.ErrorList {
	const help = `give a host name or address, optionally with a port: "ldap.example.com", "ldap.example.com:636", "[2001:db8::1]:636" (no ldap:// or ldaps://: the scheme follows tlsMode)`
	if h == "" || strings.Contains(h, "/") || strings.ContainsAny(h, " @") {
		return field.ErrorList{field.Invalid(fld, h, help)}
	}
	host, port := h, ""
	if hh, pp, err := net.SplitHostPort(h); err == nil {
		host, port = hh, pp
	} else if strings.Count(h, ":") > 0 && !strings.HasPrefix(h, "[") {
		return field.ErrorList{field.Invalid(fld, h, help)}
	}
	if host == "" {
		return field.ErrorList{field.Invalid(fld, h, help)}
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return field.ErrorList{field.Invalid(fld, h, "the port must be a number from 1 to 65535")}
		}
	}
	return nil
}

func validateRequiredDN(dn string, fld *field.Path, example string) field.ErrorList {
	if dn == "" {
		return field.ErrorList{field.Required(fld, "set the DN to search under, e.g. "+example)}
	}
	return validateDN(dn, fld)
}

func validateDN(dn string, fld *field.Path) field.ErrorList {
	if _, err := ldapv3.ParseDN(dn); err != nil {
		return field.ErrorList{field.Invalid(fld, dn, fmt.Sprintf("is not a distinguished name (%v), e.g. ou=people,dc=example,dc=com", err))}
	}
	return nil
}

func validateLDAPFilter(f string, fld *field.Path) field.ErrorList {
	if _, err := ldapv3.CompileFilter(f); err != nil {
		return field.ErrorList{field.Invalid(fld, f, fmt.Sprintf("is not an LDAP filter (%v): write it in parentheses, e.g. (objectClass=person)", err))}
	}
	return nil
}

func validateLDAPAttribute(a string, fld *field.Path) field.ErrorList {
	if a == "" {
		return nil
	}
	// An attribute description: a name or an OID, with options (;binary).
	for i, r := range a {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '-' || r == '.' || r == ';'))
		if !ok {
			return field.ErrorList{field.Invalid(fld, a, "give an attribute name such as uid, cn or sAMAccountName (letters, digits and '-')")}
		}
	}
	return nil
}
