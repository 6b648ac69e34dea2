package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
)

// RunConformance checks that the stores newStore returns behave as the
// store.Store contract says. newStore must return a new, empty store each time
// it is called; the suite closes every store it gets when the sub-test ends,
// so closing a store twice must be harmless.
//
// Beyond what the interface documents, the suite requires that:
//   - every Create* and Revoke rejects an empty ID;
//   - revoking an ID that is already revoked succeeds and never shortens the
//     revocation (the later ExpiresAt wins);
//   - UpdateSession refuses an update that changes the session's ID;
//   - a method called with a cancelled context fails with an error that
//     errors.Is context.Canceled;
//   - every method fails after Close.
func RunConformance(t *testing.T, newStore func(t *testing.T) store.Store) {
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		if s == nil {
			t.Fatal("newStore returned a nil store")
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("closing the store at the end of the test: %v", err)
			}
		})
		return s
	}
	t.Run("signing keys", func(t *testing.T) { testSigningKeys(t, open) })
	t.Run("sessions", func(t *testing.T) { testSessions(t, open) })
	t.Run("UpdateSession", func(t *testing.T) { testUpdateSession(t, open) })
	t.Run("ListUserSessions", func(t *testing.T) { testUserSessions(t, open) })
	t.Run("revocations", func(t *testing.T) { testRevocations(t, open) })
	t.Run("grants", func(t *testing.T) { testGrants(t, open) })
	t.Run("access requests", func(t *testing.T) { testAccessRequests(t, open) })
	t.Run("empty IDs", func(t *testing.T) { testEmptyIDs(t, open) })
	t.Run("GarbageCollect", func(t *testing.T) { testGarbageCollect(t, open) })
	t.Run("cancelled contexts", func(t *testing.T) { testCancelledContext(t, open) })
	t.Run("concurrent use", func(t *testing.T) { testConcurrentUse(t, open) })
	t.Run("Close", func(t *testing.T) { testClose(t, newStore) })
}

type opener func(t *testing.T) store.Store

func testSigningKeys(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("an empty store lists no signing keys", func(t *testing.T) {
		assertKeys(t, open(t))
	})

	t.Run("created keys are listed with all their fields", func(t *testing.T) {
		s := open(t)
		a, b := signingKey("key-a"), signingKey("key-b")
		b.Algorithm = "RS256"
		must(t, "CreateSigningKey a", s.CreateSigningKey(ctx, a))
		must(t, "CreateSigningKey b", s.CreateSigningKey(ctx, b))
		assertKeys(t, s, a, b)
	})

	t.Run("creating a key with a taken ID fails with ErrAlreadyExists and keeps the first key", func(t *testing.T) {
		s := open(t)
		first := signingKey("key-a")
		must(t, "CreateSigningKey", s.CreateSigningKey(ctx, dup(first)))
		second := signingKey("key-a")
		second.Algorithm = "RS256"
		second.PrivateKeyPEM = []byte("other")
		err := s.CreateSigningKey(ctx, second)
		if !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("CreateSigningKey with a taken ID: got %v, want an error wrapping ErrAlreadyExists", err)
		}
		assertKeys(t, s, first)
	})

	t.Run("deleting a key removes only that key", func(t *testing.T) {
		s := open(t)
		a, b := signingKey("key-a"), signingKey("key-b")
		must(t, "CreateSigningKey a", s.CreateSigningKey(ctx, a))
		must(t, "CreateSigningKey b", s.CreateSigningKey(ctx, b))
		must(t, "DeleteSigningKey a", s.DeleteSigningKey(ctx, "key-a"))
		assertKeys(t, s, b)
	})

	t.Run("deleting a missing key fails with ErrNotFound", func(t *testing.T) {
		s := open(t)
		must(t, "CreateSigningKey", s.CreateSigningKey(ctx, signingKey("key-a")))
		if err := s.DeleteSigningKey(ctx, "no-such-key"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("DeleteSigningKey of a missing key: got %v, want an error wrapping ErrNotFound", err)
		}
		must(t, "DeleteSigningKey", s.DeleteSigningKey(ctx, "key-a"))
		if err := s.DeleteSigningKey(ctx, "key-a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("DeleteSigningKey of a deleted key: got %v, want an error wrapping ErrNotFound", err)
		}
	})

	t.Run("a key can be created again after it was deleted", func(t *testing.T) {
		s := open(t)
		k := signingKey("key-a")
		must(t, "CreateSigningKey", s.CreateSigningKey(ctx, k))
		must(t, "DeleteSigningKey", s.DeleteSigningKey(ctx, k.ID))
		k.Algorithm = "EdDSA"
		must(t, "CreateSigningKey again", s.CreateSigningKey(ctx, k))
		assertKeys(t, s, k)
	})

	t.Run("listed keys are copies", func(t *testing.T) {
		s := open(t)
		k := signingKey("key-a")
		must(t, "CreateSigningKey", s.CreateSigningKey(ctx, dup(k)))
		got, err := s.ListSigningKeys(ctx)
		must(t, "ListSigningKeys", err)
		for i := range got[0].PrivateKeyPEM {
			got[0].PrivateKeyPEM[i] = 'X'
		}
		got[0].Algorithm = "changed"
		assertKeys(t, s, k)
	})

	t.Run("changing the caller's key after creating it does not change the stored key", func(t *testing.T) {
		s := open(t)
		k := signingKey("key-a")
		want := signingKey("key-a")
		must(t, "CreateSigningKey", s.CreateSigningKey(ctx, k))
		for i := range k.PrivateKeyPEM {
			k.PrivateKeyPEM[i] = 'X'
		}
		assertKeys(t, s, want)
	})
}

