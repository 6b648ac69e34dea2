package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
	"portcullis.dev/portcullis/pkg/store"
)

// Defaults for KeyOptions.
const (
	DefaultRotationPeriod   = 24 * time.Hour
	DefaultMaxTokenLifetime = 24 * time.Hour
	DefaultReloadInterval   = 10 * time.Second
)

// KeyExpirySkew is added to MaxTokenLifetime when deciding how long a retired
// key keeps verifying. It covers a replica that has not reloaded yet and so
// still signs with the previous key for up to a ReloadInterval after a
// rotation elsewhere, clock differences between replicas, and the verifier's
// leeway on exp.
const KeyExpirySkew = 5 * time.Minute

// kidMissReloadInterval is how often at most a token with an unknown kid makes
// the KeyManager reload from the store.
const kidMissReloadInterval = time.Second

// ErrNoSigningKey is returned when there is no key to sign with.
var ErrNoSigningKey = errors.New("no active signing key")

// KeyOptions configure a KeyManager. All replicas sharing a store must use the
// same values.
type KeyOptions struct {
	// RotationPeriod is how long a key signs before Run replaces it.
	// Default 24h.
	RotationPeriod time.Duration
	// MaxTokenLifetime is the longest lifetime (exp - iat) of a token, and so
	// how long a retired key must keep verifying. Minter refuses longer
	// tokens. Default 24h.
	MaxTokenLifetime time.Duration
	// ReloadInterval is how often Run reloads the keys from the store, so
	// that replicas converge on keys made by others. Default 10s.
	ReloadInterval time.Duration
	// PublishAhead is how long before it signs a key made by rotation is
	// stored, so that every replica has loaded it (and publishes it in its
	// JWKS) before any signs with it. Default 2 × ReloadInterval.
	PublishAhead time.Duration
	// Chores, when set, says whether this process rotates and deletes
	// keys now: with several replicas only the one holding the chores Lease
	// does, so that a rotation happens once cluster-wide. Nil means always.
	Chores func() bool
	// Clock tells the current time; clock.RealClock when nil.
	Clock clock.PassiveClock
	// Logger receives the errors Run cannot return. Default slog.Default().
	Logger *slog.Logger
}

// Key describes a signing key. Its times are the effective ones (see the
// package documentation), which may be earlier than those stored.
type Key struct {
	ID        string
	Algorithm string
	// PublicKey must not be modified.
	PublicKey *ecdsa.PublicKey
	CreatedAt time.Time
	// ActiveAt is when the key started (or starts) signing.
	ActiveAt time.Time
	// RetireAt is when the key stops signing.
	RetireAt time.Time
	// ExpireAt is when the key stops verifying and leaves the JWKS.
	ExpireAt time.Time
}

// KeyManager keeps Portcullis's signing keys in a store.Store. It is safe for
// concurrent use. Call Ensure (or Reload) before using it, and run Run in the
// background.
type KeyManager struct {
	st   store.Store
	opts KeyOptions

	set atomic.Pointer[keySet]

	// reloadSem serializes reloads so that a slower, older listing never
	// replaces a newer one. rotateSem serializes key creation in this
	// process. Both are channels so that waiting honours contexts. Lock
	// order: rotateSem before reloadSem.
	reloadSem chan struct{}
	rotateSem chan struct{}
	// reloadStarts counts reloads that have started listing.
	reloadStarts atomic.Uint64
	// lastMissReload is when a kid miss last caused a reload; guarded by
	// reloadSem.
	lastMissReload time.Time
}

// managedKey is a loaded key.
type managedKey struct {
	info      Key
	stored    store.SigningKey
	priv      *ecdsa.PrivateKey
	encHeader string // base64url protected header for tokens it signs
}

// keySet is an immutable snapshot of the loaded keys.
type keySet struct {
	keys []*managedKey // sorted by (ActiveAt, ID)
	byID map[string]*managedKey
}

