package identity

import (
	"maps"
	"slices"
)

// Identity is an authenticated user as Portcullis knows it.
type Identity struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
	// Email is a verified address: it is set only when the IdP asserted it
	// without email_verified being false. Group mappings on emails and email
	// domains, and access policies on email domains, rely on that.
	Email string
	// IdentityProvider is the name of the IdP that asserted the identity.
	IdentityProvider string
}

// Clone returns a deep copy of id (nil for nil).
func (id *Identity) Clone() *Identity {
	if id == nil {
		return nil
	}
	out := *id
	out.Groups = slices.Clone(id.Groups)
	if id.Extra != nil {
		out.Extra = make(map[string][]string, len(id.Extra))
		for k, v := range maps.All(id.Extra) {
			out.Extra[k] = slices.Clone(v)
		}
	}
	return &out
}
