// Package bolt is the embedded, file-backed implementation of store.Store and
// Portcullis's default store. It keeps everything in one bbolt file: one
// bucket per kind of object (signing keys, sessions, revocations, grants)
// holding JSON values keyed by ID, and a "meta" bucket holding the schema
// version.
//
// The file is created with mode 0600 (its parent directory, if missing, with
// 0700) because it holds private signing keys and upstream refresh tokens.
// bbolt locks it, so only one process can use it at a time; a second one
// fails after Options.Timeout with an "in use by another process" error
// instead of waiting forever.
//
// Open validates an existing file before using it: bbolt's own consistency
// check, a check that the file is not shorter than its header says, the
// schema version, and that every record decodes. This costs a scan of the
// file at start-up (about 0.1 s with 10,000 sessions, 1–1.4 s with 100,000
// and 10–43 s with a million, measured in docs/benchmarks.md, "Store:
// sessions"), and means a damaged file is reported when the operator is
// looking rather than as an odd failure (or a crash on a truncated memory
// map) hours later.
//
// IsRevoked runs on every token verification, so the store keeps the set of
// revoked IDs in memory: it is loaded when the file is opened and updated
// after every write that commits. Because bbolt's file lock guarantees no
// other process writes the file while it is open, the set cannot go stale,
// and IsRevoked is a map lookup under a read lock: no transaction, no JSON
// decoding and no allocation. The set costs memory proportional to the
// number of revocations, which garbage collection keeps bounded. The policy
// lists grants at every decision, likewise on every review and proxied
// request: ListGrants answers from a copy in memory, read at the first list
// after a change and dropped by every write that changes the grants.
//
// A write the file system refuses (full, read-only, over quota, failing) is
// rolled back by bbolt, so the file keeps what it held, and is returned as
// an error that wraps store.ErrUnavailable (servers answer 503, try again)
// and names the file and the fix. bbolt writes copy-on-write into pages the
// file already has, so on a full file system only the writes that need the
// file to grow fail; reads, and the in-memory revoked set, are unaffected.
//
// What this package must never do:
//
//   - log or put into an error message a secret: a session's
//     UpstreamRefreshToken or refresh-token hashes, or a signing key's
//     PrivateKeyPEM (only IDs and the file path appear in messages);
//   - reset a store silently: a file it cannot read, decode or understand
//     (corrupt, truncated, unreadable, written by a newer Portcullis, or
//     another program's database) is an error that names the file and says
//     what to do, and the file is left exactly as it was. The one file Open
//     initialises is one with nothing in it: a missing or zero-length file
//     (as created by a Kubernetes hostPath volume of type FileOrCreate).
package bolt