// NewKeyManager returns a KeyManager for the keys in st. It does no I/O.
func NewKeyManager(st store.Store, opts KeyOptions) (*KeyManager, error) {
	if st == nil {
		return nil, errors.New("token: NewKeyManager needs a store")
	}
	if opts.RotationPeriod == 0 {
		opts.RotationPeriod = DefaultRotationPeriod
	}
	if opts.MaxTokenLifetime == 0 {
		opts.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = DefaultReloadInterval
	}
	if opts.PublishAhead == 0 {
		opts.PublishAhead = 2 * opts.ReloadInterval
	}
	if opts.Chores == nil {
		opts.Chores = func() bool { return true }
	}
	if opts.RotationPeriod < 0 || opts.MaxTokenLifetime < 0 || opts.ReloadInterval < 0 || opts.PublishAhead < 0 {
		return nil, errors.New("token: KeyOptions durations must not be negative")
	}
	if opts.RotationPeriod <= 2*opts.ReloadInterval {
		return nil, fmt.Errorf("token: RotationPeriod (%s) must be more than twice ReloadInterval (%s)", opts.RotationPeriod, opts.ReloadInterval)
	}
	if opts.RotationPeriod <= opts.ReloadInterval+opts.PublishAhead {
		return nil, fmt.Errorf("token: RotationPeriod (%s) must be more than ReloadInterval + PublishAhead (%s)", opts.RotationPeriod, opts.ReloadInterval+opts.PublishAhead)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	km := &KeyManager{
		st:        st,
		opts:      opts,
		reloadSem: make(chan struct{}, 1),
		rotateSem: make(chan struct{}, 1),
	}
	km.set.Store(&keySet{byID: map[string]*managedKey{}})
	return km, nil
}

func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func release(sem chan struct{}) { <-sem }

// Reload replaces the loaded keys with those in the store. Keys that cannot
// be used (unparseable PEM, another algorithm, inconsistent times) are left
// out and named in the returned error; the others are loaded anyway.
func (km *KeyManager) Reload(ctx context.Context) error {
	if err := acquire(ctx, km.reloadSem); err != nil {
		return fmt.Errorf("reloading signing keys: %w", err)
	}
	defer release(km.reloadSem)
	return km.reloadLocked(ctx)
}

func (km *KeyManager) reloadLocked(ctx context.Context) error {
	km.reloadStarts.Add(1)
	stored, err := km.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("reloading signing keys: %w", err)
	}
	set, err := buildKeySet(stored, km.set.Load(), km.opts.MaxTokenLifetime)
	km.set.Store(set)
	if err != nil {
		return fmt.Errorf("reloading signing keys: %w", err)
	}
	return nil
}

// reloadForUnknownKID reloads the keys because a token named a key this
// process does not know, unless a reload that started after the caller
// arrived has already happened, or a kid miss caused a reload less than
// kidMissReloadInterval ago. It reports whether the key set may have changed.
func (km *KeyManager) reloadForUnknownKID(ctx context.Context) bool {
	seen := km.reloadStarts.Load()
	if err := acquire(ctx, km.reloadSem); err != nil {
		return false
	}
	defer release(km.reloadSem)
	if km.reloadStarts.Load() != seen {
		return true
	}
	now := km.opts.Clock.Now()
	if since := now.Sub(km.lastMissReload); !km.lastMissReload.IsZero() && since >= 0 && since < kidMissReloadInterval {
		return false
	}
	km.lastMissReload = now
	if err := km.reloadLocked(ctx); err != nil {
		km.opts.Logger.Warn("reloading signing keys for a token with an unknown kid failed", "err", err)
	}
	return true
}

// buildKeySet parses stored and computes effective times. Keys whose PEM is
// unchanged since prev are not parsed again.
func buildKeySet(stored []store.SigningKey, prev *keySet, maxTokenLifetime time.Duration) (*keySet, error) {
	var errs []error
	keys := make([]*managedKey, 0, len(stored))
	for _, sk := range stored {
		if old, ok := prev.byID[sk.ID]; ok && bytes.Equal(old.stored.PrivateKeyPEM, sk.PrivateKeyPEM) && old.stored.Algorithm == sk.Algorithm {
			mk := &managedKey{stored: sk, priv: old.priv, encHeader: old.encHeader}
			keys = append(keys, mk)
			continue
		}
		mk, err := loadKey(sk)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, mk)
	}
	slices.SortFunc(keys, func(a, b *managedKey) int {
		if c := a.stored.ActiveAt.Compare(b.stored.ActiveAt); c != 0 {
			return c
		}
		return compareStrings(a.stored.ID, b.stored.ID)
	})
	byID := make(map[string]*managedKey, len(keys))
	for i, mk := range keys {
		retire := mk.stored.RetireAt
		if i+1 < len(keys) {
			if next := keys[i+1].stored.ActiveAt; next.Before(retire) {
				retire = next
			}
		}
		expire := mk.stored.ExpireAt
		if e := retire.Add(maxTokenLifetime + KeyExpirySkew); e.Before(expire) {
			expire = e
		}
		mk.info = Key{
			ID:        mk.stored.ID,
			Algorithm: algES256,
			PublicKey: &mk.priv.PublicKey,
			CreatedAt: mk.stored.CreatedAt,
			ActiveAt:  mk.stored.ActiveAt,
			RetireAt:  retire,
			ExpireAt:  expire,
		}
		byID[mk.stored.ID] = mk
	}
	return &keySet{keys: keys, byID: byID}, errors.Join(errs...)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// loadKey parses and checks a stored key. Errors name the key ID only.
