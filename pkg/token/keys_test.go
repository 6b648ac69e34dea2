package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
)

func TestNewKeyManagerDefaultsAndValidation(t *testing.T) {
	km, err := NewKeyManager(memory.New(), KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if km.opts.RotationPeriod != 24*time.Hour || km.opts.MaxTokenLifetime != 24*time.Hour || km.opts.ReloadInterval != 10*time.Second {
		t.Fatalf("defaults: %+v", km.opts)
	}
	for _, tc := range []struct {
		name string
		st   store.Store
		opts KeyOptions
	}{
		{"a nil store is refused", nil, KeyOptions{}},
		{"a negative lifetime is refused", memory.New(), KeyOptions{MaxTokenLifetime: -time.Hour}},
		{"a rotation period shorter than two reload intervals is refused", memory.New(), KeyOptions{RotationPeriod: 15 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewKeyManager(tc.st, tc.opts); err == nil {
				t.Fatal("NewKeyManager accepted it")
			}
		})
	}
}

func TestEnsure(t *testing.T) {
	ctx := context.Background()
	t.Run("Ensure creates one ES256 key in an empty store and then none", func(t *testing.T) {
		f := newFixture(t) // calls Ensure
		if err := f.km.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		keys, err := f.store.ListSigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 {
			t.Fatalf("%d keys in the store, want 1", len(keys))
		}
		k := keys[0]
		now := f.clock.Now()
		if k.Algorithm != "ES256" || !k.ActiveAt.Equal(now) || !k.RetireAt.Equal(now.Add(24*time.Hour)) ||
			!k.ExpireAt.Equal(now.Add(48*time.Hour+KeyExpirySkew)) {
			t.Fatalf("stored key %+v", k)
		}
		loaded, err := loadKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if want := independentThumbprint(t, &loaded.priv.PublicKey); k.ID != want {
			t.Fatalf("key ID %q is not the RFC 7638 thumbprint %q", k.ID, want)
		}
	})
	t.Run("two replicas racing through Ensure agree on the active key", func(t *testing.T) {
		for range 20 {
			st := memory.New()
			clock := newFakeClock()
			kms := make([]*KeyManager, 4)
			for i := range kms {
				kms[i], _ = NewKeyManager(st, KeyOptions{Clock: clock, Logger: quietLogger})
			}
			var wg sync.WaitGroup
			errs := make([]error, len(kms))
			for i, km := range kms {
				wg.Go(func() { errs[i] = km.Ensure(ctx) })
			}
			wg.Wait()
			var ids []string
			for i, km := range kms {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if err := km.Reload(ctx); err != nil {
					t.Fatal(err)
				}
				k, err := km.ActiveKey()
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, k.ID)
			}
			for _, id := range ids {
				if id != ids[0] {
					t.Fatalf("replicas disagree on the active key: %v", ids)
				}
			}
		}
	})
	t.Run("Ensure replaces an active key past its RetireAt", func(t *testing.T) {
		f := newFixture(t)
		old, _ := f.km.ActiveKey()
		f.clock.Step(25 * time.Hour)
		if _, err := f.km.ActiveKey(); !errors.Is(err, ErrNoSigningKey) {
			t.Fatalf("ActiveKey of a retired key: %v", err)
		}
		if err := f.km.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		k, err := f.km.ActiveKey()
		if err != nil || k.ID == old.ID {
			t.Fatalf("ActiveKey = %v, %v; want a new key", k.ID, err)
		}
	})
	t.Run("Ensure fails rather than create a key in a store it cannot list", func(t *testing.T) {
		st := memory.New()
		km, _ := NewKeyManager(st, KeyOptions{Logger: quietLogger})
		st.Close()
		if err := km.Ensure(ctx); err == nil {
			t.Fatal("Ensure succeeded on a closed store")
		}
	})
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	old, _ := f.km.ActiveKey()
	raw, _ := f.mint()
	// A token signed by the old key that outlives it, to find the key's end.
	p := f.wirePayload()
	p["exp"] = f.clock.Now().Add(72 * time.Hour).Unix()
	longLived := f.signRaw(p)

	f.clock.Step(time.Minute)
	rotatedAt := f.clock.Now()
	if err := f.km.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	active, err := f.km.ActiveKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the new key is active at once", func(t *testing.T) {
		if active.ID == old.ID || !active.ActiveAt.Equal(rotatedAt) {
			t.Fatalf("active key %s active at %v", active.ID, active.ActiveAt)
		}
		raw, _ := f.mint()
		got, err := f.ver.Verify(ctx, raw, testAudience)
		if err != nil {
			t.Fatal(err)
		}
		if kidOf(t, raw) != active.ID {
			t.Fatalf("minted with %s, want %s (%+v)", kidOf(t, raw), active.ID, got)
		}
	})
	t.Run("the old key retires now and expires MaxTokenLifetime plus skew later", func(t *testing.T) {
		var got *Key
		for _, k := range f.km.PublicKeys() {
			if k.ID == old.ID {
				got = &k
			}
		}
		if got == nil {
			t.Fatal("the old key left the public keys at rotation")
		}
		if !got.RetireAt.Equal(rotatedAt) || !got.ExpireAt.Equal(rotatedAt.Add(24*time.Hour+KeyExpirySkew)) {
			t.Fatalf("old key retires %v, expires %v", got.RetireAt, got.ExpireAt)
		}
	})
	t.Run("a token signed by the old key verifies until its own exp", func(t *testing.T) {
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
		f.clock.Step(time.Hour - 2*time.Minute) // 1 minute before exp
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the old key verifies until its ExpireAt and not after", func(t *testing.T) {
		end := rotatedAt.Add(24*time.Hour + KeyExpirySkew)
		f.clock.Step(end.Sub(f.clock.Now()) - time.Second)
		if _, err := f.ver.Verify(ctx, longLived, testAudience); err != nil {
			t.Fatalf("one second before ExpireAt: %v", err)
		}
		f.clock.Step(time.Second)
		if _, err := f.ver.Verify(ctx, longLived, testAudience); reasonOf(err) != ReasonUnknownKey {
			t.Fatalf("at ExpireAt: %v, want %q", err, ReasonUnknownKey)
		}
		for _, k := range f.km.PublicKeys() {
			if k.ID == old.ID {
				t.Fatal("an expired key is still published")
			}
		}
	})
	t.Run("garbage collection deletes the old key once its stored ExpireAt has passed", func(t *testing.T) {
		if n, err := f.km.collectGarbage(ctx); err != nil || n != 0 {
			t.Fatalf("collected %d, %v before the stored ExpireAt", n, err)
		}
		f.clock.Step(old.CreatedAt.Add(48*time.Hour + KeyExpirySkew).Sub(f.clock.Now()))
		if n, err := f.km.collectGarbage(ctx); err != nil || n != 1 {
			t.Fatalf("collected %d, %v; want 1", n, err)
		}
		keys, _ := f.store.ListSigningKeys(ctx)
		if len(keys) != 1 || keys[0].ID != active.ID {
			t.Fatalf("store holds %v", keys)
		}
	})
}

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	tok, reason := parseCompact(raw)
	if reason != "" {
		t.Fatal(reason)
	}
	return tok.kid
}

