// Package memory is an in-memory implementation of store.Store.
//
// It exists for unit tests of other packages and for throw-away local runs:
// everything it holds is lost when the process exits, so it must never be
// the store of a deployment that has to survive a restart. It keeps its data
// in maps behind a single mutex and hands out deep copies, so callers can
// never change stored data by mutating a returned value.
//
// What this package must never do:
//
//   - log or format secrets: session refresh-token hashes, a session's
//     UpstreamRefreshToken or a signing key's PrivateKeyPEM never appear in
//     a log line or an error message (only IDs do);
//   - pretend to be durable, or silently drop data it was given: a write
//     either succeeds completely or returns an error and changes nothing.
//
// The store passes the conformance suite in pkg/store/storetest.
package memory
