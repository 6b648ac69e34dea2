package token

import (
	"sync"
	"sync/atomic"
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
// to keep lock contention low, holds at most size entries in all (not per
// shard, so a working set as large as size fits however it hashes), and
// never returns an entry at or after its token's exp. Only tokens whose
// signature verified are inserted, so an attacker cannot fill it with
// garbage; when it is full, an insertion first drops the expired entries of
// its shard and otherwise an arbitrary one of them (Go's map iteration
// order), which is good enough for a cache whose misses cost one signature
// check.
//
// It is a measured exception to apimachinery's caches (LRUExpireCache takes
// one lock for every Get, as it reorders its list): every verification of a
// known token reads it, from many request goroutines at once, as
// BenchmarkVerifyCached and BenchmarkVerifyCachedParallel measure
// (docs/benchmarks.md).
type verifyCache struct {
	size   int64
	total  atomic.Int64
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu        sync.RWMutex
	m         map[[32]byte]*verified
	lastSweep time.Time
}

func newVerifyCache(size int) *verifyCache {
	if size < 1 {
		size = 1
	}
	c := &verifyCache{size: int64(size)}
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
	if _, ok := s.m[*key]; ok {
		s.m[*key] = e
		return
	}
	if c.total.Load() >= c.size && (now.Sub(s.lastSweep) >= time.Second || now.Before(s.lastSweep)) {
		// Full: drop this shard's expired entries first. Sweeping is
		// O(shard size); do it at most once a second.
		s.lastSweep = now
		for k, old := range s.m {
			if !now.Before(old.exp) {
				delete(s.m, k)
				c.total.Add(-1)
			}
		}
	}
	// Take a place if there is one (several shards insert at once), or
	// else replace an arbitrary entry of this shard.
	for {
		t := c.total.Load()
		if t >= c.size {
			break
		}
		if c.total.CompareAndSwap(t, t+1) {
			s.m[*key] = e
			return
		}
	}
	if len(s.m) == 0 {
		// Everything is in other shards: leave this token out rather than
		// go over the bound.
		return
	}
	for k := range s.m {
		delete(s.m, k)
		break
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
