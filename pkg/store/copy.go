package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// CopyCounts counts what Copy did with one kind of item.
type CopyCounts struct {
	// Copied items were written to the destination.
	Copied int
	// Existing items were already in the destination (same ID) and were
	// kept as they are there.
	Existing int
	// Expired items were left out: garbage collection would delete them.
	Expired int
}

// CopyStats is what Copy did, per kind of item.
type CopyStats struct {
	SigningKeys CopyCounts
	Revocations CopyCounts
	Grants      CopyCounts
	Sessions    CopyCounts
	// AccessRequests are copied last: a request is a record, its grant
	// (copied with the grants) is what counts.
	AccessRequests CopyCounts
}

func (s CopyStats) String() string {
	return fmt.Sprintf("signing keys %+v, revocations %+v, grants %+v, sessions %+v, access requests %+v", s.SigningKeys, s.Revocations, s.Grants, s.Sessions, s.AccessRequests)
}

// Copy copies every signing key, revocation, grant, session and access
// request of from into to, for moving a deployment from one backend to
// another (e.g. bolt to kubernetes) without logging anybody out or
// invalidating a token.
//
// It is idempotent, so it can be run again after a failure or to pick up
// what changed meanwhile: an item whose ID is already in to is kept as it is
// there (a session refreshed through the new store is newer than the one in
// the old). A revocation already in to keeps the later of the two expiries,
// as Revoke always does. Items that have already expired are not copied.
//
// Signing keys go first, so that every token signed before the move verifies
// after it; revocations next, so that no revoked session or token is ever
// valid in to; then grants, sessions and access requests.
func Copy(ctx context.Context, from, to Store) (CopyStats, error) {
	var st CopyStats
	now := time.Now()

	keys, err := from.ListSigningKeys(ctx)
	if err != nil {
		return st, fmt.Errorf("copying signing keys: %w", err)
	}
	for _, k := range keys {
		if !now.Before(k.ExpireAt) {
			st.SigningKeys.Expired++
			continue
		}
		if err := copyOne(&st.SigningKeys, to.CreateSigningKey(ctx, k)); err != nil {
			return st, fmt.Errorf("copying signing key %s: %w", k.ID, err)
		}
	}

	revs, err := from.ListRevocations(ctx)
	if err != nil {
		return st, fmt.Errorf("copying revocations: %w", err)
	}
	existing, err := to.ListRevocations(ctx)
	if err != nil {
		return st, fmt.Errorf("copying revocations: listing the destination's: %w", err)
	}
	present := make(map[string]bool, len(existing))
	for _, r := range existing {
		present[r.ID] = true
	}
	for _, r := range revs {
		if !now.Before(r.ExpiresAt) {
			st.Revocations.Expired++
			continue
		}
		if err := to.Revoke(ctx, r); err != nil {
			return st, fmt.Errorf("copying revocation %s: %w", r.ID, err)
		}
		if present[r.ID] {
			st.Revocations.Existing++
		} else {
			st.Revocations.Copied++
		}
	}

	grants, err := from.ListGrants(ctx)
	if err != nil {
		return st, fmt.Errorf("copying grants: %w", err)
	}
	for _, g := range grants {
		if !now.Before(g.ExpiresAt) {
			st.Grants.Expired++
			continue
		}
		if err := copyOne(&st.Grants, to.CreateGrant(ctx, g)); err != nil {
			return st, fmt.Errorf("copying grant %s: %w", g.ID, err)
		}
	}

	sessions, err := from.ListSessions(ctx)
	if err != nil {
		return st, fmt.Errorf("copying sessions: %w", err)
	}
	for _, s := range sessions {
		if s.Expired(now) {
			st.Sessions.Expired++
			continue
		}
		if err := copyOne(&st.Sessions, to.CreateSession(ctx, s)); err != nil {
			return st, fmt.Errorf("copying session %s: %w", s.ID, err)
		}
	}

	requests, err := from.ListAccessRequests(ctx)
	if err != nil {
		return st, fmt.Errorf("copying access requests: %w", err)
	}
	for _, r := range requests {
		if !now.Before(r.ExpiresAt) {
			st.AccessRequests.Expired++
			continue
		}
		if err := copyOne(&st.AccessRequests, to.CreateAccessRequest(ctx, r)); err != nil {
			return st, fmt.Errorf("copying access request %s: %w", r.ID, err)
		}
	}
	return st, nil
}

// copyOne counts the outcome of one Create.
func copyOne(c *CopyCounts, err error) error {
	switch {
	case err == nil:
		c.Copied++
	case errors.Is(err, ErrAlreadyExists):
		c.Existing++
	default:
		return err
	}
	return nil
}