func TestReloadSkipsBadKeys(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	good, _ := f.km.ActiveKey()
	now := f.clock.Now()
	bad := []store.SigningKey{
		{ID: "not-pem", Algorithm: "ES256", PrivateKeyPEM: []byte("garbage"), ActiveAt: now, RetireAt: now, ExpireAt: now.Add(time.Hour)},
		{ID: "rsa", Algorithm: "RS256", PrivateKeyPEM: []byte("x"), ActiveAt: now, RetireAt: now, ExpireAt: now.Add(time.Hour)},
		{ID: "backwards", Algorithm: "ES256", PrivateKeyPEM: []byte("x"), ActiveAt: now, RetireAt: now.Add(-time.Hour), ExpireAt: now.Add(time.Hour)},
	}
	for _, k := range bad {
		if err := f.store.CreateSigningKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	err := f.km.Reload(ctx)
	if err == nil {
		t.Fatal("Reload reported nothing about unusable keys")
	}
	for _, k := range bad {
		if !strings.Contains(err.Error(), k.ID) {
			t.Errorf("the error does not name key %s: %v", k.ID, err)
		}
	}
	if strings.Contains(err.Error(), "garbage") {
		t.Errorf("the error shows key material: %v", err)
	}
	if k, err := f.km.ActiveKey(); err != nil || k.ID != good.ID {
		t.Fatalf("the good key was not kept: %v %v", k.ID, err)
	}
}

// independentThumbprint computes the RFC 7638 thumbprint another way than
// thumbprint does: encoding/json sorts map keys, which gives the required
// lexicographic member order.
func independentThumbprint(t *testing.T, pub *ecdsa.PublicKey) string {
	t.Helper()
	b, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(map[string]string{
		"kty": "EC",
		"crv": "P-256",
		"x":   base64.RawURLEncoding.EncodeToString(b[1:33]),
		"y":   base64.RawURLEncoding.EncodeToString(b[33:]),
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(j)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestJWKS(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.clock.Step(time.Second)
	if err := f.km.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(f.km.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	want := f.km.PublicKeys()
	if len(set.Keys) != 2 || len(want) != 2 {
		t.Fatalf("%d keys published, %d public keys, want 2", len(set.Keys), len(want))
	}
	for i, k := range set.Keys {
		t.Run(fmt.Sprintf("published key %d is its ES256 public key named by its thumbprint", i), func(t *testing.T) {
			if len(k) != 7 || k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["kid"] != want[i].ID {
				t.Fatalf("key JSON %v", k)
			}
			x, errX := base64.RawURLEncoding.DecodeString(k["x"].(string))
			y, errY := base64.RawURLEncoding.DecodeString(k["y"].(string))
			if errX != nil || errY != nil {
				t.Fatal(errX, errY)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				t.Fatal(err)
			}
			if !pub.Equal(want[i].PublicKey) {
				t.Fatal("the published key is not the key")
			}
			if tp := independentThumbprint(t, pub); k["kid"] != tp {
				t.Fatalf("kid %s, thumbprint %s", k["kid"], tp)
			}
		})
	}
}

func TestRunRotatesReloadsAndCollects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := newFakeClock()
	st := memory.New()
	opts := KeyOptions{RotationPeriod: time.Hour, MaxTokenLifetime: time.Hour, ReloadInterval: 5 * time.Millisecond, Clock: clock, Logger: quietLogger}
	a, err := NewKeyManager(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	// b does no chores: only the replica holding the chores Lease rotates.
	optsB := opts
	optsB.Chores = func() bool { return false }
	b, err := NewKeyManager(st, optsB)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := a.ActiveKey()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { a.Run(ctx) })
	wg.Go(func() { b.Run(ctx) })

	waitFor := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	publishes := func(km *KeyManager, id string) bool {
		for _, k := range km.PublicKeys() {
			if k.ID == id {
				return true
			}
		}
		return false
	}
	t.Run("a second replica loads the key the first made", func(t *testing.T) {
		waitFor(t, "replica b has the key", func() bool { k, err := b.ActiveKey(); return err == nil && k.ID == first.ID })
	})
	t.Run("a rotated key is published by every replica before any signs with it, and made once", func(t *testing.T) {
		clock.Step(time.Hour - time.Millisecond)
		var next string
		waitFor(t, "both replicas publish a new key", func() bool {
			keys, _ := st.ListSigningKeys(ctx)
			for _, k := range keys {
				if k.ID != first.ID {
					next = k.ID
				}
			}
			return next != "" && publishes(a, next) && publishes(b, next)
		})
		for name, km := range map[string]*KeyManager{"a": a, "b": b} {
			if k, err := km.ActiveKey(); err != nil || k.ID != first.ID {
				t.Fatalf("replica %s signs with %v (%v) before PublishAhead has passed, want the old key", name, k.ID, err)
			}
		}
		clock.Step(2 * opts.ReloadInterval)
		waitFor(t, "both replicas sign with the new key", func() bool {
			ka, errA := a.ActiveKey()
			kb, errB := b.ActiveKey()
			return errA == nil && errB == nil && ka.ID == next && kb.ID == next
		})
		keys, _ := st.ListSigningKeys(ctx)
		if len(keys) != 2 {
			t.Fatalf("%d keys after one scheduled rotation, want 2: only the chores replica rotates", len(keys))
		}
	})
	t.Run("Run deletes keys whose ExpireAt has passed", func(t *testing.T) {
		clock.Step(2*time.Hour + KeyExpirySkew)
		waitFor(t, "the first key is deleted", func() bool {
			keys, _ := st.ListSigningKeys(ctx)
			for _, k := range keys {
				if k.ID == first.ID {
					return false
				}
			}
			return true
		})
	})
}

// TestConcurrentRotationLosesNoVerification rotates keys 20 times while 8
// goroutines mint and verify fresh tokens; every valid token must verify.
func TestConcurrentRotationLosesNoVerification(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	km, err := NewKeyManager(st, KeyOptions{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	minter, _ := NewMinter(km, testIssuer, nil)
	ver, _ := NewVerifier(km, testIssuer, st, VerifierOptions{})
	var (
		stop      atomic.Bool
		verified  atomic.Int64
		rotations atomic.Int64
		wg        sync.WaitGroup
		failures  = make(chan error, 16)
	)
	const wantRotations = 20
	var rotator sync.WaitGroup
	rotator.Go(func() {
		for range wantRotations {
			time.Sleep(20 * time.Millisecond)
			if err := km.Rotate(ctx); err != nil {
				failures <- err
				return
			}
			rotations.Add(1)
		}
	})
	for g := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				c := Claims{Subject: "s", Username: fmt.Sprintf("user-%d-%d", g, i), Audience: testAudience, SessionID: "sid", Expiry: time.Now().Add(time.Minute)}
				raw, _, err := minter.Mint(ctx, c)
				if err != nil {
					failures <- err
					return
				}
				got, err := ver.Verify(ctx, raw, testAudience)
				if err != nil {
					failures <- fmt.Errorf("a fresh token failed verification during rotation: %w", err)
					return
				}
				if got.Username != c.Username {
					failures <- fmt.Errorf("verified %q, minted %q", got.Username, c.Username)
					return
				}
				verified.Add(1)
			}
		})
	}
	rotator.Wait()
	stop.Store(true)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	if rotations.Load() != wantRotations || verified.Load() < 50 {
		t.Fatalf("only %d rotations and %d verifications: the test did not exercise anything", rotations.Load(), verified.Load())
	}
	t.Logf("%d rotations, %d verifications", rotations.Load(), verified.Load())
}

func TestALateRotationDoesNotMakeEveryReplicaCreateAKey(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	st := memory.New()
	leader, err := NewKeyManager(st, KeyOptions{RotationPeriod: time.Hour, MaxTokenLifetime: time.Hour, Clock: clock, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := leader.ActiveKey()
	// The chores replica is gone: nobody rotates. Another replica keeps
	// signing with the retired key within the grace, and creates nothing.
	other, err := NewKeyManager(st, KeyOptions{RotationPeriod: time.Hour, MaxTokenLifetime: time.Hour, Clock: clock, Logger: quietLogger, Chores: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	clock.Step(time.Hour + lateRotationGrace/2)
	if err := other.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if k, err := other.ActiveKey(); err != nil || k.ID != first.ID {
		t.Fatalf("within the grace: signs with %v (%v), want the retired key %s", k.ID, err, first.ID)
	}
	if keys, _ := st.ListSigningKeys(ctx); len(keys) != 1 {
		t.Fatalf("%d keys: a replica without the chores made a key while the rotation was late", len(keys))
	}
}
