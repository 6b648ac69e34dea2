package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
)

// gcStore opens a store holding live sessions and one, "ended", idle past
// its timeout at now.
func gcStore(t *testing.T, now time.Time) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	mk := func(id string, lastUsed time.Time) store.Session {
		return store.Session{ID: id, Username: "alice@example.com", CreatedAt: lastUsed, LastUsedAt: lastUsed,
			IdleTimeout: time.Hour, ExpiresAt: now.Add(24 * time.Hour)}
	}
	for i := range 300 {
		if err := s.CreateSession(ctx, mk(fmt.Sprintf("live-%03d", i), now)); err != nil {
			t.Fatal(err)
		}
	}
	// Free pages for the writes made during the scan: a write that had to
	// grow the file's mapping would wait for every reader, the scan too.
	for i := 20; i < 300; i++ {
		if err := s.DeleteSession(ctx, fmt.Sprintf("live-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, mk("ended", now.Add(-2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	return s
}

// touchDuringScan makes GarbageCollect use session id again (LastUsedAt =
// now) from another goroutine while it scans, and fails the test if that
// write waits for the collection.
func touchDuringScan(t *testing.T, s *Store, id string, now time.Time) {
	t.Helper()
	testHookCollectScanned = func(kind string) {
		if kind != "session" {
			return
		}
		done := make(chan error, 1)
		go func() {
			_, err := s.UpdateSession(context.Background(), id, func(sess *store.Session) error {
				sess.LastUsedAt = now
				return nil
			})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("UpdateSession during GarbageCollect: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("UpdateSession waited for GarbageCollect to finish")
		}
	}
	t.Cleanup(func() { testHookCollectScanned = nil })
}

func TestGarbageCollectKeepsASessionUsedAgainSinceItsScan(t *testing.T) {
	now := time.Now()
	s := gcStore(t, now)
	ctx := context.Background()
	// After the scan found "ended" and before the deletion, a refresh uses
	// it.
	touchDuringScan(t, s, "ended", now)
	n, err := s.GarbageCollect(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("GarbageCollect deleted %d, want 0: the session was used again before the deletion", n)
	}
	if _, err := s.GetSession(ctx, "ended"); err != nil {
		t.Errorf("the session used again since the scan was deleted: %v", err)
	}
}

func TestGarbageCollectDoesNotHoldTheWriterWhileScanning(t *testing.T) {
	now := time.Now()
	s := gcStore(t, now)
	ctx := context.Background()
	// A write made while the collection scans must not wait for it: with
	// the scan inside the write transaction, every refresh and login waited
	// for a scan of every session.
	touchDuringScan(t, s, "live-000", now)
	n, err := s.GarbageCollect(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("GarbageCollect = %d, %v; want the one ended session", n, err)
	}
	if _, err := s.GetSession(ctx, "ended"); err == nil {
		t.Error("the ended session is still there")
	}
}

func TestGarbageCollectScansInChunks(t *testing.T) {
	defer func(n int) { collectChunk = n }(collectChunk)
	collectChunk = 3
	now := time.Now()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// Ended: the first, either side of a chunk's end, and the last.
	ended := map[int]bool{0: true, 2: true, 3: true, 7: true, 10: true}
	for i := range 11 {
		used := now
		if ended[i] {
			used = now.Add(-2 * time.Hour)
		}
		if err := s.CreateSession(ctx, store.Session{ID: fmt.Sprintf("s-%02d", i), CreatedAt: used, LastUsedAt: used,
			IdleTimeout: time.Hour, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	chunks := 0
	testHookCollectScanned = func(kind string) {
		if kind == "session" {
			chunks++
		}
	}
	defer func() { testHookCollectScanned = nil }()
	n, err := s.GarbageCollect(ctx, now)
	if err != nil || n != len(ended) {
		t.Fatalf("GarbageCollect = %d, %v; want %d", n, err, len(ended))
	}
	if chunks != 4 {
		t.Errorf("the 11 sessions were read in %d transactions, want 4 of at most 3", chunks)
	}
	left, err := s.ListSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 11-len(ended) {
		t.Errorf("%d sessions left, want %d", len(left), 11-len(ended))
	}
	for _, sess := range left {
		var i int
		if _, err := fmt.Sscanf(sess.ID, "s-%d", &i); err != nil || ended[i] {
			t.Errorf("session %s was kept", sess.ID)
		}
	}
}
