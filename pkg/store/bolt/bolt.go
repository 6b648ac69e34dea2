package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"portcullis.dev/portcullis/pkg/store"
)

// Store is a store.Store kept in a bbolt file. Create one with Open.
type Store struct {
	path string
	db   *bbolt.DB

	// revMu serialises the writes that change the revoked set (Revoke and
	// GarbageCollect), so that the set changes in the order the
	// transactions commit.
	revMu sync.Mutex

	// mu guards revoked and closed. revoked mirrors the keys of the
	// revocations bucket; see the package documentation for why.
	mu      sync.RWMutex
	revoked map[string]struct{}
	closed  bool

	grants grantCache
}

var _ store.Store = (*Store)(nil)

// Path returns the file the store is kept in.
func (s *Store) Path() string { return s.path }

// view runs fn in a read transaction, after checking ctx.
func (s *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.txErr(s.db.View(fn))
}

// update runs fn in a write transaction, after checking ctx.
func (s *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.txErr(s.db.Update(fn))
	if isFileSystemFailure(err) {
		// bbolt rolled the transaction back: the file holds what it held.
		return &writeError{path: s.path, cause: err}
	}
	return err
}

// writeError is a write transaction the file system refused (full,
// read-only, over quota, failing). It is a store.ErrUnavailable: the
// request may be tried again once the operator has fixed the file system.
type writeError struct {
	path  string
	cause error
}

func (e *writeError) Error() string {
	return fmt.Sprintf("the state file %s cannot be written (%v); nothing was changed. Free space on its file system, or make it writable again: Portcullis keeps serving reads and recovers without a restart", e.path, e.cause)
}

func (e *writeError) Is(target error) bool { return target == store.ErrUnavailable }
func (e *writeError) Unwrap() error        { return e.cause }

// isFileSystemFailure reports the errors of writing or syncing the file
// that say nothing about the data: the file system is full, read-only or
// failing.
func isFileSystemFailure(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG, syscall.EROFS, syscall.EIO} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

func (s *Store) txErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("store %s is closed; this is a bug in the caller, which must not use a store after closing it: %w", s.path, err)
	}
	return err
}

func checkID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%s ID is empty: every %s needs a non-empty ID", kind, kind)
	}
	return nil
}

// decode unmarshals a stored value. Its errors never quote the value, which
// may hold secrets.
func decode[T any](path, kind string, id, v []byte, obj *T) error {
	if err := json.Unmarshal(v, obj); err != nil {
		return fmt.Errorf("decoding %s %q in %s (the file may be corrupt; restore it from a backup): %w", kind, id, path, err)
	}
	return nil
}

func list[T any](s *Store, ctx context.Context, bucket []byte, kind string) ([]T, error) {
	var out []T
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		out = []T{}
		b := tx.Bucket(bucket)
		if b == nil {
			return nil // a file opened read-only that predates the bucket
		}
		return b.ForEach(func(k, v []byte) error {
			var obj T
			if err := decode(s.path, kind, k, v, &obj); err != nil {
				return err
			}
			out = append(out, obj)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing %ss: %w", kind, err)
	}
	return out, nil
}

func create(s *Store, ctx context.Context, bucket []byte, kind, id string, obj any) error {
	if err := checkID(kind, id); err != nil {
		return fmt.Errorf("creating %s: %w", kind, err)
	}
	v, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("creating %s %s: encoding it: %w", kind, id, err)
	}
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get([]byte(id)) != nil {
			return store.ErrAlreadyExists
		}
		return b.Put([]byte(id), v)
	})
	if err != nil {
		return fmt.Errorf("creating %s %s: %w", kind, id, err)
	}
	return nil
}

func remove(s *Store, ctx context.Context, bucket []byte, kind, id string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		if id == "" || b.Get([]byte(id)) == nil {
			return store.ErrNotFound
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("deleting %s %s: %w", kind, id, err)
	}
	return nil
}

// ListSigningKeys returns all signing keys, sorted by ID.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	return list[store.SigningKey](s, ctx, bucketSigningKeys, "signing key")
}

// CreateSigningKey stores k; it fails with store.ErrAlreadyExists if a key
// with the same ID exists.
func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	return create(s, ctx, bucketSigningKeys, "signing key", k.ID, k)
}

