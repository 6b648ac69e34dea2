package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// maxGraceEntries bounds the memory the grace cache may take: beyond it the
// oldest entries are dropped (their clients fall back to a second rotation).
const maxGraceEntries = 100000

// graceCache remembers, for the reuse grace, the refresh token a rotation
// handed out, sealed (AES-256-GCM) with a key derived from the secret it
// replaced: only a client presenting that previous secret can open it, and
// nothing readable is kept in memory.
type graceCache struct {
	mu        sync.Mutex
	m         map[string]graceEntry
	lastSweep time.Time
}

type graceEntry struct {
	prevHash []byte
	nonce    []byte
	sealed   []byte
	until    time.Time
}

func newGraceCache() *graceCache { return &graceCache{m: map[string]graceEntry{}} }

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
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.lastSweep) > time.Minute || now.Before(g.lastSweep) {
		g.lastSweep = now
		g.sweepLocked(now)
	}
	if len(g.m) >= maxGraceEntries {
		for len(g.m) >= maxGraceEntries {
			var oldest string
			var t time.Time
			for k, v := range g.m {
				if oldest == "" || v.until.Before(t) {
					oldest, t = k, v.until
				}
			}
			delete(g.m, oldest)
		}
	}
	g.m[sid] = e
}

func (g *graceCache) get(sid string, prevHash []byte, prevSecret string, now time.Time) (string, bool) {
	g.mu.Lock()
	e, ok := g.m[sid]
	g.mu.Unlock()
	if !ok || !now.Before(e.until) || !equalHash(prevHash, e.prevHash) {
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

func (g *graceCache) drop(sid string) {
	g.mu.Lock()
	delete(g.m, sid)
	g.mu.Unlock()
}

func (g *graceCache) sweepLocked(now time.Time) {
	for k, v := range g.m {
		if !now.Before(v.until) {
			delete(g.m, k)
		}
	}
}