func loadKey(sk store.SigningKey) (*managedKey, error) {
	if sk.ID == "" {
		return nil, errors.New("a signing key has an empty ID")
	}
	if sk.Algorithm != algES256 {
		return nil, fmt.Errorf("signing key %s: algorithm %q is not supported (only %s)", sk.ID, sk.Algorithm, algES256)
	}
	if sk.ActiveAt.IsZero() || sk.RetireAt.IsZero() || sk.ExpireAt.IsZero() ||
		sk.RetireAt.Before(sk.ActiveAt) || sk.ExpireAt.Before(sk.RetireAt) {
		return nil, fmt.Errorf("signing key %s: ActiveAt <= RetireAt <= ExpireAt must hold and none may be zero", sk.ID)
	}
	block, rest := pem.Decode(sk.PrivateKeyPEM)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("signing key %s: PrivateKeyPEM is not a single PKCS#8 PEM block", sk.ID)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: PrivateKeyPEM does not hold a valid PKCS#8 key", sk.ID)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("signing key %s: PrivateKeyPEM does not hold a P-256 ECDSA key", sk.ID)
	}
	hdr, err := encodedHeader(sk.ID)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", sk.ID, err)
	}
	return &managedKey{stored: sk, priv: priv, encHeader: hdr}, nil
}

// signingKey returns the key to sign with at now: the last key (by ActiveAt)
// that is active at now, if now is before its RetireAt.
func (s *keySet) signingKey(now time.Time) *managedKey {
	for i := len(s.keys) - 1; i >= 0; i-- {
		mk := s.keys[i]
		if mk.info.ActiveAt.After(now) {
			continue
		}
		// The newest active key goes on signing a little past its RetireAt
		// when no successor is there yet: a late rotation (the chores
		// replica died and its Lease has not been taken over) must not make
		// every replica create a key of its own, which the others would not
		// know yet. Its tokens still expire before the key does (ExpireAt
		// is RetireAt + MaxTokenLifetime + KeyExpirySkew).
		if now.Before(mk.info.RetireAt.Add(lateRotationGrace)) {
			return mk
		}
		return nil
	}
	return nil
}

// lateRotationGrace is how long past its RetireAt the newest key signs while
// no successor has been made: well over a chores Lease's failover (15 s),
// well under KeyExpirySkew.
const lateRotationGrace = 2 * time.Minute

// verificationKey returns the key with ID kid if it verifies at now.
func (s *keySet) verificationKey(kid string, now time.Time) *managedKey {
	mk, ok := s.byID[kid]
	if !ok || !now.Before(mk.info.ExpireAt) {
		return nil
	}
	return mk
}

// verificationKey looks kid up, reloading from the store once (rate-limited)
// if it is unknown, so that a key another replica has just made is found.
func (km *KeyManager) verificationKey(ctx context.Context, kid string, now time.Time) *managedKey {
	if mk := km.set.Load().verificationKey(kid, now); mk != nil {
		return mk
	}
	if _, known := km.set.Load().byID[kid]; known || !plausibleKID(kid) {
		return nil
	}
	if !km.reloadForUnknownKID(ctx) {
		return nil
	}
	return km.set.Load().verificationKey(kid, now)
}

