package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
)

// maxGraceEntries bounds the memory the grace cache may take: beyond it the
// least recently used entries are dropped (their clients fall back to a
// second rotation).
const maxGraceEntries = 100000

// graceCache remembers, for the reuse grace, the refresh token a rotation
// handed out, sealed (AES-256-GCM) with a key derived from the secret it
// replaced: only a client presenting that previous secret can open it, and
// nothing readable is kept in memory. Entries live in apimachinery's
// LRUExpireCache, keyed by session ID: expired for the grace's length, and
// evicted in constant time when the cache is full.
type graceCache struct {
	c *cache.LRUExpireCache
}

type graceEntry struct {
	prevHash []byte
	nonce    []byte
	sealed   []byte
	until    time.Time
}

// newGraceCache returns a cache whose entries expire by clock.
func newGraceCache(clock cache.Clock) *graceCache {
	return &graceCache{c: cache.NewLRUExpireCacheWithClock(maxGraceEntries, clock)}
}

func graceAEAD(prevSecret string) (cipher.AEAD, error) {
	key := sha256.Sum256([]byte("portcullis.dev/session/grace\x00" + prevSecret))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (g *graceCache) put(sid string, prevHash []byte, prevSecret, next string, now, until time.Time) {
	aead, err := graceAEAD(prevSecret)
	if err != nil {
		return
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return
	}
	e := graceEntry{prevHash: prevHash, nonce: nonce, sealed: aead.Seal(nil, nonce, []byte(next), []byte(sid)), until: until}
	g.c.Add(sid, e, until.Sub(now))
}

func (g *graceCache) get(sid string, prevHash []byte, prevSecret string, now time.Time) (string, bool) {
	v, ok := g.c.Get(sid)
	if !ok {
		return "", false
	}
	e := v.(graceEntry)
	if !now.Before(e.until) || !equalHash(prevHash, e.prevHash) {
		return "", false
	}
	aead, err := graceAEAD(prevSecret)
	if err != nil {
		return "", false
	}
	plain, err := aead.Open(nil, e.nonce, e.sealed, []byte(sid))
	if err != nil {
		return "", false
	}
	return string(plain), true
}

func (g *graceCache) drop(sid string) { g.c.Remove(sid) }
