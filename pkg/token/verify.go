package token

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// Reasons a token is rejected (VerifyError.Reason). They are short, fixed
// strings, fit for a metrics label and safe to show to the client.
const (
	ReasonMalformed            = "malformed token"
	ReasonTooLarge             = "token too large"
	ReasonUnsupportedAlgorithm = "unsupported signing algorithm"
	ReasonUnsupportedHeader    = "unsupported token header"
	ReasonUnknownKey           = "unknown signing key"
	ReasonBadSignature         = "invalid signature"
	ReasonWrongIssuer          = "wrong issuer"
	ReasonMissingClaim         = "missing required claim"
	ReasonExpired              = "token expired"
	ReasonNotYetValid          = "token not yet valid"
	ReasonAudience             = "audience not accepted"
	ReasonRevoked              = "revoked"
)

// VerifyError is the error Verify returns for a token that is not valid.
// It never contains the token or any part of it.
type VerifyError struct {
	// Reason is one of the Reason* constants.
	Reason string
}

func (e *VerifyError) Error() string { return "token rejected: " + e.Reason }

func reject(reason string) error { return &VerifyError{Reason: reason} }

// Revoker reports whether any of ids (session IDs, token IDs) is revoked.
// store.Store satisfies it.
type Revoker interface {
	IsRevoked(ctx context.Context, ids ...string) (bool, error)
}

// DefaultLeeway is the default tolerance for clock differences when checking
// exp, nbf and iat. Replicas and clusters are expected to run NTP, so the
// real skew is well under a second; 30s absorbs a badly synchronised node
// while letting an expired token live on for at most 30s. (go-jose's default,
// which kube-apiserver uses for service account tokens, is 1 minute;
// go-oidc, which kube-apiserver's JWT authenticator uses, allows no leeway on
// exp and 5 minutes on nbf.)
const DefaultLeeway = 30 * time.Second

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// Leeway is the tolerance for clock differences when checking exp, nbf
	// and iat. Zero means DefaultLeeway; negative means none.
	Leeway time.Duration
	// CacheSize bounds the number of cached verifications. Zero means
	// DefaultCacheSize; negative disables the cache.
	CacheSize int
	// Clock tells the current time; clock.RealClock when nil.
	Clock clock.PassiveClock
	// OnCacheHit and OnCacheMiss, if set, are called on every Verify that
	// gets past the size check: a hit skipped signature verification, a miss
	// did it. They must be cheap and safe for concurrent use (e.g. a
	// Prometheus counter's Inc).
	OnCacheHit  func()
	OnCacheMiss func()
}

// Verifier verifies cluster tokens. It is safe for concurrent use.
type Verifier struct {
	km      *KeyManager
	issuer  string
	revoker Revoker
	leeway  time.Duration
	clock   clock.PassiveClock
	cache   *verifyCache
	onHit   func()
	onMiss  func()
}

