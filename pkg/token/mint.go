package token

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/utils/clock"
)

// Minter signs cluster tokens. It is safe for concurrent use.
type Minter struct {
	km     *KeyManager
	issuer string
	clock  clock.PassiveClock
}

// NewMinter returns a Minter that signs with km's active key and sets iss to
// issuerURL. clk may be nil (clock.RealClock).
func NewMinter(km *KeyManager, issuerURL string, clk clock.PassiveClock) (*Minter, error) {
	if km == nil {
		return nil, errors.New("token: NewMinter needs a KeyManager")
	}
	if err := validateIssuer(issuerURL); err != nil {
		return nil, err
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Minter{km: km, issuer: issuerURL, clock: clk}, nil
}

// MaxTokenLifetime is the longest lifetime Mint accepts: the maximum the key
// manager was made with, which a configuration reload does not change.
func (m *Minter) MaxTokenLifetime() time.Duration { return m.km.opts.MaxTokenLifetime }

// Mint signs a token for c and returns it with the claims as signed.
//
// Mint sets Issuer, IssuedAt, NotBefore (= IssuedAt) and ID (128 random bits,
// base64url), replacing whatever c had. It requires Subject, Username and a
// non-empty Audience without empty entries, and an Expiry after now and at
// most KeyOptions.MaxTokenLifetime away. Times are truncated to whole seconds.
// If there is no usable signing key Mint creates one (see
// KeyManager.Ensure).
func (m *Minter) Mint(ctx context.Context, c Claims) (string, Claims, error) {
	now := m.clock.Now()
	switch {
	case c.Subject == "":
		return "", Claims{}, errors.New("token: cannot mint a token without a subject")
	case c.Username == "":
		return "", Claims{}, errors.New("token: cannot mint a token without a username")
	case len(c.Audience) == 0 || slices.Contains(c.Audience, ""):
		return "", Claims{}, errors.New("token: cannot mint a token without an audience, or with an empty one")
	}
	iat := time.Unix(now.Unix(), 0)
	exp := time.Unix(c.Expiry.Unix(), 0)
	if c.Expiry.IsZero() || !exp.After(iat) {
		return "", Claims{}, errors.New("token: cannot mint a token whose expiry is not in the future")
	}
	if limit := m.km.opts.MaxTokenLifetime; exp.Sub(iat) > limit {
		return "", Claims{}, fmt.Errorf("token: cannot mint a token living longer than the maximum token lifetime (%s)", limit)
	}
	mk, err := m.km.ensureSigningKey(ctx)
	if err != nil {
		return "", Claims{}, fmt.Errorf("token: minting: %w", err)
	}
	// Holds by construction (a key retires no later than its stored RetireAt
	// and verifies for MaxTokenLifetime after that); checked so that a bug
	// there cannot produce tokens that die before their exp.
	if exp.After(mk.info.ExpireAt) {
		return "", Claims{}, errors.New("token: the signing key would expire before the token")
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Claims{}, fmt.Errorf("token: generating a token ID: %w", err)
	}
	out := *c.Clone()
	out.Issuer = m.issuer
	out.IssuedAt = iat
	out.NotBefore = iat
	out.Expiry = exp
	out.ID = b64.EncodeToString(id[:])
	payload, err := json.Marshal(toWire(&out))
	if err != nil {
		return "", Claims{}, fmt.Errorf("token: encoding claims: %w", err)
	}
	raw, err := signCompact(mk.priv, mk.encHeader, payload)
	if err != nil {
		return "", Claims{}, fmt.Errorf("token: signing: %w", err)
	}
	if len(raw) > MaxTokenSize {
		return "", Claims{}, fmt.Errorf("token: the token would be %d bytes, more than the %d a verifier accepts (too many groups or extra values?)", len(raw), MaxTokenSize)
	}
	return raw, out, nil
}