func testSessions(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("a created session can be got back with all its fields", func(t *testing.T) {
		s := open(t)
		want := session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, dup(want)))
		got, err := s.GetSession(ctx, "sess-a")
		must(t, "GetSession", err)
		assertSession(t, got, want)
	})

	t.Run("a session with only the required fields round-trips", func(t *testing.T) {
		s := open(t)
		want := store.Session{ID: "minimal", Username: "alice", RefreshTokenHash: []byte{1}, CreatedAt: base, LastUsedAt: base, ExpiresAt: base.Add(time.Hour)}
		must(t, "CreateSession", s.CreateSession(ctx, dup(want)))
		got, err := s.GetSession(ctx, "minimal")
		must(t, "GetSession", err)
		assertSession(t, got, want)
	})

	t.Run("an empty store lists no sessions", func(t *testing.T) {
		assertSessions(t, open(t))
	})

	t.Run("created sessions are listed", func(t *testing.T) {
		s := open(t)
		a, b, c := session("sess-a"), session("sess-b"), session("sess-c")
		b.Username = "bob"
		for _, sess := range []store.Session{c, a, b} {
			must(t, "CreateSession "+sess.ID, s.CreateSession(ctx, sess))
		}
		assertSessions(t, s, a, b, c)
	})

	t.Run("creating a session with a taken ID fails with ErrAlreadyExists and keeps the first session", func(t *testing.T) {
		s := open(t)
		first := session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, dup(first)))
		second := session("sess-a")
		second.Username = "mallory"
		second.RefreshTokenHash = []byte{9, 9, 9}
		if err := s.CreateSession(ctx, second); !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("CreateSession with a taken ID: got %v, want an error wrapping ErrAlreadyExists", err)
		}
		got, err := s.GetSession(ctx, "sess-a")
		must(t, "GetSession", err)
		assertSession(t, got, first)
	})

	t.Run("getting a missing session fails with ErrNotFound", func(t *testing.T) {
		s := open(t)
		must(t, "CreateSession", s.CreateSession(ctx, session("sess-a")))
		if _, err := s.GetSession(ctx, "no-such-session"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetSession of a missing session: got %v, want an error wrapping ErrNotFound", err)
		}
	})

	t.Run("a deleted session can no longer be got or listed", func(t *testing.T) {
		s := open(t)
		a, b := session("sess-a"), session("sess-b")
		must(t, "CreateSession a", s.CreateSession(ctx, a))
		must(t, "CreateSession b", s.CreateSession(ctx, b))
		must(t, "DeleteSession a", s.DeleteSession(ctx, "sess-a"))
		if _, err := s.GetSession(ctx, "sess-a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetSession of a deleted session: got %v, want an error wrapping ErrNotFound", err)
		}
		assertSessions(t, s, b)
	})

	t.Run("deleting a missing session fails with ErrNotFound", func(t *testing.T) {
		s := open(t)
		if err := s.DeleteSession(ctx, "no-such-session"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("DeleteSession of a missing session: got %v, want an error wrapping ErrNotFound", err)
		}
	})

	t.Run("sessions returned by every method are copies", func(t *testing.T) {
		s := open(t)
		want := session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, dup(want)))

		got, err := s.GetSession(ctx, "sess-a")
		must(t, "GetSession", err)
		scribble(&got)
		assertSessionStored(t, s, want, "after mutating the session GetSession returned")

		list, err := s.ListSessions(ctx)
		must(t, "ListSessions", err)
		scribble(&list[0])
		assertSessionStored(t, s, want, "after mutating a session ListSessions returned")

		updated, err := s.UpdateSession(ctx, "sess-a", func(*store.Session) error { return nil })
		must(t, "UpdateSession", err)
		scribble(&updated)
		assertSessionStored(t, s, want, "after mutating the session UpdateSession returned")
	})

	t.Run("changing the caller's session after creating it does not change the stored session", func(t *testing.T) {
		s := open(t)
		sess, want := session("sess-a"), session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, sess))
		scribble(&sess)
		assertSessionStored(t, s, want, "after mutating the session passed to CreateSession")
	})
}