// plausibleKID reports whether kid could be one of ours (an RFC 7638
// thumbprint: 43 base64url characters), so that garbage does not cause store
// reads at all.
func plausibleKID(kid string) bool {
	if len(kid) != 43 {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ActiveKey returns the key that signs now, or ErrNoSigningKey.
func (km *KeyManager) ActiveKey() (Key, error) {
	mk := km.set.Load().signingKey(km.opts.Clock.Now())
	if mk == nil {
		return Key{}, ErrNoSigningKey
	}
	return mk.info, nil
}

// PublicKeys returns the keys that verify tokens now, oldest first.
func (km *KeyManager) PublicKeys() []Key {
	now := km.opts.Clock.Now()
	set := km.set.Load()
	out := make([]Key, 0, len(set.keys))
	for _, mk := range set.keys {
		if now.Before(mk.info.ExpireAt) {
			out = append(out, mk.info)
		}
	}
	return out
}

// jwk is a public key in a JSON Web Key Set.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the JSON Web Key Set (RFC 7517) of the keys that verify now.
func (km *KeyManager) JWKS() []byte {
	keys := km.PublicKeys()
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		x, y, err := coordinates(k.PublicKey)
		if err != nil {
			continue // cannot happen for a key that parsed
		}
		set.Keys = append(set.Keys, jwk{Kty: "EC", Crv: "P-256", X: x, Y: y, Kid: k.ID, Alg: algES256, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	return b
}

// coordinates returns the base64url X and Y of a P-256 public key.
func coordinates(pub *ecdsa.PublicKey) (x, y string, err error) {
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return "", "", err
	}
	if len(b) != 65 || b[0] != 4 {
		return "", "", errors.New("not an uncompressed P-256 point")
	}
	return b64.EncodeToString(b[1:33]), b64.EncodeToString(b[33:]), nil
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of pub, base64url.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	x, y, err := coordinates(pub)
	if err != nil {
		return "", err
	}
	// Required members only, in lexicographic order, no whitespace.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return b64.EncodeToString(sum[:]), nil
}

// Ensure makes sure there is a key to sign with, creating one if there is
// none (or the active one is past its RetireAt). It first re-lists the store,
// so a key another replica has made meanwhile is used rather than replaced.
// Replicas racing through Ensure may still each create a key; that is
// harmless, because every replica picks the same active key from the same
// list (latest ActiveAt, then highest ID) and the others retire at once.
func (km *KeyManager) Ensure(ctx context.Context) error {
	_, err := km.ensureSigningKey(ctx)
	return err
}

// ensureSigningKey returns the key to sign with, loading or creating one if
// needed.
func (km *KeyManager) ensureSigningKey(ctx context.Context) (*managedKey, error) {
	if mk := km.set.Load().signingKey(km.opts.Clock.Now()); mk != nil {
		return mk, nil
	}
	if err := acquire(ctx, km.rotateSem); err != nil {
		return nil, fmt.Errorf("waiting to create a signing key: %w", err)
	}
	defer release(km.rotateSem)
	// Another goroutine or replica may have made one meanwhile.
	reloadErr := km.Reload(ctx)
	if mk := km.set.Load().signingKey(km.opts.Clock.Now()); mk != nil {
		return mk, nil
	}
	if reloadErr != nil && len(km.set.Load().keys) == 0 {
		// Creating a key in a store we cannot list could bury keys we do not
		// know about; try again later instead.
		return nil, reloadErr
	}
	if err := km.createKey(ctx, km.opts.Clock.Now()); err != nil {
		return nil, err
	}
	if mk := km.set.Load().signingKey(km.opts.Clock.Now()); mk != nil {
		return mk, nil
	}
	return nil, ErrNoSigningKey
}

// Rotate creates a key that becomes the active key at once. The previous
// active key retires now and keeps verifying for MaxTokenLifetime +
// KeyExpirySkew.
func (km *KeyManager) Rotate(ctx context.Context) error {
	if err := acquire(ctx, km.rotateSem); err != nil {
		return fmt.Errorf("waiting to rotate signing keys: %w", err)
	}
	defer release(km.rotateSem)
	return km.createKey(ctx, km.opts.Clock.Now())
}

// createKey generates, stores and loads a new key that signs from activeAt.
// The caller holds rotateSem.
func (km *KeyManager) createKey(ctx context.Context, activeAt time.Time) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating a signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encoding a signing key: %w", err)
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return fmt.Errorf("computing a signing key's ID: %w", err)
	}
	now := km.opts.Clock.Now()
	if activeAt.Before(now) {
		activeAt = now
	}
	retire := activeAt.Add(km.opts.RotationPeriod)
	sk := store.SigningKey{
		ID:            kid,
		Algorithm:     algES256,
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		CreatedAt:     now,
		ActiveAt:      activeAt,
		RetireAt:      retire,
		ExpireAt:      retire.Add(km.opts.MaxTokenLifetime + KeyExpirySkew),
	}
	if err := km.st.CreateSigningKey(ctx, sk); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			// Only possible if someone stored this very key; the store
			// has it either way, so re-list.
			return km.Reload(ctx)
		}
		return fmt.Errorf("storing a new signing key: %w", err)
	}
	if err := km.Reload(ctx); err != nil {
		// The key is stored; make sure this process uses it even though the
		// listing failed. Run's next reload corrects anything else.
		if err := acquire(ctx, km.reloadSem); err != nil {
			return fmt.Errorf("loading the new signing key %s: %w", kid, err)
		}
		defer release(km.reloadSem)
		cur := km.set.Load()
		stored := make([]store.SigningKey, 0, len(cur.keys)+1)
		for _, mk := range cur.keys {
			stored = append(stored, mk.stored)
		}
		stored = append(stored, sk)
		set, _ := buildKeySet(stored, cur, km.opts.MaxTokenLifetime)
		km.set.Store(set)
	}
	return nil
}

