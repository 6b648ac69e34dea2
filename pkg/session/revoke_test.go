package session

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/pkg/store/memory"
)

// A reload lowers tokens.maxLifetime from 24h to 1h while the minter keeps
// minting 24h tokens (a change of tokens needs a restart): revocations must
// still outlive every token the minter issues.
func TestRevocationsOutliveTheMintersLongestTokenAfterAReloadLowersTheMaximum(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	var live atomic.Int64
	live.Store(int64(24 * time.Hour))
	settings := func() Settings {
		return Settings{IdleTimeout: 48 * time.Hour, MaxLifetime: 72 * time.Hour, MaxTokenLifetime: time.Duration(live.Load())}
	}
	const minterMax = 24 * time.Hour
	m := NewManager(st, KeepingRevocationsFor(settings, minterMax), clk)
	s, _, err := m.Create(ctx, User{Username: "alice"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	live.Store(int64(time.Hour)) // the reload
	if err := m.End(ctx, s, "logout", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.RevokeTokenID(ctx, "jti-1", "leaked", "admin"); err != nil {
		t.Fatal(err)
	}
	revs, err := st.ListRevocations(ctx)
	if err != nil || len(revs) != 2 {
		t.Fatalf("revocations %+v, %v", revs, err)
	}
	for _, r := range revs {
		if min := clk.Now().Add(minterMax); r.ExpiresAt.Before(min) {
			t.Errorf("revocation of %s kept until %v, before a token minted now could expire (%v)", r.ID, r.ExpiresAt, min)
		}
	}
	// GC at the lowered maximum's horizon keeps them.
	clk.Step(2 * time.Hour)
	if _, err := st.GarbageCollect(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if revoked, _ := st.IsRevoked(ctx, "jti-1"); !revoked {
		t.Error("the token's revocation was collected while the token could still be valid")
	}
}

func TestRevokeTokenID_KeepsTheRevocationAsLongAsATokenCanLive(t *testing.T) {
	m, clk, st := newManager(t)
	r, err := m.RevokeTokenID(context.Background(), "abc", "leaked", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(time.Hour + revocationSkew); !r.ExpiresAt.Equal(want) || r.RevokedBy != "admin" || r.Reason != "leaked" {
		t.Fatalf("revocation %+v, want kept until %v", r, want)
	}
	if revoked, _ := st.IsRevoked(context.Background(), "abc"); !revoked {
		t.Fatal("not revoked")
	}
	if _, err := m.RevokeTokenID(context.Background(), "", "x", "admin"); err == nil {
		t.Fatal("an empty token ID was accepted")
	}
}
