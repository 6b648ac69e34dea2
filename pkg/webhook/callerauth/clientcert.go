// Package callerauth authenticates the callers of the TokenReview webhook:
// kube-apiservers presenting a client certificate signed by
// webhook.clientCAFile, with the verification of their certificate chains
// cached.
package callerauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authentication/user"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// Group is given to clients presenting a certificate from
// webhook.clientCAFile: the kube-apiservers allowed to call /tokenreview.
// It names them in audit logs; what admits a caller is its type (IsCaller),
// since a group name is something other authenticators could produce.
const Group = "portcullis.dev:tokenreview-callers"

// Caller is a webhook caller this package authenticated. No other
// authenticator produces this type.
type Caller struct {
	user.DefaultInfo
}

// IsCaller reports whether u was authenticated by this package's
// authenticator: a client certificate from webhook.clientCAFile (and in
// webhook.allowedClientNames, if set). A bearer token, whatever groups it
// carries, is not a caller.
func IsCaller(u user.Info) bool {
	_, ok := u.(*Caller)
	return ok
}

// New accepts client certificates signed by webhook.clientCAFile (optionally
// only some common names) and puts their holders in Group. Without a
// clientCAFile it returns nil: no webhook callers.
func New(w v1alpha1.WebhookConfig) (authenticator.Request, error) {
	if w.ClientCAFile == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(w.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("reading webhook.clientCAFile: %w", err)
	}
	// The cache needs the roots' expiry, so they are parsed here.
	roots, err := certutil.ParseCertsPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("webhook.clientCAFile %s holds no PEM certificate, or a malformed one: %w", w.ClientCAFile, err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	// The roots are read once, here, and fixed for this authenticator's life,
	// which is what makes caching verifications sound: see certCache.
	inner := newCertCache(x509request.New(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, x509request.CommonNameUserConversion), roots, 0, 0, nil)
	return webhookCallers(inner, w.AllowedClientNames), nil
}

// webhookCallers wraps verified, the client-certificate authenticator: it
// applies webhook.allowedClientNames on every request (after the cache, which
// sits inside verified) and puts the caller in Group. It never modifies the
// Response verified returns, which certCache shares between hits.
func webhookCallers(verified authenticator.Request, allowedClientNames []string) authenticator.Request {
	allowed := slices.Clone(allowedClientNames)
	return authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		resp, ok, err := verified.AuthenticateRequest(req)
		if !ok || err != nil {
			return resp, ok, err
		}
		if len(allowed) > 0 && !slices.Contains(allowed, resp.User.GetName()) {
			return nil, false, fmt.Errorf("client certificate %q is not in webhook.allowedClientNames", resp.User.GetName())
		}
		return &authenticator.Response{User: &Caller{DefaultInfo: user.DefaultInfo{
			Name:   resp.User.GetName(),
			Groups: append(slices.Clone(resp.User.GetGroups()), Group),
		}}}, true, nil
	})
}

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
	clock  clock.PassiveClock
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

// newCertCache wraps inner, which must verify req.TLS.PeerCertificates
// against roots and nothing else that changes over time. clk is the clock
// (nil: the real one); size and ttl bound the cache (zero: the defaults).
func newCertCache(inner authenticator.Request, roots []*x509.Certificate, size int, ttl time.Duration, clk clock.PassiveClock) *certCache {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if size <= 0 {
		size = clientCertCacheSize
	}
	if ttl <= 0 {
		ttl = clientCertCacheTTL
	}
	c := &certCache{
		inner:  inner,
		cache:  cache.NewLRUExpireCacheWithClock(size, clk),
		clock:  clk,
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
	now := c.clock.Now()
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
