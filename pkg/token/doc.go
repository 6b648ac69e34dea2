// Package token mints and verifies Portcullis's own cluster tokens.
//
// A cluster token is a JWT in JWS compact serialization, signed with ES256
// (ECDSA on P-256 with SHA-256). Its header carries the ID of the signing key
// in "kid"; its payload carries the user's identity (username, uid, groups,
// extra, email, idp), the login session it belongs to (sid), its own ID (jti)
// and the usual iss/aud/iat/nbf/exp. Kubernetes API servers accept these
// tokens through their JWT authenticator (--authentication-config), which
// fetches DiscoveryHandler's document and then JWKSHandler's key set.
//
// The package has four parts:
//
//   - KeyManager keeps the signing keys in a store.Store so that several
//     replicas sharing the store sign and verify with the same keys. It
//     creates the first key (Ensure), rotates keys (Rotate, and on schedule in
//     Run), reloads them from the store (Reload, and periodically in Run) and
//     deletes keys nothing can need any more.
//   - Minter signs Claims with the active key.
//   - Verifier checks a token completely (signature, alg, kid, iss, aud,
//     exp/nbf/iat, revocation of its sid and jti) and caches the result of the
//     expensive part, without letting the cache outlive the token or hide a
//     revocation.
//   - DiscoveryHandler and JWKSHandler publish the OpenID discovery document
//     and the JSON Web Key Set.
//
// # Key lifetimes
//
// A key signs from its ActiveAt until its RetireAt: the scheduled RetireAt it
// was stored with, or the ActiveAt of the key that replaced it, whichever
// comes first. It keeps verifying (and stays in the JWKS) until
// RetireAt+MaxTokenLifetime+KeyExpirySkew, and never longer than the ExpireAt
// it was stored with; the store's garbage collection removes it after that
// stored ExpireAt. A rotation therefore does not rewrite the previous key in
// the store (store.Store has no update for keys, and a delete-then-create
// would open a window in which other replicas could not verify its tokens):
// every replica derives the same effective RetireAt and ExpireAt from the
// same list of keys. All replicas sharing a store must use the same
// KeyOptions.
//
// # What this package must never do
//
//   - Log a token, or put one (or any part of one) into an error message. A
//     bearer token in a log is a credential leak. Errors name reasons ("token
//     expired", "unknown signing key"), never token contents. Private keys
//     never appear in logs or errors either; key IDs may.
//   - Accept any algorithm other than ES256. "none", HMAC algorithms (which
//     would let anyone holding the public key forge tokens) and RSA are all
//     rejected before a key is even looked up; the algorithm is fixed by this
//     package, never chosen by the token.
//   - Accept a token without checking its revocation, cache hit or not.
//   - Trust key material from the token itself: "jwk", "jku", "x5u", "x5c"
//     and "crit" headers make a token invalid.
package token
