package identity

import (
	"strings"

	"k8s.io/klog/v2"
)

// ReservedGroupPrefixes are the prefixes of group names an identity
// provider may not assert: "system:" belongs to Kubernetes (system:masters
// bypasses RBAC, system:nodes and the controllers' groups have wide rights)
// and "portcullis.dev:" to Portcullis itself (portcullis.dev:tokenreview-callers
// marks the kube-apiservers allowed to call the TokenReview webhook). The
// configuration refuses them in groupMappings[].groups for the same reason.
var ReservedGroupPrefixes = []string{"system:", "portcullis.dev:"}

// IsReservedGroup reports whether g starts with one of ReservedGroupPrefixes.
func IsReservedGroup(g string) bool {
	for _, p := range ReservedGroupPrefixes {
		if strings.HasPrefix(g, p) {
			return true
		}
	}
	return false
}

// dropReservedGroups removes, in place, the groups an identity provider may
// not assert (IsReservedGroup), after its claim mappings and prefixes have
// been applied: an IdP whose groups should keep such names sets a prefix
// (claimMappings.groups.prefix, userInfo.groupsPrefix), and "oidc:system:x"
// is an ordinary group. Dropping rather than rewriting keeps every name a
// cluster's RBAC sees one the operator chose. The common case (nothing to
// drop) does not allocate.
func dropReservedGroups(provider, username string, groups []string) []string {
	first := -1
	for i, g := range groups {
		if IsReservedGroup(g) {
			first = i
			break
		}
	}
	if first < 0 {
		return groups
	}
	kept := groups[:first]
	var dropped []string
	for _, g := range groups[first:] {
		if IsReservedGroup(g) {
			dropped = append(dropped, g)
			continue
		}
		kept = append(kept, g)
	}
	// Not an error: the user keeps their other groups. The names are the
	// IdP's, not secrets; operators need them to see why RBAC differs.
	klog.V(2).InfoS("Dropped reserved groups asserted by an identity provider", "identityProvider", provider, "user", username, "groups", dropped)
	return kept
}
