package storetest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
)

// RunPersistence checks a file-backed backend: that data survives closing and
// reopening, and that every file it cannot use is a clear error rather than a
// hang or a silent reset to an empty store.
//
// open opens (creating if needed) the store at path. It must give up on a
// file locked by another open store within a few seconds (for bbolt, set
// Options.Timeout to about a second).
//
// Error messages are checked for what an operator needs: every one must name
// the file, and:
//   - a corrupt file's must say what to do, using one of the words "backup",
//     "restore", "move" or "remove";
//   - an unreadable file's must mention "permission";
//   - a directory's must mention "directory";
//   - a locked file's must say it is "in use".
func RunPersistence(t *testing.T, open func(t *testing.T, path string) (store.Store, error)) {
	mustOpen := func(t *testing.T, path string) store.Store {
		t.Helper()
		s, err := open(t, path)
		if err != nil {
			t.Fatalf("opening %s: %v", path, err)
		}
		if s == nil {
			t.Fatalf("opening %s returned neither a store nor an error", path)
		}
		return s
	}
	mustClose := func(t *testing.T, s store.Store) {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	// openFails opens path, expecting an error; it fails the test if open
	// succeeds or takes longer than a generous bound (a hang).
	openFails := func(t *testing.T, path string) error {
		t.Helper()
		type result struct {
			s   store.Store
			err error
		}
		done := make(chan result, 1)
		go func() {
			s, err := open(t, path)
			done <- result{s, err}
		}()
		select {
		case r := <-done:
			if r.err == nil {
				if r.s != nil {
					_ = r.s.Close()
				}
				t.Fatalf("opening %s succeeded, want an error", path)
			}
			return r.err
		case <-time.After(20 * time.Second):
			t.Fatalf("opening %s did not return within 20s: it hangs instead of failing", path)
			return nil
		}
	}
	ctx := context.Background()

	t.Run("a new store starts empty, in a directory created for it if needed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "does", "not", "exist", "state.db")
		s := mustOpen(t, path)
		defer mustClose(t, s)
		assertKeys(t, s)
		assertSessions(t, s)
		assertRevocations(t, s)
		assertGrants(t, s)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("the store file was not created: %v", err)
		}
	})

	runReopen(t, func(t *testing.T) string { return filepath.Join(t.TempDir(), "state.db") }, mustOpen, mustClose)

	// validFile returns the bytes of a closed store holding some data.
	validFile := func(t *testing.T) []byte {
		t.Helper()
		path := filepath.Join(t.TempDir(), "valid.db")
		s := mustOpen(t, path)
		for i := range 200 {
			must(t, "CreateSession", s.CreateSession(ctx, session(fmt.Sprintf("sess-%03d", i))))
		}
		must(t, "Revoke", s.Revoke(ctx, revocation("sess-000")))
		mustClose(t, s)
		data, err := os.ReadFile(path)
		must(t, "reading the store file", err)
		return data
	}

	t.Run("a corrupt file is an error that names it and says what to do, and it is left untouched", func(t *testing.T) {
		garbage := make([]byte, 64<<10)
		rnd := rand.New(rand.NewChaCha8([32]byte{'p', 'o', 'r', 't', 'c', 'u', 'l', 'l', 'i', 's'}))
		for i := range garbage {
			garbage[i] = byte(rnd.UintN(256))
		}
		valid := validFile(t)
		for _, tc := range []struct {
			name    string
			content []byte
		}{
			{"garbage bytes", garbage},
			{"a few bytes of text", []byte("this is not a database\n")},
			{"a file of zeros", make([]byte, 64<<10)},
			{"a store file truncated to half its size", valid[:len(valid)/2]},
			{"a store file truncated to its first 100 bytes", valid[:100]},
		} {
			t.Run("when it holds "+tc.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "state.db")
				if err := os.WriteFile(path, tc.content, 0o600); err != nil {
					t.Fatal(err)
				}
				err := openFails(t, path)
				t.Logf("opening failed with: %v", err)
				assertMessage(t, err, path, "backup", "restore", "move", "remove")
				assertUntouched(t, path, tc.content, 0o600)
			})
		}
	})

	t.Run("an unreadable file is an error that names it and mentions permissions", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		content := validFile(t)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(path, 0o600) })
		if f, err := os.Open(path); err == nil {
			_ = f.Close()
			t.Skip("a file with mode 000 is still readable here (running as root?), so this case cannot be tested")
		}
		err := openFails(t, path)
		t.Logf("opening failed with: %v", err)
		assertMessage(t, err, path, "permission")
		assertUntouched(t, path, nil, 0)
	})

	t.Run("a directory given as the path is an error that names it and says it is a directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		err := openFails(t, path)
		t.Logf("opening failed with: %v", err)
		assertMessage(t, err, path, "directory")
		entries, _ := os.ReadDir(path)
		if len(entries) != 0 {
			t.Errorf("opening a directory created %d entries in it", len(entries))
		}
	})

	t.Run("a file in use by another open store is an error, not a hang", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		first := mustOpen(t, path)
		must(t, "CreateSession", first.CreateSession(ctx, session("sess-a")))
		start := time.Now()
		err := openFails(t, path)
		t.Logf("the second open failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		assertMessage(t, err, path, "in use")

		// The first store is unharmed and, once closed, releases the file.
		if _, err := first.GetSession(ctx, "sess-a"); err != nil {
			t.Fatalf("the first store broke when a second open failed: %v", err)
		}
		mustClose(t, first)
		again := mustOpen(t, path)
		defer mustClose(t, again)
		if _, err := again.GetSession(ctx, "sess-a"); err != nil {
			t.Fatalf("GetSession after reopening: %v", err)
		}
	})
}

