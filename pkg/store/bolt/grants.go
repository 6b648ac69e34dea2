package bolt

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"portcullis.dev/portcullis/pkg/store"
)

// grantCache keeps the grants bucket's contents in memory: the policy
// lists grants at every decision (policy.GrantLister), which on the hot
// path of every review and proxied request would otherwise be a read
// transaction and a JSON decoding of each grant. It is filled by the first
// ListGrants after a change and emptied after every write that changes
// the grants (CreateGrant, DeleteGrant, GarbageCollect).
type grantCache struct {
	mu sync.Mutex
	// gen counts invalidations: a list read from the file while the grants
	// changed is not kept.
	gen    uint64
	grants []store.Grant // valid when loaded
	loaded bool
}

// get returns a copy of the cached grants, or ok false and the generation
// to pass to put.
func (c *grantCache) get() (grants []store.Grant, gen uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		return nil, c.gen, false
	}
	return cloneGrants(c.grants), c.gen, true
}

// put keeps grants, read at generation gen, unless they changed since.
func (c *grantCache) put(grants []store.Grant, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		c.grants, c.loaded = cloneGrants(grants), true
	}
}

func (c *grantCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.grants, c.loaded = nil, false
}

// cloneGrants copies grants so that no caller shares the cache's slices.
func cloneGrants(grants []store.Grant) []store.Grant {
	out := slices.Clone(grants)
	for i := range out {
		out[i].Groups = slices.Clone(out[i].Groups)
	}
	return out
}

// CreateGrant stores g; it fails with store.ErrAlreadyExists if a grant with
// the same ID exists.
func (s *Store) CreateGrant(ctx context.Context, g store.Grant) error {
	defer s.grants.invalidate()
	return create(s, ctx, bucketGrants, "grant", g.ID, g)
}

// ListGrants returns all grants, sorted by ID, from memory once they have
// been read (see grantCache).
func (s *Store) ListGrants(ctx context.Context) ([]store.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if !closed {
		if grants, _, ok := s.grants.get(); ok {
			return grants, nil
		}
	}
	_, gen, _ := s.grants.get()
	grants, err := list[store.Grant](s, ctx, bucketGrants, "grant")
	if err == nil {
		s.grants.put(grants, gen)
	}
	return grants, err
}

// DeleteGrant deletes the grant with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteGrant(ctx context.Context, id string) error {
	defer s.grants.invalidate()
	return remove(s, ctx, bucketGrants, "grant", id)
}
