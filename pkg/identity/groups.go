package identity

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// GroupMapper adds the groups of the operator's static mappings
// (groupMappings in the configuration). It is immutable and safe for
// concurrent use; make a new one when the configuration changes.
type GroupMapper struct {
	mappings []groupMapping
}

type groupMapping struct {
	users        sets.Set[string]
	emails       sets.Set[string] // lower case
	emailDomains sets.Set[string] // lower case
	groups       sets.Set[string]
	idps         sets.Set[string] // empty: any IdP
	add          []string
}

// NewGroupMapper compiles mappings (taken to be validated already).
func NewGroupMapper(mappings []v1alpha1.GroupMapping) *GroupMapper {
	m := &GroupMapper{}
	for _, gm := range mappings {
		c := groupMapping{
			users:        sets.New(gm.Match.Users...),
			emails:       sets.New[string](),
			emailDomains: sets.New[string](),
			groups:       sets.New(gm.Match.Groups...),
			idps:         sets.New(gm.Match.IdentityProviders...),
			add:          append([]string(nil), gm.Groups...),
		}
		for _, e := range gm.Match.Emails {
			c.emails.Insert(strings.ToLower(e))
		}
		for _, d := range gm.Match.EmailDomains {
			c.emailDomains.Insert(strings.ToLower(d))
		}
		m.mappings = append(m.mappings, c)
	}
	return m
}

// Apply adds to id.Groups the groups of every mapping that matches id.
//
// A mapping matches when the user's IdP is one of match.identityProviders
// (if any are named) and any of: the username is one of match.users (exact);
// the email is one of match.emails (case-insensitive); the part of the email
// after its last '@' is one of match.emailDomains (case-insensitive, exact
// domain: subdomains do not match); the user has one of match.groups.
//
// All mappings are evaluated in one pass against the identity as it was
// given: a group added by one mapping does not make another mapping match, so
// the order of mappings does not matter. Call Apply once per identity (after
// adding userinfo groups, so those can be matched).
//
// Id.Email must be a verified address (see Identity.Email). The resulting
// groups keep their order (existing first, then added ones in mapping order),
// without duplicates.
func (m *GroupMapper) Apply(id *Identity) {
	if id == nil {
		return
	}
	var added []string
	if m != nil && len(m.mappings) > 0 {
		email := strings.ToLower(id.Email)
		var domain string
		if at := strings.LastIndexByte(email, '@'); at > 0 {
			domain = email[at+1:]
		}
		for i := range m.mappings {
			if mm := &m.mappings[i]; mm.matches(id, email, domain) {
				added = append(added, mm.add...)
			}
		}
	}
	id.Groups = dedupe(id.Groups, added)
}

// matches is evaluated before any group is added, so id.Groups are the
// upstream groups.
func (mm *groupMapping) matches(id *Identity, email, domain string) bool {
	if mm.idps.Len() > 0 && !mm.idps.Has(id.IdentityProvider) {
		return false
	}
	switch {
	case mm.users.Has(id.Username):
		return true
	case email != "" && mm.emails.Has(email):
		return true
	case domain != "" && mm.emailDomains.Has(domain):
		return true
	}
	for _, g := range id.Groups {
		if mm.groups.Has(g) {
			return true
		}
	}
	return false
}

// dedupe returns the strings of lists in order, each once.
func dedupe(lists ...[]string) []string {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	if n == 0 {
		return lists[0]
	}
	seen := make(sets.Set[string], n)
	out := make([]string, 0, n)
	for _, l := range lists {
		for _, s := range l {
			if !seen.Has(s) {
				seen.Insert(s)
				out = append(out, s)
			}
		}
	}
	return out
}