func assertMessage(t *testing.T, err error, path string, anyOf ...string) {
	t.Helper()
	msg := err.Error()
	if !strings.Contains(msg, path) {
		t.Errorf("the error does not name the file %s: %q", path, msg)
	}
	lower := strings.ToLower(msg)
	for _, w := range anyOf {
		if strings.Contains(lower, w) {
			return
		}
	}
	t.Errorf("the error does not say %q: %q", strings.Join(anyOf, `" or "`), msg)
}

// assertUntouched checks that the file at path still has content (if not
// nil) and mode perm.
func assertUntouched(t *testing.T, path string, content []byte, perm os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
	if info.Mode().Perm() != perm {
		t.Errorf("the file's mode changed from %v to %v", perm, info.Mode().Perm())
	}
	if content == nil {
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the file back: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("the file was modified (%d bytes before, %d after)", len(content), len(got))
	}
}

// RunReopen checks a backend that is not a file (e.g. one on the Kubernetes
// API): that data written through one store is there, unchanged, in a new
// store opened on the same location after the first was closed, including
// the revocation cache and garbage collection. newLocation returns a fresh,
// empty location (for kubernetes, a new namespace); open opens a store on a
// location.
func RunReopen(t *testing.T, newLocation func(t *testing.T) string, open func(t *testing.T, location string) (store.Store, error)) {
	mustOpen := func(t *testing.T, location string) store.Store {
		t.Helper()
		s, err := open(t, location)
		if err != nil {
			t.Fatalf("opening %s: %v", location, err)
		}
		return s
	}
	mustClose := func(t *testing.T, s store.Store) {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	runReopen(t, newLocation, mustOpen, mustClose)
}

func runReopen(t *testing.T, newLocation func(t *testing.T) string, mustOpen func(t *testing.T, path string) store.Store, mustClose func(t *testing.T, s store.Store)) {
	ctx := context.Background()
	t.Run("data survives closing and reopening", func(t *testing.T) {
		path := newLocation(t)
		s := mustOpen(t, path)
		keys := []store.SigningKey{signingKey("key-a"), signingKey("key-b")}
		sessions := []store.Session{session("sess-a"), session("sess-b"), session("sess-c")}
		revs := []store.Revocation{revocation("sess-x"), revocation("jti-y")}
		grants := []store.Grant{grant("grant-a"), grant("grant-b")}
		for _, k := range keys {
			must(t, "CreateSigningKey", s.CreateSigningKey(ctx, k))
		}
		for _, sess := range sessions {
			must(t, "CreateSession", s.CreateSession(ctx, sess))
		}
		for _, r := range revs {
			must(t, "Revoke", s.Revoke(ctx, r))
		}
		for _, g := range grants {
			must(t, "CreateGrant", s.CreateGrant(ctx, g))
		}
		updated, err := s.UpdateSession(ctx, "sess-b", func(sess *store.Session) error {
			sess.RefreshTokenHash = []byte{4, 5, 6}
			sess.LastUsedAt = base.Add(time.Hour)
			return nil
		})
		must(t, "UpdateSession", err)
		must(t, "DeleteSession", s.DeleteSession(ctx, "sess-c"))
		must(t, "DeleteGrant", s.DeleteGrant(ctx, "grant-b"))
		must(t, "DeleteSigningKey", s.DeleteSigningKey(ctx, "key-b"))
		mustClose(t, s)

		for round := range 2 {
			s = mustOpen(t, path)
			assertKeys(t, s, keys[0])
			assertSessions(t, s, sessions[0], updated)
			assertRevocations(t, s, revs...)
			assertGrants(t, s, grants[0])
			for _, tc := range []struct {
				ids  []string
				want bool
			}{{[]string{"sess-x"}, true}, {[]string{"sess-a", "jti-y"}, true}, {[]string{"sess-a", "jti-z"}, false}} {
				revoked, err := s.IsRevoked(ctx, tc.ids...)
				must(t, "IsRevoked", err)
				if revoked != tc.want {
					t.Errorf("after reopening %d time(s), IsRevoked(%q) = %v, want %v", round+1, tc.ids, revoked, tc.want)
				}
			}
			mustClose(t, s)
		}
	})

	t.Run("garbage collection survives closing and reopening", func(t *testing.T) {
		path := newLocation(t)
		s := mustOpen(t, path)
		old, live := revocation("old"), revocation("live")
		old.ExpiresAt, live.ExpiresAt = base, base.Add(time.Hour)
		must(t, "Revoke old", s.Revoke(ctx, old))
		must(t, "Revoke live", s.Revoke(ctx, live))
		n, err := s.GarbageCollect(ctx, base)
		must(t, "GarbageCollect", err)
		if n != 1 {
			t.Fatalf("GarbageCollect returned %d, want 1", n)
		}
		mustClose(t, s)
		s = mustOpen(t, path)
		defer mustClose(t, s)
		assertRevocations(t, s, live)
		if revoked, err := s.IsRevoked(ctx, "old"); err != nil || revoked {
			t.Fatalf("IsRevoked(old) after reopening = %v, %v; want false, nil", revoked, err)
		}
	})

}
