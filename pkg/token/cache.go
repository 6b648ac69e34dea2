package token

import (
	"sync"
	"time"
)

// verified is the part of a verification that does not depend on when or by
// whom the token is presented: its signature was good and it is one of ours.
// It is immutable once made; Verify hands out copies of claims.
type verified struct {
	claims *Claims
	kid    string
	exp    time.Time
}

// DefaultCacheSize is the default number of verified tokens Verifier caches.
const DefaultCacheSize = 8192

const cacheShards = 16

// verifyCache maps the SHA-256 of a token to its verification. It is sharded
// to keep lock contention low, bounded per shard, and never returns an entry
// at or after its token's exp. Only tokens whose signature verified are
// inserted, so an attacker cannot fill it with garbage; when a shard is full
// it first drops expired entries and otherwise an arbitrary one (Go's map
// iteration order), which is good enough for a cache whose misses cost one
// signature check.
type verifyCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu        sync.RWMutex
	m         map[[32]byte]*verified
	lastSweep time.Time
}

func newVerifyCache(size int) *verifyCache {
	per := (size + cacheShards - 1) / cacheShards
	if per < 1 {
		per = 1
	}
	c := &verifyCache{perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*verified)
	}
	return c
}

func (c *verifyCache) shard(key *[32]byte) *cacheShard {
	return &c.shards[key[0]%cacheShards]
}

func (c *verifyCache) get(key *[32]byte, now time.Time) *verified {
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[*key]
	s.mu.RUnlock()
	if e == nil || !now.Before(e.exp) {
		return nil
	}
	return e
}

func (c *verifyCache) put(key *[32]byte, e *verified, now time.Time) {
	if !now.Before(e.exp) {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*key]; !ok && len(s.m) >= c.perShard {
		// Sweeping is O(shard size); do it at most once a second.
		if now.Sub(s.lastSweep) >= time.Second || now.Before(s.lastSweep) {
			s.lastSweep = now
			for k, old := range s.m {
				if !now.Before(old.exp) {
					delete(s.m, k)
				}
			}
		}
		if len(s.m) >= c.perShard {
			for k := range s.m {
				delete(s.m, k)
				break
			}
		}
	}
	s.m[*key] = e
}

func (c *verifyCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
