// Package identity turns upstream OpenID Connect identity providers (IdPs)
// into Portcullis identities.
//
// A Provider verifies one IdP's ID tokens with k8s.io/apiserver's own OIDC
// authenticator, the code kube-apiserver runs for its
// AuthenticationConfiguration jwt entries, so claim mappings, CEL
// expressions, claimValidationRules and userValidationRules mean exactly
// what they mean in kube-apiserver and operators can carry their rules over.
// A Provider also gives the login portal its OAuth2 client (endpoints from
// OpenID discovery) and the groups of the userinfo endpoint.
//
// Providers holds every configured IdP and routes bearer ID tokens to the one
// that issued them. GroupMapper adds the operator's static groups.
//
// The order in which callers combine them is: verify the ID token (or log
// in), add userinfo groups if configured, then GroupMapper.Apply, then the
// central policy (pkg/policy). Apply exactly once: mappings are evaluated in
// one pass against the identity they are given.
//
// This package must never:
//   - log a token, or put one (or any part of one) in an error: errors are
//     short reasons meant to be shown to callers and written to audit logs;
//   - trust an unverified claim for anything but routing: the unverified
//     "iss" only picks which provider verifies the token, and Identity.Email
//     is read from a payload only after the apiserver authenticator has
//     verified its signature and claims;
//   - read a client secret at start-up only: ClientSecretFile is re-read at
//     each use so a rotated secret takes effect without a restart.
package identity