// rotationDue reports whether a new key should be made at now: there is no
// key to sign with, or the one signing retires (or has signed for
// RotationPeriod) within the time a new key needs to reach every replica
// (ReloadInterval + PublishAhead), and no newer key is already waiting to
// take over.
func (km *KeyManager) rotationDue(now time.Time) bool {
	set := km.set.Load()
	mk := set.signingKey(now)
	if mk == nil {
		return true
	}
	for _, k := range set.keys {
		if k.info.ActiveAt.After(now) && now.Before(k.info.RetireAt) {
			return false // a rotation is already under way
		}
	}
	end := mk.info.RetireAt
	if e := mk.info.ActiveAt.Add(km.opts.RotationPeriod); e.Before(end) {
		end = e
	}
	return !now.Before(end.Add(-(km.opts.ReloadInterval + km.opts.PublishAhead)))
}

// rotateIfDue rotates when rotationDue, after a random delay (so that
// replicas sharing a store rarely rotate at once) and a reload that shows no
// other replica has rotated meanwhile.
func (km *KeyManager) rotateIfDue(ctx context.Context) error {
	if !km.rotationDue(km.opts.Clock.Now()) {
		return nil
	}
	if jitter := km.opts.ReloadInterval / 2; jitter > 0 {
		t := time.NewTimer(mathrand.N(jitter))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if err := acquire(ctx, km.rotateSem); err != nil {
		return err
	}
	defer release(km.rotateSem)
	if err := km.Reload(ctx); err != nil {
		return err
	}
	now := km.opts.Clock.Now()
	if !km.rotationDue(now) {
		return nil
	}
	// Signing starts when the current key would have been replaced, or
	// PublishAhead from now, whichever is later: by then every replica has
	// reloaded and publishes the new key. With no key to sign with at all,
	// at once.
	activeAt := now
	if mk := km.set.Load().signingKey(now); mk != nil {
		activeAt = now.Add(km.opts.PublishAhead)
	}
	return km.createKey(ctx, activeAt)
}

// collectGarbage deletes keys whose stored ExpireAt has passed. It uses the
// stored time, not the effective one, so that replicas configured
// differently by mistake never delete a key another still needs earlier than
// the store's own garbage collection would.
func (km *KeyManager) collectGarbage(ctx context.Context) (int, error) {
	now := km.opts.Clock.Now()
	var errs []error
	n := 0
	for _, mk := range km.set.Load().keys {
		if now.Before(mk.stored.ExpireAt) {
			continue
		}
		err := km.st.DeleteSigningKey(ctx, mk.stored.ID)
		switch {
		case err == nil:
			n++
		case errors.Is(err, store.ErrNotFound):
		default:
			errs = append(errs, fmt.Errorf("deleting expired signing key %s: %w", mk.stored.ID, err))
		}
	}
	if n > 0 {
		if err := km.Reload(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// Run reloads keys every ReloadInterval, rotates the active key when it is
// due and deletes expired keys, until ctx is done. Errors are logged and
// retried at the next interval.
func (km *KeyManager) Run(ctx context.Context) {
	ticker := time.NewTicker(km.opts.ReloadInterval)
	defer ticker.Stop()
	for {
		km.runOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (km *KeyManager) runOnce(ctx context.Context) {
	log := km.opts.Logger
	if err := km.Reload(ctx); err != nil && ctx.Err() == nil {
		log.Warn("reloading signing keys failed", "err", err)
	}
	if !km.opts.Chores() {
		return // another replica rotates and collects
	}
	if err := km.rotateIfDue(ctx); err != nil && ctx.Err() == nil {
		log.Error("rotating signing keys failed", "err", err)
	}
	if _, err := km.collectGarbage(ctx); err != nil && ctx.Err() == nil {
		log.Warn("deleting expired signing keys failed", "err", err)
	}
}
