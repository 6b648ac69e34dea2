package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
)

// mountSmallTmpfs mounts a tmpfs of size bytes, where the test may.
func mountSmallTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN), so a full file system cannot be made: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A full file system fails the writes that need more room with an error
// that is a store.ErrUnavailable (servers answer 503) and says what to do;
// reads keep working, the file keeps what was committed, and writes work
// again, without reopening, once there is room.
func TestAFullFileSystemFailsWritesClearlyAndKeepsTheFile(t *testing.T) {
	dir := mountSmallTmpfs(t, 1<<20)
	path := filepath.Join(dir, "state.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	big := strings.Repeat("x", 4000)
	session := func(id string) store.Session {
		now := time.Now()
		return store.Session{ID: id, Username: big, UpstreamRefreshToken: big, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	written := 0
	var werr error
	for i := range 1000 {
		if werr = s.CreateSession(ctx, session(fmt.Sprintf("s%04d", i))); werr != nil {
			break
		}
		written++
	}
	switch {
	case werr == nil:
		t.Fatal("1,000 sessions of 8 KB fit in a 1 MiB file system")
	case !errors.Is(werr, store.ErrUnavailable):
		t.Errorf("the write failed with %v, which is not a store.ErrUnavailable", werr)
	case !strings.Contains(werr.Error(), path) || !strings.Contains(werr.Error(), "Free space"):
		t.Errorf("the error does not name the file and say what to do: %v", werr)
	}
	if err := s.Revoke(ctx, store.Revocation{ID: "r-" + big, ExpiresAt: time.Now().Add(time.Hour)}); err == nil {
		if revoked, _ := s.IsRevoked(ctx, "r-"+big); !revoked {
			t.Error("a revocation that was written is not in effect")
		}
	} else if revoked, _ := s.IsRevoked(ctx, "r-"+big); revoked {
		t.Error("a revocation that failed to be written is in effect in memory")
	}
	got, err := s.ListSessions(ctx)
	if err != nil || len(got) != written {
		t.Errorf("reading while full: %d sessions, %v; want %d", len(got), err, written)
	}

	if err := os.WriteFile(filepath.Join(dir, "probe"), []byte("x"), 0o600); err == nil {
		t.Fatal("the file system is not full")
	}
	// Deleting sessions frees pages inside the file, so later writes fit.
	for i := range 10 {
		if err := s.DeleteSession(ctx, fmt.Sprintf("s%04d", i)); err != nil {
			t.Fatalf("deleting a session to make room: %v", err)
		}
	}
	if err := s.CreateSession(ctx, session("after")); err != nil {
		t.Errorf("a write once there is room: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = bolt.Open(path, bolt.Options{}) // validates the file
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	got, err = s.ListSessions(ctx)
	if err != nil || len(got) != written-10+1 {
		t.Errorf("after reopening: %d sessions, %v; want %d", len(got), err, written-10+1)
	}
}

// A state file on a read-only file system is refused at start with a
// message that says so and what to do.
func TestOpenOnAReadOnlyFileSystemSaysSo(t *testing.T) {
	dir := mountSmallTmpfs(t, 1<<20)
	path := filepath.Join(dir, "state.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	_, err = bolt.Open(path, bolt.Options{})
	if err == nil || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), "store.path") {
		t.Errorf("Open on a read-only file system: %v", err)
	}
}
