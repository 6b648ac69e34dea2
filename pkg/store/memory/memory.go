package memory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"portcullis.dev/portcullis/pkg/store"
)

// errClosed is returned by every method called after Close.
var errClosed = errors.New("memory store is closed; this is a bug in the caller, which must not use a store after closing it")

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	mu          sync.RWMutex
	closed      bool
	keys        map[string]store.SigningKey
	sessions    map[string]store.Session
	revocations map[string]store.Revocation
	grants      map[string]store.Grant
	requests    map[string]store.AccessRequest
}

var _ store.Store = (*Store)(nil)

// New returns an empty in-memory store.
func New() *Store {
	return &Store{
		keys:        map[string]store.SigningKey{},
		sessions:    map[string]store.Session{},
		revocations: map[string]store.Revocation{},
		grants:      map[string]store.Grant{},
		requests:    map[string]store.AccessRequest{},
	}
}

// check returns the error that stops an operation before it starts: a done
// context or a closed store. The caller holds s.mu (read or write).
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed {
		return errClosed
	}
	return nil
}

func checkID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%s ID is empty: every %s needs a non-empty ID", kind, kind)
	}
	return nil
}

// ListSigningKeys returns all signing keys, sorted by ID.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("listing signing keys: %w", err)
	}
	out := make([]store.SigningKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, cloneSigningKey(k))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// CreateSigningKey stores k; it fails with store.ErrAlreadyExists if a key
// with the same ID exists.
func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	if err := checkID("signing key", k.ID); err != nil {
		return fmt.Errorf("creating signing key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("creating signing key %s: %w", k.ID, err)
	}
	if _, ok := s.keys[k.ID]; ok {
		return fmt.Errorf("creating signing key %s: %w", k.ID, store.ErrAlreadyExists)
	}
	s.keys[k.ID] = cloneSigningKey(k)
	return nil
}

// DeleteSigningKey deletes the key with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("deleting signing key %s: %w", id, err)
	}
	if _, ok := s.keys[id]; !ok {
		return fmt.Errorf("deleting signing key %s: %w", id, store.ErrNotFound)
	}
	delete(s.keys, id)
	return nil
}

// CreateSession stores sess; it fails with store.ErrAlreadyExists if a
// session with the same ID exists.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	if err := checkID("session", sess.ID); err != nil {
		return fmt.Errorf("creating session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("creating session %s: %w", sess.ID, err)
	}
	if _, ok := s.sessions[sess.ID]; ok {
		return fmt.Errorf("creating session %s: %w", sess.ID, store.ErrAlreadyExists)
	}
	s.sessions[sess.ID] = cloneSession(sess)
	return nil
}

// GetSession returns a copy of the session with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return store.Session{}, fmt.Errorf("getting session %s: %w", id, err)
	}
	sess, ok := s.sessions[id]
	if !ok {
		return store.Session{}, fmt.Errorf("getting session %s: %w", id, store.ErrNotFound)
	}
	return cloneSession(sess), nil
}

// UpdateSession calls update on a copy of the session and stores the result,
// holding the store's lock throughout, so concurrent updates never interleave.
// update is called exactly once and must not call back into the store (it
// would deadlock). If update returns an error, nothing is written and that
// error is returned (wrapped). update must not change the session's ID.
func (s *Store) UpdateSession(ctx context.Context, id string, update func(*store.Session) error) (store.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return store.Session{}, fmt.Errorf("updating session %s: %w", id, err)
	}
	cur, ok := s.sessions[id]
	if !ok {
		return store.Session{}, fmt.Errorf("updating session %s: %w", id, store.ErrNotFound)
	}
	next := cloneSession(cur)
	if err := update(&next); err != nil {
		return store.Session{}, fmt.Errorf("updating session %s: %w", id, err)
	}
	if next.ID != id {
		return store.Session{}, fmt.Errorf("updating session %s: the update function changed the session ID to %q; IDs are immutable, create a new session instead", id, next.ID)
	}
	// Copy again so the caller's update function cannot keep a reference
	// into stored data (e.g. by stashing next.Groups somewhere).
	s.sessions[id] = cloneSession(next)
	return next, nil
}

// DeleteSession deletes the session with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("deleting session %s: %w", id, err)
	}
	if _, ok := s.sessions[id]; !ok {
		return fmt.Errorf("deleting session %s: %w", id, store.ErrNotFound)
	}
	delete(s.sessions, id)
	return nil
}

