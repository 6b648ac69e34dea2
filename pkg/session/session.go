package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/store"
)

// Errors of Refresh and Lookup. Callers map them to OAuth2 errors:
// ErrInvalidToken, ErrExpired, ErrReused and ErrUpstreamRefused are the
// client's "invalid_grant" (log in again); ErrUpstreamUnavailable is a
// temporary server-side failure (retry later, the session is intact).
var (
	ErrInvalidToken        = errors.New("refresh token is not valid")
	ErrExpired             = errors.New("session has expired")
	ErrReused              = errors.New("a rotated refresh token was used again after the reuse grace; the session has been revoked")
	ErrUpstreamRefused     = errors.New("the identity provider refused to refresh the session; it has been revoked")
	ErrUpstreamUnavailable = errors.New("the identity provider could not be reached to refresh the session")
)

// ErrNotDeleted is wrapped by End's error when the session was revoked (its
// tokens no longer verify and it cannot be refreshed) but its record could
// not be deleted; garbage collection removes it later.
var ErrNotDeleted = errors.New("the session is revoked but its record could not be deleted")

// secretBytes is the size of a refresh secret: 256 bits.
const secretBytes = 32

// revocationSkew is added to how long a revocation is kept, beyond the last
// moment a token of the session could expire (clock differences, verifier
// leeway).
const revocationSkew = 5 * time.Minute

var b64 = base64.RawURLEncoding

// Settings are the session lifetimes, read at each use so that a
// configuration reload applies to the next operation.
type Settings struct {
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	ReuseGrace  time.Duration
	// MaxTokenLifetime bounds how long a cluster token of a session can
	// live, and so how long a revocation must be kept.
	MaxTokenLifetime time.Duration
}

// SettingsFrom returns the Settings of the live configuration config
// returns: portal.sessionIdleTimeout, sessionMaxLifetime, refreshReuseGrace
// and tokens.maxLifetime.
func SettingsFrom(config func() *configv1alpha1.PortcullisConfiguration) func() Settings {
	return func() Settings {
		cfg := config()
		return Settings{
			IdleTimeout:      cfg.Portal.SessionIdleTimeout.Duration,
			MaxLifetime:      cfg.Portal.SessionMaxLifetime.Duration,
			ReuseGrace:       cfg.Portal.RefreshReuseGrace.Duration,
			MaxTokenLifetime: cfg.Tokens.MaxLifetime.Duration,
		}
	}
}

// KeepingRevocationsFor returns settings whose MaxTokenLifetime is never
// below atLeast. tokens.maxLifetime can be lowered by a live reload, but the
// minter keeps the maximum it started with (a change of tokens needs a
// restart): revocations must be kept as long as the longest token the minter
// still issues could live, or a revoked token would verify again once its
// revocation is collected. The server passes the minter's maximum
// (token.Minter.MaxTokenLifetime).
func KeepingRevocationsFor(settings func() Settings, atLeast time.Duration) func() Settings {
	return func() Settings {
		s := settings()
		s.MaxTokenLifetime = max(s.MaxTokenLifetime, atLeast)
		return s
	}
}

// User is the user a session belongs to, as their identity provider
// asserted them: the group mappings and the policy are applied to it at each
// use (pkg/identity.Identity is the result), never stored.
type User struct {
	Username string
	UID      string
	// Groups are the identity provider's groups, before group mappings.
	Groups           []string
	Extra            map[string][]string
	Email            string
	IdentityProvider string
}

// Upstream is the result of refreshing the session at its identity provider.
type Upstream struct {
	// User, when not nil, replaces the session's user.
	User *User
	// RefreshToken, when not empty, replaces the session's upstream refresh
	// token (IdPs may rotate theirs).
	RefreshToken string
}

// UpstreamFunc refreshes a session at its identity provider. It returns an
// error wrapping ErrUpstreamRefused when the IdP refuses (the user was
// removed, the grant revoked), any other error when it cannot tell.
type UpstreamFunc func(ctx context.Context, s store.Session) (*Upstream, error)

// AuthorizeFunc decides whether the (possibly re-resolved) session may get
// what the caller asks for; a non-nil error aborts the refresh without
// rotating the refresh token and is returned as it is.
type AuthorizeFunc func(ctx context.Context, s store.Session) error

// Manager creates, refreshes and ends sessions. It is safe for concurrent use.
type Manager struct {
	store    store.Store
	clock    clock.PassiveClock
	settings func() Settings

	locks keyedMutex
}