// scribble changes every reference-typed field of sess in place, the way a
// careless caller could.
func scribble(sess *store.Session) {
	for i := range sess.Groups {
		sess.Groups[i] = "system:masters"
	}
	for k, v := range sess.Extra {
		for i := range v {
			v[i] = "scribbled"
		}
		sess.Extra[k+"-new"] = []string{"added"}
	}
	sess.Extra["injected"] = []string{"x"}
	for i := range sess.RefreshTokenHash {
		sess.RefreshTokenHash[i] = 0
	}
	for i := range sess.PreviousRefreshTokenHash {
		sess.PreviousRefreshTokenHash[i] = 0
	}
	for i := range sess.PreviousSealedNext {
		sess.PreviousSealedNext[i] = 0
	}
	sess.Username = "scribbled"
}

func assertSessionStored(t *testing.T, s store.Store, want store.Session, when string) {
	t.Helper()
	got, err := s.GetSession(context.Background(), want.ID)
	if err != nil {
		t.Fatalf("GetSession %s: %v", when, err)
	}
	if !equalSessions(got, want) {
		t.Fatalf("the stored session changed %s:\n got: %+v\nwant: %+v", when, normSession(got), normSession(want))
	}
}

func equalSessions(a, b store.Session) bool {
	return fmt.Sprintf("%#v", normSession(a)) == fmt.Sprintf("%#v", normSession(b))
}