// NewVerifier returns a Verifier of tokens issued by issuerURL and signed by
// km's keys, rejecting those whose sid or jti revocations reports revoked.
func NewVerifier(km *KeyManager, issuerURL string, revocations Revoker, opts VerifierOptions) (*Verifier, error) {
	if km == nil {
		return nil, errors.New("token: NewVerifier needs a KeyManager")
	}
	if revocations == nil {
		return nil, errors.New("token: NewVerifier needs a Revoker; verifying without revocation checks is not supported")
	}
	if err := validateIssuer(issuerURL); err != nil {
		return nil, err
	}
	v := &Verifier{
		km:      km,
		issuer:  issuerURL,
		revoker: revocations,
		leeway:  opts.Leeway,
		clock:   opts.Clock,
		onHit:   opts.OnCacheHit,
		onMiss:  opts.OnCacheMiss,
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.clock == nil {
		v.clock = clock.RealClock{}
	}
	switch {
	case opts.CacheSize == 0:
		v.cache = newVerifyCache(DefaultCacheSize)
	case opts.CacheSize > 0:
		v.cache = newVerifyCache(opts.CacheSize)
	}
	return v, nil
}

// Verify checks raw completely and returns its claims. audiences are the
// audiences the caller accepts: the token is accepted only if its aud claim
// names at least one of them. An empty audiences accepts nothing (there is no
// "any audience"), so a caller that forgets to say who it is fails closed.
//
// A token that is not valid gets a *VerifyError. Any other error means
// validity could not be decided (the revocation lookup failed); the caller
// must treat the token as not authenticated, but may report it as an outage
// rather than as bad credentials.
//
// Successful verifications are cached by the token's SHA-256, never past the
// token's exp. A cache hit still checks the time, the audience, that the
// signing key is still published, and revocation of the sid and jti.
func (v *Verifier) Verify(ctx context.Context, raw string, audiences []string) (*Claims, error) {
	if len(raw) > MaxTokenSize {
		return nil, reject(ReasonTooLarge)
	}
	digest := Digest(raw)
	return v.VerifyDigest(ctx, raw, &digest, audiences)
}

// Digest is the SHA-256 of a token, the key of the verification cache.
func Digest(raw string) [32]byte {
	return sha256.Sum256([]byte(raw))
}

// VerifyCached is VerifyDigest for a token in the verification cache, with
// one lookup: a caller that routes tokens (this verifier's, or an identity
// provider's) learns with it both whether the token is this verifier's and,
// if so, the result. For a token not in the cache known is false and nothing
// was checked.
func (v *Verifier) VerifyCached(ctx context.Context, digest *[32]byte, audiences []string) (claims *Claims, known bool, err error) {
	if v.cache == nil {
		return nil, false, nil
	}
	now := v.clock.Now()
	e := v.cache.get(digest, now)
	if e == nil {
		return nil, false, nil
	}
	if v.onHit != nil {
		v.onHit()
	}
	claims, err = v.present(ctx, e, now, audiences)
	return claims, true, err
}

// VerifyDigest is Verify for a caller that has computed Digest(raw) already.
func (v *Verifier) VerifyDigest(ctx context.Context, raw string, digest *[32]byte, audiences []string) (*Claims, error) {
	if len(raw) > MaxTokenSize {
		return nil, reject(ReasonTooLarge)
	}
	if claims, known, err := v.VerifyCached(ctx, digest, audiences); known {
		return claims, err
	}
	if v.onMiss != nil {
		v.onMiss()
	}
	now := v.clock.Now()
	e, err := v.verifySignedToken(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(digest, e, now)
	}
	return v.present(ctx, e, now, audiences)
}

// present checks a verified token as presented now to audiences and returns
// a copy of its claims.
func (v *Verifier) present(ctx context.Context, e *verified, now time.Time, audiences []string) (*Claims, error) {
	if err := v.checkPresentation(ctx, e, now, audiences); err != nil {
		return nil, err
	}
	return e.claims.Clone(), nil
}

// verifySignedToken does the expensive, cacheable part: parsing, the
// signature and the claims that do not change with time.
func (v *Verifier) verifySignedToken(ctx context.Context, raw string, now time.Time) (*verified, error) {
	tok, reason := parseCompact(raw)
	if reason != "" {
		return nil, reject(reason)
	}
	mk := v.km.verificationKey(ctx, tok.kid, now)
	if mk == nil {
		return nil, reject(ReasonUnknownKey)
	}
	if err := verifySignature(&mk.priv.PublicKey, &tok); err != nil {
		return nil, reject(ReasonBadSignature)
	}
	payload, err := b64.DecodeString(tok.payload)
	if err != nil {
		return nil, reject(ReasonMalformed)
	}
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, reject(ReasonMalformed)
	}
	c := w.claims()
	if c.Issuer != v.issuer {
		return nil, reject(ReasonWrongIssuer)
	}
	if c.Expiry.IsZero() || c.IssuedAt.IsZero() || c.ID == "" || c.Subject == "" || c.Username == "" {
		return nil, reject(ReasonMissingClaim)
	}
	if len(c.Audience) == 0 {
		return nil, reject(ReasonAudience)
	}
	return &verified{claims: c, kid: tok.kid, exp: c.Expiry}, nil
}

// checkPresentation does the checks that depend on when and to whom the
// token is presented, and on revocations. It runs on every Verify.
func (v *Verifier) checkPresentation(ctx context.Context, e *verified, now time.Time, audiences []string) error {
	// A key removed from the store (say, because it leaked) takes its
	// cached tokens with it.
	if v.km.set.Load().verificationKey(e.kid, now) == nil {
		return reject(ReasonUnknownKey)
	}
	c := e.claims
	if !now.Before(c.Expiry.Add(v.leeway)) {
		return reject(ReasonExpired)
	}
	limit := now.Add(v.leeway)
	if c.NotBefore.After(limit) || c.IssuedAt.After(limit) {
		return reject(ReasonNotYetValid)
	}
	if !intersects(c.Audience, audiences) {
		return reject(ReasonAudience)
	}
	ids := make([]string, 0, 2)
	if c.SessionID != "" {
		ids = append(ids, c.SessionID)
	}
	ids = append(ids, c.ID)
	revoked, err := v.revoker.IsRevoked(ctx, ids...)
	if err != nil {
		return fmt.Errorf("token: checking revocation: %w", err)
	}
	if revoked {
		return reject(ReasonRevoked)
	}
	return nil
}

func intersects(have, accepted []string) bool {
	for _, a := range have {
		for _, b := range accepted {
			if a == b {
				return true
			}
		}
	}
	return false
}

// validateIssuer checks an issuer URL as kube-apiserver will: absolute https
// (http only for loopback hosts, for development), no query, fragment or
// user info. A trailing slash is refused because discovery and JWKS URLs are
// formed by appending to it.
func validateIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("token: issuer URL %q does not parse: %w", issuer, err)
	}
	if u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("token: issuer URL %q must be absolute", issuer)
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); !(host == "localhost" || ip != nil && ip.IsLoopback()) {
			return fmt.Errorf("token: issuer URL %q must use https (Kubernetes refuses other schemes; http is allowed for loopback hosts only)", issuer)
		}
	default:
		return fmt.Errorf("token: issuer URL %q must use https", issuer)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.Contains(issuer, "#") || u.User != nil {
		return fmt.Errorf("token: issuer URL %q must not have a query, fragment or user info", issuer)
	}
	if strings.HasSuffix(issuer, "/") {
		return fmt.Errorf("token: issuer URL %q must not end with a slash", issuer)
	}
	return nil
}