// NewManager returns a Manager over st. clk may be nil (clock.RealClock).
func NewManager(st store.Store, settings func() Settings, clk clock.PassiveClock) *Manager {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Manager{store: st, clock: clk, settings: settings}
}

// CreateFrom stores a new session for id, created from origin, and returns
// it with its refresh token.
func (m *Manager) CreateFrom(ctx context.Context, id User, upstreamRefreshToken string, origin Origin) (store.Session, string, error) {
	set := m.settings()
	now := m.clock.Now()
	for range 3 {
		sid, err := randomString(16)
		if err != nil {
			return store.Session{}, "", err
		}
		secret, hash, err := newSecret()
		if err != nil {
			return store.Session{}, "", err
		}
		s := store.Session{
			ID:                   sid,
			Username:             id.Username,
			UID:                  id.UID,
			Groups:               id.Groups,
			Extra:                id.Extra,
			Email:                id.Email,
			IdentityProvider:     id.IdentityProvider,
			UpstreamRefreshToken: upstreamRefreshToken,
			RefreshTokenHash:     hash,
			ClientAddress:        origin.Address,
			Client:               origin.Client,
			CreatedAt:            now,
			LastUsedAt:           now,
			IdleTimeout:          set.IdleTimeout,
			ExpiresAt:            now.Add(set.MaxLifetime),
		}
		err = m.store.CreateSession(ctx, s)
		if errors.Is(err, store.ErrAlreadyExists) {
			continue // 128 random bits colliding: astronomically unlikely
		}
		if err != nil {
			return store.Session{}, "", fmt.Errorf("creating the session: %w", err)
		}
		return s, sid + "." + secret, nil
	}
	return store.Session{}, "", errors.New("creating the session: could not find a free session ID")
}

// ParseRefreshToken splits a refresh token into session ID and secret.
func ParseRefreshToken(tok string) (sid, secret string, ok bool) {
	sid, secret, ok = strings.Cut(tok, ".")
	if !ok || sid == "" || len(secret) != b64.EncodedLen(secretBytes) || len(sid) > 64 {
		return "", "", false
	}
	return sid, secret, true
}

// Lookup returns the live session a refresh token belongs to, without
// rotating or using it (e.g. to show the user who they are, or to log out).
// Only the current secret is accepted.
func (m *Manager) Lookup(ctx context.Context, tok string) (store.Session, error) {
	sid, secret, ok := ParseRefreshToken(tok)
	if !ok {
		return store.Session{}, ErrInvalidToken
	}
	s, err := m.store.GetSession(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return store.Session{}, ErrInvalidToken
	}
	if err != nil {
		return store.Session{}, err
	}
	h := hashSecret(secret)
	if !equalHash(h, s.RefreshTokenHash) && !(equalHash(h, s.PreviousRefreshTokenHash) && m.clock.Now().Before(s.PreviousValidUntil)) {
		return store.Session{}, ErrInvalidToken
	}
	if s.Expired(m.clock.Now()) {
		return store.Session{}, ErrExpired
	}
	return s, nil
}

// Result is a successful refresh.
type Result struct {
	Session store.Session
	// RefreshToken is the token the client must use next time.
	RefreshToken string
	// Grace is true when the previous refresh token was used within the
	// reuse grace: the identity was not refreshed upstream.
	Grace bool
}