func testUpdateSession(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("the update function gets the stored session", func(t *testing.T) {
		s := open(t)
		want := session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, dup(want)))
		var seen store.Session
		_, err := s.UpdateSession(ctx, "sess-a", func(sess *store.Session) error {
			seen = *sess
			return nil
		})
		must(t, "UpdateSession", err)
		assertSession(t, seen, want)
	})

	t.Run("what the update function changes is written and returned", func(t *testing.T) {
		s := open(t)
		must(t, "CreateSession", s.CreateSession(ctx, session("sess-a")))
		want := session("sess-a")
		want.Groups = []string{"devs"}
		want.Extra = map[string][]string{"k": {"v"}}
		want.RefreshTokenHash = []byte{7, 7, 7}
		want.PreviousRefreshTokenHash = []byte{1, 2, 3, 0xfe}
		want.PreviousValidUntil = base.Add(time.Hour)
		want.LastUsedAt = base.Add(2 * time.Hour)
		want.UpstreamRefreshToken = "rotated"
		got, err := s.UpdateSession(ctx, "sess-a", func(sess *store.Session) error {
			sess.Groups = sess.Groups[:1]
			sess.Extra = map[string][]string{"k": {"v"}}
			sess.PreviousRefreshTokenHash = sess.RefreshTokenHash
			sess.RefreshTokenHash = []byte{7, 7, 7}
			sess.PreviousValidUntil = base.Add(time.Hour)
			sess.LastUsedAt = base.Add(2 * time.Hour)
			sess.UpstreamRefreshToken = "rotated"
			return nil
		})
		must(t, "UpdateSession", err)
		assertSession(t, got, want)
		stored, err := s.GetSession(ctx, "sess-a")
		must(t, "GetSession", err)
		assertSession(t, stored, want)
	})

	t.Run("an update function that fails writes nothing and its error is returned", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			err  error
		}{
			{"ErrConflict", store.ErrConflict},
			{"a wrapped ErrConflict", fmt.Errorf("refresh token reused: %w", store.ErrConflict)},
			{"an error of the caller's own", errors.New("identity provider said no")},
		} {
			t.Run("when it returns "+tc.name, func(t *testing.T) {
				s := open(t)
				want := session("sess-a")
				must(t, "CreateSession", s.CreateSession(ctx, dup(want)))
				_, err := s.UpdateSession(ctx, "sess-a", func(sess *store.Session) error {
					sess.Username = "changed"
					sess.Groups[0] = "changed"
					sess.Extra["example.com/team"][0] = "changed"
					sess.RefreshTokenHash[0] = 0xff
					sess.LastUsedAt = base.Add(99 * time.Hour)
					return tc.err
				})
				if !errors.Is(err, tc.err) {
					t.Fatalf("UpdateSession: got error %v, want one wrapping %v", err, tc.err)
				}
				assertSessionStored(t, s, want, "after a failed update")
			})
		}
	})

	t.Run("updating a missing session fails with ErrNotFound without calling the update function", func(t *testing.T) {
		s := open(t)
		called := false
		_, err := s.UpdateSession(ctx, "no-such-session", func(*store.Session) error {
			called = true
			return nil
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("UpdateSession of a missing session: got %v, want an error wrapping ErrNotFound", err)
		}
		if called {
			t.Fatal("the update function was called for a missing session")
		}
		if _, err := s.GetSession(ctx, "no-such-session"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("UpdateSession of a missing session created it (GetSession: %v)", err)
		}
	})

	t.Run("an update that changes the session ID is refused and writes nothing", func(t *testing.T) {
		s := open(t)
		want := session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, dup(want)))
		_, err := s.UpdateSession(ctx, "sess-a", func(sess *store.Session) error {
			sess.ID = "sess-b"
			return nil
		})
		if err == nil {
			t.Fatal("UpdateSession accepted an update that changed the session ID")
		}
		assertSessions(t, s, want)
	})

	t.Run("the update function cannot keep a reference into stored data", func(t *testing.T) {
		s := open(t)
		must(t, "CreateSession", s.CreateSession(ctx, session("sess-a")))
		var kept *store.Session
		var keptGroups []string
		var keptHash []byte
		_, err := s.UpdateSession(ctx, "sess-a", func(sess *store.Session) error {
			sess.Username = "updated"
			kept, keptGroups, keptHash = sess, sess.Groups, sess.RefreshTokenHash
			return nil
		})
		must(t, "UpdateSession", err)
		want := session("sess-a")
		want.Username = "updated"
		scribble(kept)
		keptGroups[0] = "system:masters"
		keptHash[0] = 0
		assertSessionStored(t, s, want, "after mutating the session the update function kept")
	})

	t.Run("concurrent updates of one session from 20 goroutines lose nothing", func(t *testing.T) {
		s := open(t)
		start := session("sess-a")
		start.Groups = nil
		start.Extra = map[string][]string{"counter": {"0"}}
		must(t, "CreateSession", s.CreateSession(ctx, start))

		const goroutines, perGoroutine = 20, 5
		var wg sync.WaitGroup
		errs := make(chan error, goroutines*perGoroutine)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perGoroutine {
					_, err := s.UpdateSession(ctx, "sess-a", func(sess *store.Session) error {
						var n int
						if _, err := fmt.Sscan(sess.Extra["counter"][0], &n); err != nil {
							return err
						}
						sess.Extra["counter"] = []string{fmt.Sprint(n + 1)}
						sess.LastUsedAt = sess.LastUsedAt.Add(time.Second)
						sess.Groups = append(sess.Groups, fmt.Sprintf("g%02d-%d", g, i))
						return nil
					})
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("UpdateSession: %v", err)
		}

		got, err := s.GetSession(ctx, "sess-a")
		must(t, "GetSession", err)
		const total = goroutines * perGoroutine
		if c := got.Extra["counter"]; len(c) != 1 || c[0] != fmt.Sprint(total) {
			t.Errorf("counter = %v after %d increments, want [%d]: updates were lost", c, total, total)
		}
		if want := start.LastUsedAt.Add(total * time.Second); !got.LastUsedAt.Equal(want) {
			t.Errorf("LastUsedAt = %v, want %v: updates were lost", got.LastUsedAt, want)
		}
		seen := map[string]bool{}
		for _, g := range got.Groups {
			if seen[g] {
				t.Errorf("group %q was appended twice", g)
			}
			seen[g] = true
		}
		if len(seen) != total {
			t.Errorf("%d distinct groups after %d appends, want %d: updates were lost", len(seen), total, total)
		}
	})
}

