package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/pkg/store"
)

// benchStore opens a store holding n revocations and n sessions, written in
// one transaction (n single writes would each wait for an fsync).
func benchStore(b *testing.B, n int) *Store {
	b.Helper()
	path := filepath.Join(b.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for i := range n {
			r := store.Revocation{ID: fmt.Sprintf("jti-%08d", i), Reason: "logout", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}
			sess := store.Session{
				ID: fmt.Sprintf("sess-%08d", i), Username: "alice@example.com", UID: "1234",
				Groups: []string{"devs", "oncall", "platform"}, Extra: map[string][]string{"example.com/team": {"sre"}},
				IdentityProvider: "corp", UpstreamRefreshToken: "opaque-upstream-token-0123456789",
				RefreshTokenHash: make([]byte, 32), PreviousRefreshTokenHash: make([]byte, 32),
				CreatedAt: now, LastUsedAt: now, IdleTimeout: 8 * time.Hour, ExpiresAt: now.Add(24 * time.Hour),
			}
			for _, kv := range []struct {
				bucket []byte
				id     string
				obj    any
			}{{bucketRevocations, r.ID, r}, {bucketSessions, sess.ID, sess}} {
				v, err := json.Marshal(kv.obj)
				if err != nil {
					return err
				}
				if err := tx.Bucket(kv.bucket).Put([]byte(kv.id), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Reopen so the revoked set is loaded the way it is in production.
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkIsRevoked measures the check made on every token verification: a
// session ID and a token ID, against 10,000 revocations.
func BenchmarkIsRevoked(b *testing.B) {
	s := benchStore(b, 10_000)
	ctx := context.Background()
	check := func(b *testing.B, want bool, ids ...string) {
		b.ReportAllocs()
		for b.Loop() {
			revoked, err := s.IsRevoked(ctx, ids...)
			if err != nil || revoked != want {
				b.Fatalf("IsRevoked = %v, %v", revoked, err)
			}
		}
	}
	b.Run("neither ID revoked", func(b *testing.B) { check(b, false, "sess-live", "jti-live") })
	b.Run("token ID revoked", func(b *testing.B) { check(b, true, "sess-live", "jti-00005000") })
	b.Run("neither ID revoked, parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if revoked, err := s.IsRevoked(ctx, "sess-live", "jti-live"); err != nil || revoked {
					b.Errorf("IsRevoked = %v, %v", revoked, err)
					return
				}
			}
		})
	})
	// For comparison: the same lookups in a bbolt read transaction, the
	// design the in-memory set replaced.
	b.Run("neither ID revoked, read transaction instead of the set", func(b *testing.B) {
		b.ReportAllocs()
		ids := [][]byte{[]byte("sess-live"), []byte("jti-live")}
		for b.Loop() {
			revoked := false
			err := s.db.View(func(tx *bbolt.Tx) error {
				bk := tx.Bucket(bucketRevocations)
				for _, id := range ids {
					if bk.Get(id) != nil {
						revoked = true
					}
				}
				return nil
			})
			if err != nil || revoked {
				b.Fatalf("lookup = %v, %v", revoked, err)
			}
		}
	})
}

// BenchmarkGetSession measures reading one session out of 10,000.
func BenchmarkGetSession(b *testing.B) {
	s := benchStore(b, 10_000)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetSession(ctx, "sess-00005000"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.GetSession(ctx, "sess-00005000"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
