package bolt_test

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

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
	"portcullis.dev/portcullis/pkg/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestPersistence(t *testing.T) {
	storetest.RunPersistence(t, func(t *testing.T, path string) (store.Store, error) {
		s, err := bolt.Open(path, bolt.Options{Timeout: time.Second})
		if err != nil {
			return nil, err // not a typed nil in an interface
		}
		return s, nil
	})
}

func open(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// craft writes a bbolt file at path by running fn in a write transaction.
func craft(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// storeWithData creates a closed store at path holding a few objects.
func storeWithData(t *testing.T, path string) {
	t.Helper()
	s := open(t, path)
	ctx := context.Background()
	for i := range 50 {
		id := fmt.Sprintf("sess-%02d", i)
		sess := store.Session{ID: id, Username: "u", RefreshTokenHash: []byte{1, 2}, UpstreamRefreshToken: "secret-" + id, ExpiresAt: time.Now().Add(time.Hour)}
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(ctx, store.Revocation{ID: "jti-1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenRefusesFilesItCannotUnderstand(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prepare  func(t *testing.T, path string)
		wantText []string
	}{
		{
			name: "a store written by a newer Portcullis",
			prepare: func(t *testing.T, path string) {
				storeWithData(t, path)
				craft(t, path, func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte("meta")).Put([]byte("schemaVersion"), []byte("2"))
				})
			},
			wantText: []string{"newer Portcullis", "schema version 2", "left untouched"},
		},
		{
			name: "a store whose schema version is not a number",
			prepare: func(t *testing.T, path string) {
				storeWithData(t, path)
				craft(t, path, func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte("meta")).Put([]byte("schemaVersion"), []byte("one"))
				})
			},
			wantText: []string{"not a positive integer", "Restore it from a backup"},
		},
		{
			name: "another program's bbolt database",
			prepare: func(t *testing.T, path string) {
				craft(t, path, func(tx *bbolt.Tx) error {
					b, err := tx.CreateBucket([]byte("somethingElse"))
					if err != nil {
						return err
					}
					return b.Put([]byte("k"), []byte("v"))
				})
			},
			wantText: []string{"not a Portcullis state file", "different one"},
		},
		{
			name: "a store with a session that is not valid JSON",
			prepare: func(t *testing.T, path string) {
				storeWithData(t, path)
				craft(t, path, func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte("sessions")).Put([]byte("sess-07"), []byte(`{"id":"sess-07","upstreamRefreshToken":"hunter2`))
				})
			},
			wantText: []string{`session "sess-07" does not decode`, "Restore it from a backup"},
		},
		{
			name: "a store with a grant stored under another grant's ID",
			prepare: func(t *testing.T, path string) {
				storeWithData(t, path)
				craft(t, path, func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte("grants")).Put([]byte("grant-a"), []byte(`{"id":"grant-b"}`))
				})
			},
			wantText: []string{`grant "grant-a" does not decode`, "different ID"},
		},
	} {
		t.Run("it refuses "+tc.name+" and leaves the file untouched", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			tc.prepare(t, path)
			before := readFile(t, path)
			s, err := bolt.Open(path, bolt.Options{})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			t.Logf("Open failed with: %v", err)
			for _, want := range append(tc.wantText, path) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q", want)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("the error quotes a stored secret")
			}
			if !bytes.Equal(readFile(t, path), before) {
				t.Error("the file was modified")
			}
		})
	}
}

// TestOpenSurvivesDamageToAnyPage overwrites each page of a store file in
// turn with garbage: Open must either fail cleanly or (if the page was free)
// succeed, and never crash the process.
func TestOpenSurvivesDamageToAnyPage(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	storeWithData(t, orig)
	data := readFile(t, orig)
	const pageSize = 4096
	rnd := rand.New(rand.NewPCG(1, 2))
	damages := []struct {
		name  string
		apply func(page []byte)
	}{
		{"random bytes", func(p []byte) {
			for i := range p {
				p[i] = byte(rnd.UintN(256))
			}
		}},
		{"zeros", func(p []byte) { clear(p) }},
		{"a flipped header", func(p []byte) {
			for i := range 16 {
				p[i] ^= 0xff
			}
		}},
		{"huge element offsets", func(p []byte) {
			for i := 16; i < 64; i++ {
				p[i] = 0x7f
			}
		}},
	}
	failed, tried := 0, 0
	for page := 2; page < len(data)/pageSize; page++ {
		for _, d := range damages {
			tried++
			damaged := bytes.Clone(data)
			d.apply(damaged[page*pageSize : (page+1)*pageSize])
			path := filepath.Join(dir, fmt.Sprintf("damaged-page-%d-%d.db", page, tried))
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := bolt.Open(path, bolt.Options{})
			if err != nil {
				failed++
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "Restore it from a backup") {
					t.Errorf("page %d, %s: unhelpful error: %v", page, d.name, err)
				}
				if !bytes.Equal(readFile(t, path), damaged) {
					t.Errorf("page %d, %s: the damaged file was modified", page, d.name)
				}
				continue
			}
			// The page was unused: the store must work.
			if sessions, err := s.ListSessions(context.Background()); err != nil || len(sessions) != 50 {
				t.Errorf("page %d, %s: Open succeeded but ListSessions returned %d sessions, %v; want 50, nil", page, d.name, len(sessions), err)
			}
			if revoked, err := s.IsRevoked(context.Background(), "jti-1"); err != nil || !revoked {
				t.Errorf("page %d, %s: Open succeeded but IsRevoked(jti-1) = %v, %v; want true, nil", page, d.name, revoked, err)
			}
			_ = s.Close()
		}
	}
	t.Logf("%d of %d kinds of damage to single pages were detected at Open", failed, tried)
	if failed == 0 {
		t.Error("no damaged page was detected")
	}
}

func TestNewFilesAreOnlyForTheirOwner(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "state.db")
	s := open(t, path)
	defer s.Close()
	assertMode(t, path, 0o600)
	assertMode(t, filepath.Join(root, "a"), 0o700)
	assertMode(t, filepath.Join(root, "a", "b"), 0o700)
}

func TestOpenRestrictsAnExistingFileToItsOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	storeWithData(t, path)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	defer s.Close()
	assertMode(t, path, 0o600)
}

func TestOpenInitialisesAnEmptyFile(t *testing.T) {
	// As a Kubernetes hostPath volume of type FileOrCreate leaves it.
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	ctx := context.Background()
	if err := s.Revoke(ctx, store.Revocation{ID: "x", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	if revoked, err := s.IsRevoked(ctx, "x"); err != nil || !revoked {
		t.Fatalf("IsRevoked after reopening = %v, %v; want true, nil", revoked, err)
	}
}

func TestOpenHonoursTheLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	first := open(t, path)
	defer first.Close()
	start := time.Now()
	_, err := bolt.Open(path, bolt.Options{Timeout: 200 * time.Millisecond})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open: got %v, want an \"in use by another process\" error", err)
	}
	if took > 900*time.Millisecond {
		t.Errorf("second Open took %v with a 200ms timeout", took)
	}
}

func TestOpenRejectsAnEmptyPath(t *testing.T) {
	if _, err := bolt.Open("", bolt.Options{}); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}