func testRevocations(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("nothing is revoked in an empty store", func(t *testing.T) {
		s := open(t)
		for _, ids := range [][]string{nil, {"a"}, {"a", "b", "c"}, {""}} {
			revoked, err := s.IsRevoked(ctx, ids...)
			must(t, "IsRevoked", err)
			if revoked {
				t.Errorf("IsRevoked(%q) = true in an empty store", ids)
			}
		}
		assertRevocations(t, s)
	})

	t.Run("IsRevoked reports whether any of several IDs is revoked", func(t *testing.T) {
		s := open(t)
		must(t, "Revoke sess-1", s.Revoke(ctx, revocation("sess-1")))
		must(t, "Revoke jti-3", s.Revoke(ctx, revocation("jti-3")))
		for _, tc := range []struct {
			ids  []string
			want bool
		}{
			{nil, false},
			{[]string{"sess-1"}, true},
			{[]string{"jti-3"}, true},
			{[]string{"sess-2"}, false},
			{[]string{"sess-2", "jti-1"}, false},
			{[]string{"sess-2", "jti-3"}, true},
			{[]string{"sess-1", "jti-3"}, true},
			{[]string{"sess-2", "jti-2", "x", "y", "sess-1"}, true},
			{[]string{"sess-2", "sess-2"}, false},
			{[]string{"", "sess-11", "sess-"}, false},
		} {
			revoked, err := s.IsRevoked(ctx, tc.ids...)
			must(t, fmt.Sprintf("IsRevoked(%q)", tc.ids), err)
			if revoked != tc.want {
				t.Errorf("IsRevoked(%q) = %v, want %v", tc.ids, revoked, tc.want)
			}
		}
	})

	t.Run("revocations are listed with all their fields", func(t *testing.T) {
		s := open(t)
		a, b := revocation("sess-1"), revocation("jti-3")
		b.Reason, b.RevokedBy = "admin action", "carol"
		must(t, "Revoke a", s.Revoke(ctx, a))
		must(t, "Revoke b", s.Revoke(ctx, b))
		assertRevocations(t, s, a, b)
	})

	t.Run("revoking an ID again succeeds and never shortens the revocation", func(t *testing.T) {
		s := open(t)
		long := revocation("sess-1")
		long.ExpiresAt = base.Add(48 * time.Hour)
		must(t, "Revoke", s.Revoke(ctx, long))
		short := revocation("sess-1")
		short.ExpiresAt = base.Add(time.Minute)
		must(t, "Revoke again with an earlier expiry", s.Revoke(ctx, short))
		assertRevocations(t, s, long)

		longer := revocation("sess-1")
		longer.ExpiresAt = base.Add(96 * time.Hour)
		longer.Reason = "extended"
		must(t, "Revoke again with a later expiry", s.Revoke(ctx, longer))
		assertRevocations(t, s, longer)
	})
}

func testGrants(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("an empty store lists no grants", func(t *testing.T) {
		assertGrants(t, open(t))
	})

	t.Run("created grants are listed with all their fields", func(t *testing.T) {
		s := open(t)
		a, b := grant("grant-a"), grant("grant-b")
		b.Cluster, b.Groups = "staging", []string{"viewers"}
		must(t, "CreateGrant a", s.CreateGrant(ctx, a))
		must(t, "CreateGrant b", s.CreateGrant(ctx, b))
		assertGrants(t, s, a, b)
	})

	t.Run("creating a grant with a taken ID fails with ErrAlreadyExists and keeps the first grant", func(t *testing.T) {
		s := open(t)
		first := grant("grant-a")
		must(t, "CreateGrant", s.CreateGrant(ctx, dup(first)))
		second := grant("grant-a")
		second.Groups = []string{"system:masters"}
		if err := s.CreateGrant(ctx, second); !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("CreateGrant with a taken ID: got %v, want an error wrapping ErrAlreadyExists", err)
		}
		assertGrants(t, s, first)
	})

	t.Run("deleting a grant removes only that grant", func(t *testing.T) {
		s := open(t)
		a, b := grant("grant-a"), grant("grant-b")
		must(t, "CreateGrant a", s.CreateGrant(ctx, a))
		must(t, "CreateGrant b", s.CreateGrant(ctx, b))
		must(t, "DeleteGrant b", s.DeleteGrant(ctx, "grant-b"))
		assertGrants(t, s, a)
	})

	t.Run("deleting a missing grant fails with ErrNotFound", func(t *testing.T) {
		s := open(t)
		if err := s.DeleteGrant(ctx, "no-such-grant"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("DeleteGrant of a missing grant: got %v, want an error wrapping ErrNotFound", err)
		}
	})

	t.Run("listed grants are copies and so are the grants given to CreateGrant", func(t *testing.T) {
		s := open(t)
		g, want := grant("grant-a"), grant("grant-a")
		must(t, "CreateGrant", s.CreateGrant(ctx, g))
		g.Groups[0] = "system:masters"
		list, err := s.ListGrants(ctx)
		must(t, "ListGrants", err)
		list[0].Groups[0] = "system:masters"
		list[0].Username = "mallory"
		assertGrants(t, s, want)
	})
}