// DeleteSigningKey deletes the key with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	return remove(s, ctx, bucketSigningKeys, "signing key", id)
}

// CreateSession stores sess; it fails with store.ErrAlreadyExists if a
// session with the same ID exists.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	return create(s, ctx, bucketSessions, "session", sess.ID, sess)
}

// GetSession returns the session with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	var sess store.Session
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketSessions).Get([]byte(id))
		if v == nil || id == "" {
			return store.ErrNotFound
		}
		return decode(s.path, "session", []byte(id), v, &sess)
	})
	if err != nil {
		return store.Session{}, fmt.Errorf("getting session %s: %w", id, err)
	}
	return sess, nil
}

// UpdateSession reads the session, calls update on it and writes the result,
// all in one bbolt write transaction, so concurrent updates never interleave.
// update is called exactly once and must not call back into the store (it
// would deadlock). If update returns an error, nothing is written and that
// error is returned (wrapped). update must not change the session's ID.
func (s *Store) UpdateSession(ctx context.Context, id string, update func(*store.Session) error) (store.Session, error) {
	var sess store.Session
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		v := b.Get([]byte(id))
		if v == nil || id == "" {
			return store.ErrNotFound
		}
		if err := decode(s.path, "session", []byte(id), v, &sess); err != nil {
			return err
		}
		if err := update(&sess); err != nil {
			return err
		}
		if sess.ID != id {
			return fmt.Errorf("the update function changed the session ID to %q; IDs are immutable, create a new session instead", sess.ID)
		}
		nv, err := json.Marshal(sess)
		if err != nil {
			return fmt.Errorf("encoding the updated session: %w", err)
		}
		return b.Put([]byte(id), nv)
	})
	if err != nil {
		return store.Session{}, fmt.Errorf("updating session %s: %w", id, err)
	}
	return sess, nil
}

// DeleteSession deletes the session with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return remove(s, ctx, bucketSessions, "session", id)
}

// ListSessions returns all sessions, sorted by ID.
func (s *Store) ListSessions(ctx context.Context) ([]store.Session, error) {
	return list[store.Session](s, ctx, bucketSessions, "session")
}

// ListUserSessions returns username's sessions, sorted by ID. The embedded
// store keeps no index by user: it reads every session, as ListSessions.
func (s *Store) ListUserSessions(ctx context.Context, username string) ([]store.Session, error) {
	all, err := s.ListSessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the sessions of %s: %w", username, err)
	}
	out := []store.Session{}
	for _, sess := range all {
		if sess.Username == username {
			out = append(out, sess)
		}
	}
	return out, nil
}

// Revoke records r. Revoking an ID that is already revoked succeeds and never
// shortens the revocation: the record with the later ExpiresAt is kept.
func (s *Store) Revoke(ctx context.Context, r store.Revocation) error {
	if err := checkID("revocation", r.ID); err != nil {
		return fmt.Errorf("revoking: %w", err)
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("revoking %s: encoding the revocation: %w", r.ID, err)
	}
	s.revMu.Lock()
	defer s.revMu.Unlock()
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRevocations)
		if old := b.Get([]byte(r.ID)); old != nil {
			var prev store.Revocation
			if err := decode(s.path, "revocation", []byte(r.ID), old, &prev); err != nil {
				return err
			}
			if !r.ExpiresAt.After(prev.ExpiresAt) {
				return nil
			}
		}
		return b.Put([]byte(r.ID), v)
	})
	if err != nil {
		return fmt.Errorf("revoking %s: %w", r.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked != nil {
		s.revoked[r.ID] = struct{}{}
	}
	return nil
}

// IsRevoked reports whether any of ids is revoked. It looks the IDs up in
// the in-memory set of revoked IDs (see the package documentation), so it
// neither starts a transaction nor allocates. A revocation counts until
// GarbageCollect removes it.
func (s *Store) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("checking revocations: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, fmt.Errorf("checking revocations: store %s is closed; this is a bug in the caller, which must not use a store after closing it", s.path)
	}
	for _, id := range ids {
		if _, ok := s.revoked[id]; ok {
			return true, nil
		}
	}
	return false, nil
}

