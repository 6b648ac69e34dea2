package token

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
)

const testIssuer = "https://portcullis.example.com"

var testAudience = []string{"cluster-a"}

func newFakeClock() *testingclock.FakeClock {
	return testingclock.NewFakeClock(time.Date(2031, 3, 14, 15, 9, 26, 0, time.UTC))
}

// countingStore counts ListSigningKeys calls.
type countingStore struct {
	store.Store
	lists atomic.Int64
}

func (s *countingStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	s.lists.Add(1)
	return s.Store.ListSigningKeys(ctx)
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is one Portcullis replica.
type fixture struct {
	t      testing.TB
	clock  *testingclock.FakeClock
	store  store.Store
	km     *KeyManager
	minter *Minter
	ver    *Verifier
	hits   atomic.Int64
	misses atomic.Int64
}

func newFixture(t testing.TB) *fixture {
	return newReplica(t, memory.New(), newFakeClock())
}

// newReplica returns a replica on st whose clock is clock.
func newReplica(t testing.TB, st store.Store, clock *testingclock.FakeClock) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: clock, store: st}
	var err error
	f.km, err = NewKeyManager(st, KeyOptions{Clock: clock, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.km.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.minter, err = NewMinter(f.km, testIssuer, clock)
	if err != nil {
		t.Fatal(err)
	}
	f.ver, err = NewVerifier(f.km, testIssuer, st, VerifierOptions{
		Clock:       clock,
		OnCacheHit:  func() { f.hits.Add(1) },
		OnCacheMiss: func() { f.misses.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) claims() Claims {
	return Claims{
		Subject:          "CgR1c2VyEgRsZGFw",
		Username:         "alice@example.com",
		UID:              "1234",
		Groups:           []string{"dev", "oncall"},
		Extra:            map[string][]string{"portcullis.dev/login": {"oidc"}},
		Audience:         testAudience,
		SessionID:        "session-1",
		IdentityProvider: "corp",
		Email:            "alice@example.com",
		Expiry:           f.clock.Now().Add(time.Hour),
	}
}

func (f *fixture) mint() (string, Claims) {
	f.t.Helper()
	raw, c, err := f.minter.Mint(context.Background(), f.claims())
	if err != nil {
		f.t.Fatal(err)
	}
	return raw, c
}

// signRaw signs an arbitrary payload with the replica's active key, bypassing
// Minter's checks, to build tokens Minter would never make.
func (f *fixture) signRaw(payload any) string {
	f.t.Helper()
	mk := f.km.set.Load().signingKey(f.clock.Now())
	if mk == nil {
		f.t.Fatal("no signing key")
	}
	b, err := json.Marshal(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := signCompact(mk.priv, mk.encHeader, b)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// wirePayload returns a payload that would verify, as a map to be altered.
func (f *fixture) wirePayload() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss":      testIssuer,
		"sub":      "subject",
		"aud":      testAudience,
		"iat":      now,
		"nbf":      now,
		"exp":      now + 3600,
		"jti":      "token-id",
		"username": "alice",
	}
}

func reasonOf(err error) string {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return ""
}