func testEmptyIDs(t *testing.T, open opener) {
	ctx := context.Background()
	for _, tc := range []struct {
		method string
		call   func(store.Store) error
	}{
		{"CreateSigningKey", func(s store.Store) error { return s.CreateSigningKey(ctx, signingKey("")) }},
		{"CreateSession", func(s store.Store) error { return s.CreateSession(ctx, session("")) }},
		{"Revoke", func(s store.Store) error { return s.Revoke(ctx, revocation("")) }},
		{"CreateGrant", func(s store.Store) error { return s.CreateGrant(ctx, grant("")) }},
	} {
		t.Run(tc.method+" rejects an empty ID and stores nothing", func(t *testing.T) {
			s := open(t)
			if err := tc.call(s); err == nil {
				t.Fatalf("%s accepted an empty ID", tc.method)
			}
			assertKeys(t, s)
			assertSessions(t, s)
			assertRevocations(t, s)
			assertGrants(t, s)
		})
	}
}

func testGarbageCollect(t *testing.T, open opener) {
	ctx := context.Background()
	now := base.Add(10 * 24 * time.Hour)

	t.Run("an empty store has nothing to collect", func(t *testing.T) {
		n, err := open(t).GarbageCollect(ctx, now)
		must(t, "GarbageCollect", err)
		if n != 0 {
			t.Fatalf("GarbageCollect on an empty store returned %d, want 0", n)
		}
	})

	t.Run("exactly the expired items are deleted and counted", func(t *testing.T) {
		s := open(t)
		var keepKeys, keepSessions []string
		var keepRevs, keepGrants []string
		wantDeleted := 0

		for _, tc := range []struct {
			id       string
			expireAt time.Time
			keep     bool
		}{
			{"key-expired-long-ago", now.Add(-30 * 24 * time.Hour), false},
			{"key-expiring-right-now", now, false},
			{"key-retired-but-still-published", now.Add(time.Nanosecond), true},
			{"key-current", now.Add(48 * time.Hour), true},
		} {
			k := signingKey(tc.id)
			k.RetireAt, k.ExpireAt = now.Add(-time.Hour), tc.expireAt
			must(t, "CreateSigningKey "+tc.id, s.CreateSigningKey(ctx, k))
			if tc.keep {
				keepKeys = append(keepKeys, tc.id)
			} else {
				wantDeleted++
			}
		}

		for _, tc := range []struct {
			id          string
			expiresAt   time.Time
			lastUsedAt  time.Time
			idleTimeout time.Duration
			keep        bool
		}{
			{"sess-too-old", now.Add(-time.Hour), now.Add(-2 * time.Hour), 8 * time.Hour, false},
			{"sess-ending-right-now", now, now.Add(-time.Minute), 8 * time.Hour, false},
			{"sess-idle-too-long", now.Add(24 * time.Hour), now.Add(-9 * time.Hour), 8 * time.Hour, false},
			{"sess-idle-exactly-the-timeout", now.Add(24 * time.Hour), now.Add(-8 * time.Hour), 8 * time.Hour, false},
			{"sess-idle-but-no-idle-timeout", now.Add(24 * time.Hour), now.Add(-90 * 24 * time.Hour), 0, true},
			{"sess-recently-used", now.Add(24 * time.Hour), now.Add(-time.Minute), 8 * time.Hour, true},
			{"sess-ending-in-a-nanosecond", now.Add(time.Nanosecond), now, 8 * time.Hour, true},
		} {
			sess := session(tc.id)
			sess.ExpiresAt, sess.LastUsedAt, sess.IdleTimeout = tc.expiresAt, tc.lastUsedAt, tc.idleTimeout
			if sess.Expired(now) == tc.keep {
				t.Fatalf("fixture %s: Session.Expired(now) = %v, but the test expects keep = %v", tc.id, sess.Expired(now), tc.keep)
			}
			must(t, "CreateSession "+tc.id, s.CreateSession(ctx, sess))
			if tc.keep {
				keepSessions = append(keepSessions, tc.id)
			} else {
				wantDeleted++
			}
		}

		for _, tc := range []struct {
			id        string
			expiresAt time.Time
			keep      bool
		}{
			{"rev-expired", now.Add(-time.Hour), false},
			{"rev-expiring-right-now", now, false},
			{"rev-live", now.Add(time.Hour), true},
		} {
			r := revocation(tc.id)
			r.ExpiresAt = tc.expiresAt
			must(t, "Revoke "+tc.id, s.Revoke(ctx, r))
			if tc.keep {
				keepRevs = append(keepRevs, tc.id)
			} else {
				wantDeleted++
			}
		}

		for _, tc := range []struct {
			id                   string
			notBefore, expiresAt time.Time
			keep                 bool
		}{
			{"grant-expired", now.Add(-2 * time.Hour), now.Add(-time.Hour), false},
			{"grant-expiring-right-now", now.Add(-2 * time.Hour), now, false},
			{"grant-active", now.Add(-time.Hour), now.Add(time.Hour), true},
			{"grant-not-yet-active", now.Add(time.Hour), now.Add(2 * time.Hour), true},
		} {
			g := grant(tc.id)
			g.NotBefore, g.ExpiresAt = tc.notBefore, tc.expiresAt
			must(t, "CreateGrant "+tc.id, s.CreateGrant(ctx, g))
			if tc.keep {
				keepGrants = append(keepGrants, tc.id)
			} else {
				wantDeleted++
			}
		}

		n, err := s.GarbageCollect(ctx, now)
		must(t, "GarbageCollect", err)
		if n != wantDeleted {
			t.Errorf("GarbageCollect returned %d, want %d", n, wantDeleted)
		}

		assertIDs(t, "signing keys", listIDs(t, s.ListSigningKeys, keyID), keepKeys)
		assertIDs(t, "sessions", listIDs(t, s.ListSessions, sessionID), keepSessions)
		assertIDs(t, "revocations", listIDs(t, s.ListRevocations, revID), keepRevs)
		assertIDs(t, "grants", listIDs(t, s.ListGrants, grantID), keepGrants)

		revoked, err := s.IsRevoked(ctx, "rev-expired", "rev-expiring-right-now")
		must(t, "IsRevoked", err)
		if revoked {
			t.Error("IsRevoked still reports revocations that GarbageCollect deleted")
		}
		revoked, err = s.IsRevoked(ctx, "rev-live")
		must(t, "IsRevoked", err)
		if !revoked {
			t.Error("IsRevoked no longer reports a revocation that GarbageCollect kept")
		}

		n, err = s.GarbageCollect(ctx, now)
		must(t, "GarbageCollect again", err)
		if n != 0 {
			t.Errorf("a second GarbageCollect at the same time returned %d, want 0", n)
		}
	})
}