// ListRevocations returns all revocations, sorted by ID.
func (s *Store) ListRevocations(ctx context.Context) ([]store.Revocation, error) {
	return list[store.Revocation](s, ctx, bucketRevocations, "revocation")
}

// CreateAccessRequest stores r; it fails with store.ErrAlreadyExists if a
// request with the same ID exists.
func (s *Store) CreateAccessRequest(ctx context.Context, r store.AccessRequest) error {
	return create(s, ctx, bucketRequests, "access request", r.ID, r)
}

// GetAccessRequest returns the request with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) GetAccessRequest(ctx context.Context, id string) (store.AccessRequest, error) {
	var r store.AccessRequest
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketRequests).Get([]byte(id))
		if v == nil || id == "" {
			return store.ErrNotFound
		}
		return decode(s.path, "access request", []byte(id), v, &r)
	})
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("getting access request %s: %w", id, err)
	}
	return r, nil
}

// UpdateAccessRequest reads the request, calls update on it and writes the
// result in one write transaction; update is called once and must not call
// back into the store.
func (s *Store) UpdateAccessRequest(ctx context.Context, id string, update func(*store.AccessRequest) error) (store.AccessRequest, error) {
	var r store.AccessRequest
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRequests)
		v := b.Get([]byte(id))
		if v == nil || id == "" {
			return store.ErrNotFound
		}
		if err := decode(s.path, "access request", []byte(id), v, &r); err != nil {
			return err
		}
		if err := update(&r); err != nil {
			return err
		}
		if r.ID != id {
			return fmt.Errorf("the update function changed the access request ID to %q; IDs are immutable", r.ID)
		}
		nv, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encoding the updated access request: %w", err)
		}
		return b.Put([]byte(id), nv)
	})
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("updating access request %s: %w", id, err)
	}
	return store.CloneAccessRequest(r), nil
}

// ListAccessRequests returns all access requests, sorted by ID.
func (s *Store) ListAccessRequests(ctx context.Context) ([]store.AccessRequest, error) {
	return list[store.AccessRequest](s, ctx, bucketRequests, "access request")
}

// testHookCollectScanned, if set (by tests only), is called by
// GarbageCollect at the end of each read transaction that finds what has
// expired in the bucket of kind, before the write transaction that deletes
// it.
var testHookCollectScanned func(kind string)

// collectChunk is how many records GarbageCollect reads in one read
// transaction. A long-lived reader keeps bbolt from reusing the pages that
// writes free meanwhile, so the file grows, and a write that has to grow
// the file's mapping waits for every reader: with one transaction for a
// million sessions, refreshes waited for the whole scan (21 s) all the same.
// A variable for tests.
var collectChunk = 1000

