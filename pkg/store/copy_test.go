package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
	"portcullis.dev/portcullis/pkg/store/memory"
)

func fill(t *testing.T, s store.Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	live, dead := now.Add(time.Hour), now.Add(-time.Hour)
	for _, err := range []error{
		s.CreateSigningKey(ctx, store.SigningKey{ID: "key-old", Algorithm: "ES256", PrivateKeyPEM: []byte("k1"), ExpireAt: live}),
		s.CreateSigningKey(ctx, store.SigningKey{ID: "key-new", Algorithm: "ES256", PrivateKeyPEM: []byte("k2"), ExpireAt: live}),
		s.CreateSigningKey(ctx, store.SigningKey{ID: "key-expired", Algorithm: "ES256", ExpireAt: dead}),
		s.Revoke(ctx, store.Revocation{ID: "jti-1", Reason: "logout", ExpiresAt: live}),
		s.Revoke(ctx, store.Revocation{ID: "jti-expired", ExpiresAt: dead}),
		s.CreateGrant(ctx, store.Grant{ID: "grant-1", Username: "bob", Cluster: "prod", Groups: []string{"sre"}, ExpiresAt: live}),
		s.CreateSession(ctx, store.Session{ID: "sess-1", Username: "alice", Groups: []string{"devs"}, UpstreamRefreshToken: "up", RefreshTokenHash: []byte{1, 2}, LastUsedAt: now, ExpiresAt: live}),
		s.CreateSession(ctx, store.Session{ID: "sess-2", Username: "carol", RefreshTokenHash: []byte{3}, LastUsedAt: now, ExpiresAt: live}),
		s.CreateSession(ctx, store.Session{ID: "sess-expired", Username: "dave", RefreshTokenHash: []byte{4}, ExpiresAt: dead}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestCopyMovesEverythingLiveAndIsIdempotent(t *testing.T) {
	now := time.Now()
	ctx := context.Background()
	for name, from := range map[string]func(t *testing.T) store.Store{
		"memory to memory": func(*testing.T) store.Store { return memory.New() },
		"bolt to memory": func(t *testing.T) store.Store {
			s, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			src, dst := from(t), memory.New()
			defer src.Close()
			fill(t, src, now)

			st, err := store.Copy(ctx, src, dst)
			if err != nil {
				t.Fatal(err)
			}
			want := store.CopyStats{
				SigningKeys: store.CopyCounts{Copied: 2, Expired: 1},
				Revocations: store.CopyCounts{Copied: 1, Expired: 1},
				Grants:      store.CopyCounts{Copied: 1},
				Sessions:    store.CopyCounts{Copied: 2, Expired: 1},
			}
			if st != want {
				t.Errorf("first Copy: %v, want %v", st, want)
			}
			assertSameLive(t, src, dst, now)

			// A session refreshed in the destination since is kept.
			if _, err := dst.UpdateSession(ctx, "sess-1", func(s *store.Session) error {
				s.RefreshTokenHash = []byte{9}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			st, err = store.Copy(ctx, src, dst)
			if err != nil {
				t.Fatal(err)
			}
			want = store.CopyStats{
				SigningKeys: store.CopyCounts{Existing: 2, Expired: 1},
				Revocations: store.CopyCounts{Existing: 1, Expired: 1},
				Grants:      store.CopyCounts{Existing: 1},
				Sessions:    store.CopyCounts{Existing: 2, Expired: 1},
			}
			if st != want {
				t.Errorf("second Copy: %v, want %v", st, want)
			}
			got, err := dst.GetSession(ctx, "sess-1")
			if err != nil || !reflect.DeepEqual(got.RefreshTokenHash, []byte{9}) {
				t.Errorf("a second Copy overwrote a session refreshed in the destination: %v, %v", got.RefreshTokenHash, err)
			}
			if revoked, _ := dst.IsRevoked(ctx, "jti-1"); !revoked {
				t.Error("the copied revocation does not revoke")
			}
		})
	}
}

func assertSameLive(t *testing.T, src, dst store.Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	sk, _ := src.ListSigningKeys(ctx)
	dk, _ := dst.ListSigningKeys(ctx)
	var live []store.SigningKey
	for _, k := range sk {
		if now.Before(k.ExpireAt) {
			live = append(live, k)
		}
	}
	if len(dk) != len(live) {
		t.Fatalf("destination has %d keys, want %d", len(dk), len(live))
	}
	for i := range dk {
		if dk[i].ID != live[i].ID || string(dk[i].PrivateKeyPEM) != string(live[i].PrivateKeyPEM) {
			t.Errorf("key %d: got %s, want %s", i, dk[i].ID, live[i].ID)
		}
	}
	ss, _ := dst.ListSessions(ctx)
	if len(ss) != 2 || ss[0].ID != "sess-1" || ss[0].UpstreamRefreshToken != "up" || ss[1].ID != "sess-2" {
		t.Errorf("destination sessions = %+v", ss)
	}
}

func TestCopyStopsAtTheFirstFailure(t *testing.T) {
	src, dst := memory.New(), memory.New()
	fill(t, src, time.Now())
	_ = dst.Close()
	if _, err := store.Copy(context.Background(), src, dst); err == nil {
		t.Fatal("Copy into a closed store succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := store.Copy(ctx, src, memory.New()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestCopyCopiesAccessRequestsThatAreStillKept(t *testing.T) {
	ctx := context.Background()
	from, to := memory.New(), memory.New()
	now := time.Now()
	kept := store.AccessRequest{ID: "ar-kept", Username: "bob", Cluster: "prod", Groups: []string{"sre-admin"}, State: store.AccessRequestPending, CreatedAt: now, PendingUntil: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour)}
	old := kept
	old.ID, old.ExpiresAt = "ar-old", now.Add(-time.Minute)
	for _, r := range []store.AccessRequest{kept, old} {
		if err := from.CreateAccessRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Copy(ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if st.AccessRequests != (store.CopyCounts{Copied: 1, Expired: 1}) {
		t.Errorf("access requests: %+v, want one copied and one expired", st.AccessRequests)
	}
	if got, err := to.GetAccessRequest(ctx, "ar-kept"); err != nil || got.Username != "bob" {
		t.Errorf("the copied request: %+v, %v", got, err)
	}
}
