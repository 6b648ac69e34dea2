package identity

// DropReservedGroups removes the groups an identity provider may not assert
// (IsReservedGroup), after its prefixes were applied: the filter OpenID
// Connect providers apply to their groups, for the identity providers of
// other packages (pkg/ldap's directories), so that every provider's groups go
// through the same one.
func DropReservedGroups(provider, username string, groups []string) []string {
	return dropReservedGroups(provider, username, groups)
}