func listIDs[T any](t *testing.T, list func(context.Context) ([]T, error), id func(T) string) []string {
	t.Helper()
	items, err := list(context.Background())
	must(t, "listing", err)
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, id(it))
	}
	return ids
}

func assertIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	g := normAll(got, func(s string) string { return s }, func(s string) string { return s })
	w := normAll(want, func(s string) string { return s }, func(s string) string { return s })
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Errorf("%s left: %q, want %q", what, g, w)
	}
}

// everyMethod calls each method of the interface once, with arguments that
// would succeed on a healthy store holding the fixtures "x".
func everyMethod(ctx context.Context) []struct {
	name string
	call func(store.Store) error
} {
	return []struct {
		name string
		call func(store.Store) error
	}{
		{"ListSigningKeys", func(s store.Store) error { _, err := s.ListSigningKeys(ctx); return err }},
		{"CreateSigningKey", func(s store.Store) error { return s.CreateSigningKey(ctx, signingKey("new")) }},
		{"DeleteSigningKey", func(s store.Store) error { return s.DeleteSigningKey(ctx, "x") }},
		{"CreateSession", func(s store.Store) error { return s.CreateSession(ctx, session("new")) }},
		{"GetSession", func(s store.Store) error { _, err := s.GetSession(ctx, "x"); return err }},
		{"UpdateSession", func(s store.Store) error {
			_, err := s.UpdateSession(ctx, "x", func(*store.Session) error { return nil })
			return err
		}},
		{"DeleteSession", func(s store.Store) error { return s.DeleteSession(ctx, "x") }},
		{"ListSessions", func(s store.Store) error { _, err := s.ListSessions(ctx); return err }},
		{"ListUserSessions", func(s store.Store) error { _, err := s.ListUserSessions(ctx, "alice"); return err }},
		{"Revoke", func(s store.Store) error { return s.Revoke(ctx, revocation("new")) }},
		{"IsRevoked", func(s store.Store) error { _, err := s.IsRevoked(ctx, "x"); return err }},
		{"ListRevocations", func(s store.Store) error { _, err := s.ListRevocations(ctx); return err }},
		{"CreateGrant", func(s store.Store) error { return s.CreateGrant(ctx, grant("new")) }},
		{"ListGrants", func(s store.Store) error { _, err := s.ListGrants(ctx); return err }},
		{"DeleteGrant", func(s store.Store) error { return s.DeleteGrant(ctx, "x") }},
		{"GarbageCollect", func(s store.Store) error { _, err := s.GarbageCollect(ctx, base); return err }},
	}
}