// Refresh checks tok, refreshes the session upstream (when upstream is not
// nil and the session has an upstream refresh token), asks authorize, and
// rotates the refresh token. See the package documentation for the rules.
func (m *Manager) Refresh(ctx context.Context, tok string, upstream UpstreamFunc, authorize AuthorizeFunc) (Result, error) {
	sid, secret, ok := ParseRefreshToken(tok)
	if !ok {
		return Result{}, ErrInvalidToken
	}
	// Refreshes of one session are serialised in this process, so that two
	// concurrent ones with the same token do not both ask the IdP (which may
	// rotate its own refresh token and refuse the second).
	unlock := m.locks.lock(sid)
	defer unlock()

	s, err := m.store.GetSession(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, ErrInvalidToken
	}
	if err != nil {
		return Result{}, fmt.Errorf("reading the session: %w", err)
	}
	now := m.clock.Now()
	h := hashSecret(secret)
	current := equalHash(h, s.RefreshTokenHash)
	previous := !current && equalHash(h, s.PreviousRefreshTokenHash)
	switch {
	case !current && !previous:
		return Result{}, ErrInvalidToken
	case s.Expired(now):
		m.end(ctx, s, "session expired", "portcullis")
		return Result{}, ErrExpired
	case previous && !now.Before(s.PreviousValidUntil):
		klog.InfoS("Refresh token reuse detected: revoking the session", "session", s.ID, "user", s.Username)
		m.end(ctx, s, "refresh token reused after rotation", "portcullis")
		return Result{}, ErrReused
	case previous:
		return m.refreshInGrace(ctx, s, secret, h, authorize)
	}

	if upstream != nil && s.UpstreamRefreshToken != "" {
		up, err := upstream(ctx, s)
		if errors.Is(err, ErrUpstreamRefused) {
			klog.InfoS("Identity provider refused to refresh a session: revoking it", "session", s.ID, "user", s.Username, "identityProvider", s.IdentityProvider, "reason", err.Error())
			m.end(ctx, s, "identity provider refused the refresh", "portcullis")
			return Result{}, err
		}
		if err != nil {
			return Result{}, fmt.Errorf("%w: %v", ErrUpstreamUnavailable, err)
		}
		if up != nil {
			applyUpstream(&s, up)
			// Persist at once: the IdP may have rotated its refresh token,
			// and the old one may no longer work even if authorize refuses.
			if s, err = m.store.UpdateSession(ctx, sid, func(cur *store.Session) error {
				if !equalHash(h, cur.RefreshTokenHash) {
					return store.ErrConflict
				}
				applyUpstream(cur, up)
				return nil
			}); err != nil {
				return Result{}, m.updateError(err)
			}
		}
	}
	if authorize != nil {
		if err := authorize(ctx, s); err != nil {
			return Result{}, err
		}
	}
	return m.rotate(ctx, s, secret, h, now)
}

func applyUpstream(s *store.Session, up *Upstream) {
	if up.User != nil {
		s.Username = up.User.Username
		s.UID = up.User.UID
		s.Groups = up.User.Groups
		s.Extra = up.User.Extra
		s.Email = up.User.Email
	}
	if up.RefreshToken != "" {
		s.UpstreamRefreshToken = up.RefreshToken
	}
}

// rotate replaces the current secret (whose hash is h) by a new one.
func (m *Manager) rotate(ctx context.Context, s store.Session, oldSecret string, h []byte, now time.Time) (Result, error) {
	secret, hash, err := newSecret()
	if err != nil {
		return Result{}, err
	}
	grace := m.settings().ReuseGrace
	tok := s.ID + "." + secret
	var sealed []byte
	if grace > 0 {
		if sealed, err = sealNext(s.ID, oldSecret, tok); err != nil {
			return Result{}, err
		}
	}
	updated, err := m.store.UpdateSession(ctx, s.ID, func(cur *store.Session) error {
		if !equalHash(h, cur.RefreshTokenHash) {
			// Rotated by another replica meanwhile.
			return store.ErrConflict
		}
		cur.PreviousRefreshTokenHash = h
		cur.PreviousValidUntil = now.Add(grace)
		cur.PreviousSealedNext = sealed
		cur.RefreshTokenHash = hash
		cur.LastUsedAt = now
		return nil
	})
	if err != nil {
		return Result{}, m.updateError(err)
	}
	return Result{Session: updated, RefreshToken: tok}, nil
}

// refreshInGrace serves a refresh with the previous secret within the reuse
// grace. The client gets the token the rotation handed out (kept in the
// session, sealed with the previous secret), so both clients end up with the
// same current token, whichever replica each asks. When it cannot be opened
// (a session rotated before this field existed), the session is rotated
// again: the token of the first rotation then stops working, and its holder
// is asked for a new login at its next refresh rather than the session being
// revoked.
func (m *Manager) refreshInGrace(ctx context.Context, s store.Session, secret string, h []byte, authorize AuthorizeFunc) (Result, error) {
	now := m.clock.Now()
	if authorize != nil {
		if err := authorize(ctx, s); err != nil {
			return Result{}, err
		}
	}
	if next, ok := openNext(s.ID, secret, s.PreviousSealedNext); ok {
		if _, nextSecret, ok := ParseRefreshToken(next); ok && equalHash(hashSecret(nextSecret), s.RefreshTokenHash) {
			updated, err := m.store.UpdateSession(ctx, s.ID, func(cur *store.Session) error {
				cur.LastUsedAt = now
				return nil
			})
			if err != nil {
				return Result{}, m.updateError(err)
			}
			return Result{Session: updated, RefreshToken: next, Grace: true}, nil
		}
	}
	newSecretStr, hash, err := newSecret()
	if err != nil {
		return Result{}, err
	}
	updated, err := m.store.UpdateSession(ctx, s.ID, func(cur *store.Session) error {
		if !equalHash(h, cur.PreviousRefreshTokenHash) || !now.Before(cur.PreviousValidUntil) {
			return store.ErrConflict
		}
		cur.RefreshTokenHash = hash
		cur.LastUsedAt = now
		return nil
	})
	if err != nil {
		return Result{}, m.updateError(err)
	}
	return Result{Session: updated, RefreshToken: s.ID + "." + newSecretStr, Grace: true}, nil
}

