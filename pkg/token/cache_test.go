package token

import (
	"crypto/sha256"
	"strconv"
	"sync"
	"testing"
	"time"
)

func cacheKey(i int) *[32]byte {
	k := sha256.Sum256([]byte(strconv.Itoa(i)))
	return &k
}

// A working set as large as the cache fits in it, however its keys spread
// over the shards; one more entry replaces one; the bound holds.
func TestVerifyCacheHoldsItsSize(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e := &verified{exp: now.Add(time.Hour)}
	const size = 10_000
	c := newVerifyCache(size)
	for i := range size {
		c.put(cacheKey(i), e, now)
	}
	for i := range size {
		if c.get(cacheKey(i), now) == nil {
			t.Fatalf("entry %d of %d was evicted from a cache of %d", i, size, size)
		}
	}
	c.put(cacheKey(size), e, now)
	if n := c.len(); n != size {
		t.Fatalf("%d entries after one more, want %d", n, size)
	}
	if c.get(cacheKey(size), now) == nil {
		t.Fatal("the newest entry was not kept")
	}
	// Expired entries of the shard make room first.
	var same []int
	for i := 0; len(same) < 3; i++ {
		if cacheKey(i)[0]%cacheShards == 0 {
			same = append(same, i)
		}
	}
	c2 := newVerifyCache(2)
	c2.put(cacheKey(same[0]), &verified{exp: now.Add(time.Second)}, now)
	c2.put(cacheKey(same[1]), e, now)
	later := now.Add(2 * time.Second)
	c2.put(cacheKey(same[2]), e, later)
	if c2.get(cacheKey(same[1]), later) == nil || c2.get(cacheKey(same[2]), later) == nil || c2.len() != 2 {
		t.Fatalf("the expired entry should have made room: len %d", c2.len())
	}
}

func TestVerifyCacheBoundUnderConcurrency(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e := &verified{exp: now.Add(time.Hour)}
	const size = 100
	c := newVerifyCache(size)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2_000 {
				c.put(cacheKey(w*100_000+i), e, now)
				if n := c.total.Load(); n > size {
					t.Errorf("total %d > %d", n, size)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > size || int64(n) != c.total.Load() {
		t.Fatalf("len %d, total %d, size %d", n, c.total.Load(), size)
	}
}