func fill(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	must(t, "CreateSigningKey", s.CreateSigningKey(ctx, signingKey("x")))
	must(t, "CreateSession", s.CreateSession(ctx, session("x")))
	must(t, "Revoke", s.Revoke(ctx, revocation("x")))
	must(t, "CreateGrant", s.CreateGrant(ctx, grant("x")))
}

func testCancelledContext(t *testing.T, open opener) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, m := range everyMethod(ctx) {
		t.Run(m.name+" fails with the context's error", func(t *testing.T) {
			s := open(t)
			fill(t, s)
			if err := m.call(s); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with a cancelled context: got %v, want an error wrapping context.Canceled", m.name, err)
			}
			assertKeys(t, s, signingKey("x"))
			assertSessions(t, s, session("x"))
			assertRevocations(t, s, revocation("x"))
			assertGrants(t, s, grant("x"))
		})
	}
}

func testConcurrentUse(t *testing.T, open opener) {
	t.Run("every method can be called from many goroutines at once", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		fill(t, s)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5 {
					id := fmt.Sprintf("g%d-%d", g, i)
					k, sess, r, gr := signingKey(id), session(id), revocation(id), grant(id)
					if err := s.CreateSigningKey(ctx, k); err != nil {
						t.Errorf("CreateSigningKey: %v", err)
					}
					if err := s.CreateSession(ctx, sess); err != nil {
						t.Errorf("CreateSession: %v", err)
					}
					if err := s.Revoke(ctx, r); err != nil {
						t.Errorf("Revoke: %v", err)
					}
					if err := s.CreateGrant(ctx, gr); err != nil {
						t.Errorf("CreateGrant: %v", err)
					}
					if _, err := s.UpdateSession(ctx, "x", func(s *store.Session) error {
						s.Groups = append(s.Groups, id)
						return nil
					}); err != nil {
						t.Errorf("UpdateSession: %v", err)
					}
					if revoked, err := s.IsRevoked(ctx, "nope", id); err != nil || !revoked {
						t.Errorf("IsRevoked(%s) = %v, %v right after revoking it", id, revoked, err)
					}
					for _, m := range everyMethod(ctx) {
						if m.name == "GarbageCollect" || m.name == "IsRevoked" || m.name == "GetSession" || (len(m.name) > 4 && m.name[:4] == "List") {
							if err := m.call(s); err != nil {
								t.Errorf("%s: %v", m.name, err)
							}
						}
					}
					if err := s.DeleteGrant(ctx, id); err != nil {
						t.Errorf("DeleteGrant: %v", err)
					}
					if err := s.DeleteSession(ctx, id); err != nil {
						t.Errorf("DeleteSession: %v", err)
					}
					if err := s.DeleteSigningKey(ctx, id); err != nil {
						t.Errorf("DeleteSigningKey: %v", err)
					}
				}
			}()
		}
		wg.Wait()
		got, err := s.GetSession(ctx, "x")
		must(t, "GetSession", err)
		if want := len(session("x").Groups) + 4*5; len(got.Groups) != want {
			t.Errorf("session x has %d groups after concurrent updates, want %d", len(got.Groups), want)
		}
	})
}

func testClose(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()

	t.Run("closing a store succeeds and closing it again is harmless", func(t *testing.T) {
		s := newStore(t)
		fill(t, s)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})

	for _, m := range everyMethod(ctx) {
		t.Run(m.name+" fails after Close", func(t *testing.T) {
			s := newStore(t)
			fill(t, s)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := m.call(s); err == nil {
				t.Fatalf("%s on a closed store succeeded", m.name)
			}
		})
	}
}