// ListSessions returns all sessions, sorted by ID.
func (s *Store) ListSessions(ctx context.Context) ([]store.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	out := make([]store.Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, cloneSession(sess))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ListUserSessions returns username's sessions, sorted by ID.
func (s *Store) ListUserSessions(ctx context.Context, username string) ([]store.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("listing the sessions of %s: %w", username, err)
	}
	out := []store.Session{}
	for _, sess := range s.sessions {
		if sess.Username == username {
			out = append(out, cloneSession(sess))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Revoke records r. Revoking an ID that is already revoked succeeds and never
// shortens the revocation: the record with the later ExpiresAt is kept.
func (s *Store) Revoke(ctx context.Context, r store.Revocation) error {
	if err := checkID("revocation", r.ID); err != nil {
		return fmt.Errorf("revoking: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("revoking %s: %w", r.ID, err)
	}
	if old, ok := s.revocations[r.ID]; ok && !r.ExpiresAt.After(old.ExpiresAt) {
		return nil
	}
	s.revocations[r.ID] = r
	return nil
}

// IsRevoked reports whether any of ids is revoked. A revocation counts until
// GarbageCollect removes it.
func (s *Store) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return false, fmt.Errorf("checking revocations: %w", err)
	}
	for _, id := range ids {
		if _, ok := s.revocations[id]; ok {
			return true, nil
		}
	}
	return false, nil
}

// ListRevocations returns all revocations, sorted by ID.
func (s *Store) ListRevocations(ctx context.Context) ([]store.Revocation, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("listing revocations: %w", err)
	}
	out := make([]store.Revocation, 0, len(s.revocations))
	for _, r := range s.revocations {
		out = append(out, r) // Revocation has no reference fields.
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// CreateGrant stores g; it fails with store.ErrAlreadyExists if a grant with
// the same ID exists.
func (s *Store) CreateGrant(ctx context.Context, g store.Grant) error {
	if err := checkID("grant", g.ID); err != nil {
		return fmt.Errorf("creating grant: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("creating grant %s: %w", g.ID, err)
	}
	if _, ok := s.grants[g.ID]; ok {
		return fmt.Errorf("creating grant %s: %w", g.ID, store.ErrAlreadyExists)
	}
	s.grants[g.ID] = cloneGrant(g)
	return nil
}

// ListGrants returns all grants, sorted by ID.
func (s *Store) ListGrants(ctx context.Context) ([]store.Grant, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	out := make([]store.Grant, 0, len(s.grants))
	for _, g := range s.grants {
		out = append(out, cloneGrant(g))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteGrant deletes the grant with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteGrant(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("deleting grant %s: %w", id, err)
	}
	if _, ok := s.grants[id]; !ok {
		return fmt.Errorf("deleting grant %s: %w", id, store.ErrNotFound)
	}
	delete(s.grants, id)
	return nil
}

// CreateAccessRequest stores r; it fails with store.ErrAlreadyExists if a
// request with the same ID exists.
func (s *Store) CreateAccessRequest(ctx context.Context, r store.AccessRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("creating access request %s: %w", r.ID, err)
	}
	if err := checkID("access request", r.ID); err != nil {
		return err
	}
	if _, ok := s.requests[r.ID]; ok {
		return fmt.Errorf("creating access request %s: %w", r.ID, store.ErrAlreadyExists)
	}
	s.requests[r.ID] = store.CloneAccessRequest(r)
	return nil
}

// GetAccessRequest returns the request with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) GetAccessRequest(ctx context.Context, id string) (store.AccessRequest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return store.AccessRequest{}, fmt.Errorf("getting access request %s: %w", id, err)
	}
	r, ok := s.requests[id]
	if !ok {
		return store.AccessRequest{}, fmt.Errorf("getting access request %s: %w", id, store.ErrNotFound)
	}
	return store.CloneAccessRequest(r), nil
}

// UpdateAccessRequest calls update on a copy of the request and stores the
// result, atomically.
func (s *Store) UpdateAccessRequest(ctx context.Context, id string, update func(*store.AccessRequest) error) (store.AccessRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return store.AccessRequest{}, fmt.Errorf("updating access request %s: %w", id, err)
	}
	r, ok := s.requests[id]
	if !ok {
		return store.AccessRequest{}, fmt.Errorf("updating access request %s: %w", id, store.ErrNotFound)
	}
	r = store.CloneAccessRequest(r)
	if err := update(&r); err != nil {
		return store.AccessRequest{}, err
	}
	if r.ID != id {
		return store.AccessRequest{}, fmt.Errorf("the update function changed the access request ID to %q; IDs are immutable", r.ID)
	}
	s.requests[id] = store.CloneAccessRequest(r)
	return store.CloneAccessRequest(r), nil
}

// ListAccessRequests returns all access requests, sorted by ID.
func (s *Store) ListAccessRequests(ctx context.Context) ([]store.AccessRequest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("listing access requests: %w", err)
	}
	out := make([]store.AccessRequest, 0, len(s.requests))
	for _, r := range s.requests {
		out = append(out, store.CloneAccessRequest(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// GarbageCollect deletes sessions that have Expired at now, revocations and
// grants whose ExpiresAt is not after now, and signing keys whose ExpireAt is
// not after now. It returns how many it deleted.
func (s *Store) GarbageCollect(ctx context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("collecting garbage: %w", err)
	}
	n := 0
	for id, sess := range s.sessions {
		if sess.Expired(now) {
			delete(s.sessions, id)
			n++
		}
	}
	for id, r := range s.revocations {
		if !now.Before(r.ExpiresAt) {
			delete(s.revocations, id)
			n++
		}
	}
	for id, g := range s.grants {
		if !now.Before(g.ExpiresAt) {
			delete(s.grants, id)
			n++
		}
	}
	for id, r := range s.requests {
		if !now.Before(r.ExpiresAt) {
			delete(s.requests, id)
			n++
		}
	}
	for id, k := range s.keys {
		if !now.Before(k.ExpireAt) {
			delete(s.keys, id)
			n++
		}
	}
	return n, nil
}

// Close releases the store's data. Every later call fails; Close itself may be
// called more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.keys, s.sessions, s.revocations, s.grants, s.requests = nil, nil, nil, nil, nil
	return nil
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

func cloneSigningKey(k store.SigningKey) store.SigningKey {
	k.PrivateKeyPEM = cloneBytes(k.PrivateKeyPEM)
	return k
}

func cloneSession(s store.Session) store.Session {
	s.Groups = cloneStrings(s.Groups)
	if s.Extra != nil {
		extra := make(map[string][]string, len(s.Extra))
		for k, v := range s.Extra {
			extra[k] = cloneStrings(v)
		}
		s.Extra = extra
	}
	s.RefreshTokenHash = cloneBytes(s.RefreshTokenHash)
	s.PreviousRefreshTokenHash = cloneBytes(s.PreviousRefreshTokenHash)
	s.PreviousSealedNext = cloneBytes(s.PreviousSealedNext)
	return s
}

func cloneGrant(g store.Grant) store.Grant {
	g.Groups = cloneStrings(g.Groups)
	return g
}