// expiredIDs returns the IDs of the records of bucket for which expired
// returns true, reading collectChunk records per read transaction. A record
// written behind the scan is left for the next collection.
func expiredIDs[T any](s *Store, ctx context.Context, bucket []byte, kind string, expired func(*T) bool) ([]string, error) {
	var ids []string
	var last []byte
	for done := false; !done; {
		err := s.view(ctx, func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			k, v := c.First()
			if last != nil {
				if k, v = c.Seek(last); k != nil && bytes.Equal(k, last) {
					k, v = c.Next()
				}
			}
			for i := 0; ; i++ {
				if k == nil {
					done = true
					break
				}
				if i == collectChunk {
					break
				}
				var obj T
				if err := decode(s.path, kind, k, v, &obj); err != nil {
					return err
				}
				if expired(&obj) {
					ids = append(ids, string(k))
				}
				last = append(last[:0], k...) // k is only valid in tx
				k, v = c.Next()
			}
			if testHookCollectScanned != nil {
				testHookCollectScanned(kind)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// deleteExpired deletes, from bucket, those of ids whose record is still
// there and still expired, and returns the IDs it deleted.
func deleteExpired[T any](s *Store, tx *bbolt.Tx, bucket []byte, kind string, ids []string, expired func(*T) bool) ([]string, error) {
	b := tx.Bucket(bucket)
	var deleted []string
	for _, id := range ids {
		v := b.Get([]byte(id))
		if v == nil {
			continue
		}
		var obj T
		if err := decode(s.path, kind, []byte(id), v, &obj); err != nil {
			return nil, err
		}
		if !expired(&obj) {
			continue // e.g. a session used again since the scan
		}
		if err := b.Delete([]byte(id)); err != nil {
			return nil, err
		}
		deleted = append(deleted, id)
	}
	return deleted, nil
}

// GarbageCollect deletes sessions that have Expired at now, revocations and
// grants whose ExpiresAt is not after now, and signing keys whose ExpireAt is
// not after now. It returns how many it deleted.
//
// It finds them in short read transactions, which decode every record, and
// only then deletes them in a write transaction, checking each again: bbolt
// has one writer at a time, and a scan of every session inside the write
// transaction made every refresh, login and revocation wait for it (a
// second with 100,000 sessions, 20 s with a million). The deletions are one
// transaction, and there is none when nothing has expired.
func (s *Store) GarbageCollect(ctx context.Context, now time.Time) (int, error) {
	// Held throughout, so that no revocation changes between the scan and
	// the deletion and the revoked set changes in commit order.
	s.revMu.Lock()
	defer s.revMu.Unlock()
	sessionExpired := func(sess *store.Session) bool { return sess.Expired(now) }
	keyExpired := func(k *store.SigningKey) bool { return !now.Before(k.ExpireAt) }
	revocationExpired := func(r *store.Revocation) bool { return !now.Before(r.ExpiresAt) }
	grantExpired := func(g *store.Grant) bool { return !now.Before(g.ExpiresAt) }
	requestExpired := func(r *store.AccessRequest) bool { return !now.Before(r.ExpiresAt) }

	var keys, sessions, revs, grants, requests []string
	var err error
	if keys, err = expiredIDs(s, ctx, bucketSigningKeys, "signing key", keyExpired); err != nil {
		return 0, fmt.Errorf("collecting garbage in %s: %w", s.path, err)
	}
	if sessions, err = expiredIDs(s, ctx, bucketSessions, "session", sessionExpired); err != nil {
		return 0, fmt.Errorf("collecting garbage in %s: %w", s.path, err)
	}
	if revs, err = expiredIDs(s, ctx, bucketRevocations, "revocation", revocationExpired); err != nil {
		return 0, fmt.Errorf("collecting garbage in %s: %w", s.path, err)
	}
	if grants, err = expiredIDs(s, ctx, bucketGrants, "grant", grantExpired); err != nil {
		return 0, fmt.Errorf("collecting garbage in %s: %w", s.path, err)
	}
	if requests, err = expiredIDs(s, ctx, bucketRequests, "access request", requestExpired); err != nil {
		return 0, fmt.Errorf("collecting garbage in %s: %w", s.path, err)
	}
	if len(keys)+len(sessions)+len(revs)+len(grants)+len(requests) == 0 {
		return 0, nil
	}
	var n, nGrants int
	var deletedRevs []string
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		n, nGrants, deletedRevs = 0, 0, nil
		k, err := deleteExpired(s, tx, bucketSigningKeys, "signing key", keys, keyExpired)
		if err != nil {
			return err
		}
		ss, err := deleteExpired(s, tx, bucketSessions, "session", sessions, sessionExpired)
		if err != nil {
			return err
		}
		if deletedRevs, err = deleteExpired(s, tx, bucketRevocations, "revocation", revs, revocationExpired); err != nil {
			return err
		}
		g, err := deleteExpired(s, tx, bucketGrants, "grant", grants, grantExpired)
		if err != nil {
			return err
		}
		r, err := deleteExpired(s, tx, bucketRequests, "access request", requests, requestExpired)
		if err != nil {
			return err
		}
		nGrants = len(g)
		n = len(k) + len(ss) + len(deletedRevs) + len(g) + len(r)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("collecting garbage in %s: %w", s.path, err)
	}
	if nGrants > 0 {
		s.grants.invalidate()
	}
	if len(deletedRevs) > 0 {
		s.mu.Lock()
		for _, id := range deletedRevs {
			delete(s.revoked, id)
		}
		s.mu.Unlock()
	}
	return n, nil
}

// Close closes the file, releasing its lock. Every later call fails; Close
// itself may be called more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.revoked = nil
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store %s: %w", s.path, err)
	}
	return nil
}
