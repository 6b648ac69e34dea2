package bolt_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
)

// The policy lists grants at every review and proxied request: once read,
// they come from memory (no transaction, no decoding, no allocation when
// there are none), and every change is seen by the next list.
func TestListGrantsFromMemoryFollowsEveryChange(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	ids := func() []string {
		t.Helper()
		gs, err := s.ListGrants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, g := range gs {
			out = append(out, g.ID)
		}
		return out
	}
	if got := ids(); len(got) != 0 {
		t.Fatalf("grants of a new store: %v", got)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.ListGrants(ctx) }); n != 0 {
		t.Errorf("listing no grants allocates %v times, want 0 (a read transaction per list)", n)
	}

	now := time.Now()
	grant := func(id string, expires time.Time) store.Grant {
		return store.Grant{ID: id, Username: "alice", Cluster: "c1", Groups: []string{"oncall"}, CreatedAt: now, NotBefore: now, ExpiresAt: expires}
	}
	for _, g := range []store.Grant{grant("g1", now.Add(time.Hour)), grant("g2", now.Add(time.Minute))} {
		if err := s.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		_ = ids() // cached again after each change
	}
	if got := ids(); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Fatalf("after two creations: %v", got)
	}

	// A caller changing what it got changes nothing in the store.
	gs, _ := s.ListGrants(ctx)
	gs[0].Groups[0] = "system:masters"
	gs[0].ID = "changed"
	if again, _ := s.ListGrants(ctx); again[0].ID != "g1" || again[0].Groups[0] != "oncall" {
		t.Fatalf("a caller's change reached the store's grants: %+v", again[0])
	}

	if err := s.DeleteGrant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, []string{"g2"}) {
		t.Fatalf("after deleting g1: %v", got)
	}
	if _, err := s.GarbageCollect(ctx, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := ids(); len(got) != 0 {
		t.Fatalf("after collecting the expired g2: %v", got)
	}

	// A reopened file lists what was written.
	if err := s.CreateGrant(ctx, grant("g3", now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.ListGrants(ctx); err == nil {
		t.Error("ListGrants on a closed store succeeded")
	}
	s2 := open(t, s.Path())
	defer s2.Close()
	if gs, err := s2.ListGrants(ctx); err != nil || len(gs) != 1 || gs[0].ID != "g3" {
		t.Fatalf("after reopening: %v %v", gs, err)
	}
}
