package server

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"net/http"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// Defaults of the client-certificate verification cache.
const (
	// clientCertCacheSize bounds the number of cached chains. Webhook callers
	// are a handful of kube-apiservers, each presenting one chain until its
	// certificate is rotated; the bound only matters against a client that
	// cycles through many valid certificates.
	clientCertCacheSize = 1024
	// clientCertCacheTTL is the longest a verification is reused.
	clientCertCacheTTL = 5 * time.Minute
)

// certCache remembers successful verifications of TLS client-certificate
// chains, so that a kube-apiserver sending TokenReviews over and over with
// the same certificate does not pay for an X.509 chain verification (an
// ECDSA or RSA signature check per link) on every request.
//
// Why reusing a verification is sound:
//   - The key is the SHA-256 of the DER of every certificate the peer
//     presented (leaf and intermediates, in order, each length-prefixed so
//     that two different chains cannot concatenate to the same bytes). Only
//     byte-identical chains share an entry.
//   - The verifier's inputs other than the chain are fixed for its life: the
//     roots pool is read once from webhook.clientCAFile when the
//     authenticator is built (a new authenticator gets a new cache), and the
//     key usages and user conversion never change. So verifying an
//     identical chain again gives the same answer, except as time passes.
//   - Time is the one input that changes, and it only matters through the
//     validity periods: an entry expires at the earliest NotAfter of the
//     presented chain and of the roots that were still valid when it was
//     stored, and never later than clientCertCacheTTL after it was stored.
//     (NotBefore needs no care: a chain that verified is past all of them.)
//   - Possession of the leaf's private key is proven by the TLS handshake on
//     every connection, not by this verification, so knowing a cached
//     chain's bytes is of no use to anyone without the key.
//
// Only successes are cached; an error or "no opinion" is never remembered,
// so a refused chain is verified again on every request.
type certCache struct {
	inner  authenticator.Request
	cache  *cache.LRUExpireCache
	now    func() time.Time
	maxTTL time.Duration
	// rootsNotAfter are the NotAfter of every root, sorted.
	rootsNotAfter []time.Time
}

// certCacheEntry is a cached verification. resp is shared by every hit:
// callers must not modify it.
type certCacheEntry struct {
	resp   *authenticator.Response
	expiry time.Time
}

// clockFunc adapts a func to the cache's Clock.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

// newCertCache wraps inner, which must verify req.TLS.PeerCertificates
// against roots and nothing else that changes over time. now is the clock
// (nil: time.Now); size and ttl bound the cache (zero: the defaults).
func newCertCache(inner authenticator.Request, roots []*x509.Certificate, size int, ttl time.Duration, now func() time.Time) *certCache {
	if now == nil {
		now = time.Now
	}
	if size <= 0 {
		size = clientCertCacheSize
	}
	if ttl <= 0 {
		ttl = clientCertCacheTTL
	}
	c := &certCache{
		inner:  inner,
		cache:  cache.NewLRUExpireCacheWithClock(size, clockFunc(now)),
		now:    now,
		maxTTL: ttl,
	}
	for _, r := range roots {
		c.rootsNotAfter = append(c.rootsNotAfter, r.NotAfter)
	}
	slices.SortFunc(c.rootsNotAfter, time.Time.Compare)
	return c
}

// AuthenticateRequest answers as inner would, from the cache when the same
// chain verified recently.
func (c *certCache) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		// As inner: no client certificate, no opinion. Not worth a lookup.
		return c.inner.AuthenticateRequest(req)
	}
	chain := req.TLS.PeerCertificates
	key := chainKey(chain)
	now := c.now()
	if v, ok := c.cache.Get(key); ok {
		e := v.(*certCacheEntry)
		// The cache's own expiry is only for eviction; this is the exact one.
		if !now.After(e.expiry) {
			return e.resp, true, nil
		}
		c.cache.Remove(key)
	}
	resp, ok, err := c.inner.AuthenticateRequest(req)
	if !ok || err != nil || resp == nil {
		return resp, ok, err
	}
	if expiry := c.expiry(chain, now); now.Before(expiry) {
		c.cache.Add(key, &certCacheEntry{resp: resp, expiry: expiry}, expiry.Sub(now))
	}
	return resp, true, nil
}

// expiry is when a verification of chain done at now stops being reusable.
func (c *certCache) expiry(chain []*x509.Certificate, now time.Time) time.Time {
	exp := now.Add(c.maxTTL)
	for _, cert := range chain {
		if cert.NotAfter.Before(exp) {
			exp = cert.NotAfter
		}
	}
	// The root the chain was verified to is not among the peer's
	// certificates. Any root valid at now may have been it: take the first
	// to expire. (Roots already expired cannot anchor a valid chain.)
	i, _ := slices.BinarySearchFunc(c.rootsNotAfter, now, func(na, t time.Time) int {
		if na.Before(t) {
			return -1
		}
		return 1
	})
	if i < len(c.rootsNotAfter) && c.rootsNotAfter[i].Before(exp) {
		exp = c.rootsNotAfter[i]
	}
	return exp
}

// chainKey is the SHA-256 of the chain's certificates' DER, each prefixed
// with its length.
func chainKey(chain []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, cert := range chain {
		binary.BigEndian.PutUint64(n[:], uint64(len(cert.Raw)))
		h.Write(n[:])
		h.Write(cert.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}