func (m *Manager) updateError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Ended (logout, revocation) while we were working.
		return ErrInvalidToken
	case errors.Is(err, store.ErrConflict):
		return ErrInvalidToken
	}
	return fmt.Errorf("updating the session: %w", err)
}

// Revoke ends the session the refresh token belongs to (logout). Any secret
// the session would accept for a refresh is accepted.
func (m *Manager) Revoke(ctx context.Context, tok, by string) (store.Session, error) {
	s, err := m.Lookup(ctx, tok)
	if errors.Is(err, ErrExpired) {
		m.end(ctx, s, "session expired", by)
		return s, nil
	}
	if err != nil {
		return store.Session{}, err
	}
	if err := m.End(ctx, s, "logout", by); err != nil {
		return store.Session{}, err
	}
	return s, nil
}

// RevokeTokenID revokes one cluster token by its ID (jti): for tokens that
// belong to no session (break-glass mint, exchanged ID tokens) and cannot be
// ended with one. The revocation is kept as long as a token minted now could
// live (MaxTokenLifetime, plus revocationSkew), which covers every token
// already minted. Revoking an ID again keeps the later expiry.
func (m *Manager) RevokeTokenID(ctx context.Context, jti, reason, by string) (store.Revocation, error) {
	if jti == "" {
		return store.Revocation{}, errors.New("a token ID (jti) is required")
	}
	now := m.clock.Now()
	r := store.Revocation{
		ID:        jti,
		Reason:    reason,
		RevokedBy: by,
		RevokedAt: now,
		ExpiresAt: now.Add(m.settings().MaxTokenLifetime + revocationSkew),
	}
	if err := m.store.Revoke(ctx, r); err != nil {
		return store.Revocation{}, fmt.Errorf("revoking token %s: %w", jti, err)
	}
	return r, nil
}

// End revokes s's ID, so its cluster tokens stop verifying, and deletes s.
// It is the one way a session ends: logout, reuse detection, an upstream
// refusal and the Session API's delete all come here, so the revocation is
// kept as long as any token of the session could verify (its last possible
// expiry plus revocationSkew, which covers the verifier's leeway).
// The revocation is written first: if deleting fails, the session is already
// unusable, and the error wraps ErrNotDeleted.
func (m *Manager) End(ctx context.Context, s store.Session, reason, by string) error {
	now := m.clock.Now()
	until := now.Add(m.settings().MaxTokenLifetime)
	if s.ExpiresAt.Before(until) && !s.ExpiresAt.IsZero() {
		until = s.ExpiresAt
	}
	if err := m.store.Revoke(ctx, store.Revocation{
		ID:        s.ID,
		Reason:    reason,
		RevokedBy: by,
		RevokedAt: now,
		ExpiresAt: until.Add(revocationSkew),
	}); err != nil {
		return fmt.Errorf("revoking session %s: %w", s.ID, err)
	}
	if err := m.store.DeleteSession(ctx, s.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		// At least erase the IdP's refresh token: the session is revoked,
		// and nothing should keep a usable upstream credential for it
		// until garbage collection.
		_, _ = m.store.UpdateSession(ctx, s.ID, func(cur *store.Session) error {
			cur.UpstreamRefreshToken, cur.PreviousSealedNext = "", nil
			return nil
		})
		return fmt.Errorf("deleting session %s: %w: %w", s.ID, ErrNotDeleted, err)
	}
	return nil
}

// end is End for paths that are already failing: errors are logged.
func (m *Manager) end(ctx context.Context, s store.Session, reason, by string) {
	if err := m.End(ctx, s, reason, by); err != nil {
		klog.ErrorS(err, "Ending a session failed", "session", s.ID)
	}
}

func newSecret() (secret string, hash []byte, err error) {
	secret, err = randomString(secretBytes)
	if err != nil {
		return "", nil, err
	}
	return secret, hashSecret(secret), nil
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return b64.EncodeToString(b), nil
}

func hashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

func equalHash(a, b []byte) bool {
	return len(a) == sha256.Size && len(b) == sha256.Size && subtle.ConstantTimeCompare(a, b) == 1
}

// keyedMutex is a mutex per key, dropped when nobody holds or waits for it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
