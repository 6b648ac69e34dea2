// Package ldap makes an LDAP directory (OpenLDAP, Active Directory, ...) an
// identity provider of Portcullis: it checks a person's user name and
// password by binding as them, and reads their user name, UID, email and
// groups from the directory, with the prefixes of the configuration
// (identityProviders[].ldap). The login portal (pkg/portal) turns the result
// into a session like any other login; at each refresh of that session the
// directory is asked again (Directory.Lookup), so a disabled or deleted
// account loses access and group changes apply.
//
// Groups with a reserved prefix (system:, portcullis.dev:) are dropped by
// pkg/identity's filter, the one OpenID Connect providers' groups go
// through. The operator's group mappings and the access policy are applied
// by the callers, to the identity this package returns, exactly as for
// OpenID Connect providers (pkg/identity.GroupMapper, pkg/policy).
//
// This package must never:
//   - put anything a person typed into a filter or DN without escaping it
//     (ldap.EscapeFilter): a user name is data, never filter syntax;
//   - bind with an empty password (an "unauthenticated bind" succeeds on
//     many servers without checking anything);
//   - log, or put into an error, a password (the person's or the bind
//     account's); errors name the directory and its host, not the input;
//   - tell a person more than "invalid username or password" about why a
//     login failed (no "no such user"): ErrInvalidCredentials is the only
//     answer to every refusal, and ErrUnavailable (never the former) to a
//     directory that cannot be asked;
//   - send a password over a connection without TLS unless the operator
//     chose tlsMode: InsecurePlaintext.
package ldap
