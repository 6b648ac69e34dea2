// Package session manages Portcullis's login sessions: the opaque refresh
// tokens the CLI (or a browser) holds, their rotation, and their end.
//
// A refresh token is "<sessionID>.<secret>", the secret being 256 random bits
// (base64url). Only the SHA-256 of the secret is stored (store.Session), and
// presented secrets are compared in constant time. Every successful refresh
// rotates the secret; the previous one keeps working for the reuse grace
// (portal.refreshReuseGrace) so that two clients refreshing at once do not
// lock each other out, and within that grace it yields the very token the
// first refresh handed out (see graceCache). A previous secret presented
// after the grace is a stolen or leaked token being replayed: the whole
// session is revoked (refresh-token reuse detection, RFC 9700 §4.14.2).
//
// A secret that matches neither the current nor the previous hash is refused
// without touching the session: the session ID is not a secret (it is the
// "sid" of every cluster token), so revoking on any wrong secret would let
// anyone who saw a cluster token end its session.
//
// Sessions end by idleness (LastUsedAt + IdleTimeout), by age (ExpiresAt), by
// logout or admin revocation, when the upstream identity provider refuses to
// refresh the user, and on reuse detection. Ending a session both deletes it
// and records a revocation of its ID, so its cluster tokens stop verifying at
// once (the token verifier checks the revocation of "sid" on every use).
//
// Session.Groups holds the groups the identity provider asserted (ID token
// claims and userinfo), before the operator's group mappings: mappings and
// the access policy are applied each time a token is minted, so a change of
// either takes effect at the next refresh without a new login.
//
// This package must never log or return a refresh secret except to the
// client it is issued to, nor store one unhashed.
package session
