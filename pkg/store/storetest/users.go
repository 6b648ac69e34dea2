package storetest

import (
	"context"
	"testing"

	"portcullis.dev/portcullis/pkg/store"
)

// testUserSessions checks ListUserSessions: the portal's "your sessions"
// page shows exactly these, and lets the user end any of them.
func testUserSessions(t *testing.T, open opener) {
	ctx := context.Background()
	assertUserSessions := func(t *testing.T, s store.Store, username string, want ...store.Session) {
		t.Helper()
		got, err := s.ListUserSessions(ctx, username)
		must(t, "ListUserSessions "+username, err)
		if got == nil {
			t.Errorf("ListUserSessions(%q) = nil, want an empty list", username)
		}
		for i := 1; i < len(got); i++ {
			if got[i-1].ID >= got[i].ID {
				t.Errorf("ListUserSessions(%q) is not sorted by ID: %s before %s", username, got[i-1].ID, got[i].ID)
			}
		}
		assertEqual(t, "sessions of "+username, normAll(got, normSession, sessionID), normAll(want, normSession, sessionID))
	}

	t.Run("a user without sessions gets an empty list", func(t *testing.T) {
		s := open(t)
		must(t, "CreateSession", s.CreateSession(ctx, session("sess-a")))
		assertUserSessions(t, s, "nobody@example.com")
	})

	t.Run("exactly the user's sessions are listed, with all their fields", func(t *testing.T) {
		s := open(t)
		a1, a2, b, prefix := session("sess-a1"), session("sess-a2"), session("sess-b"), session("sess-p")
		b.Username = "bob@example.com"
		// Usernames are compared whole: no prefix, case or trimming games.
		prefix.Username = "alice@example.com.evil"
		upper := session("sess-u")
		upper.Username = "Alice@example.com"
		for _, sess := range []store.Session{a2, b, prefix, a1, upper} {
			must(t, "CreateSession "+sess.ID, s.CreateSession(ctx, dup(sess)))
		}
		assertUserSessions(t, s, "alice@example.com", a1, a2)
		assertUserSessions(t, s, "bob@example.com", b)
	})

	t.Run("a deleted session is no longer listed", func(t *testing.T) {
		s := open(t)
		a1, a2 := session("sess-a1"), session("sess-a2")
		must(t, "CreateSession a1", s.CreateSession(ctx, a1))
		must(t, "CreateSession a2", s.CreateSession(ctx, a2))
		must(t, "DeleteSession a1", s.DeleteSession(ctx, a1.ID))
		assertUserSessions(t, s, "alice@example.com", a2)
	})

	t.Run("a session whose username changes moves to the new user's list", func(t *testing.T) {
		s := open(t)
		a := session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, a))
		updated, err := s.UpdateSession(ctx, a.ID, func(cur *store.Session) error {
			cur.Username = "alice.renamed@example.com"
			return nil
		})
		must(t, "UpdateSession", err)
		assertUserSessions(t, s, "alice@example.com")
		assertUserSessions(t, s, "alice.renamed@example.com", updated)
	})

	t.Run("listed sessions are copies", func(t *testing.T) {
		s := open(t)
		want := session("sess-a")
		must(t, "CreateSession", s.CreateSession(ctx, dup(want)))
		list, err := s.ListUserSessions(ctx, want.Username)
		must(t, "ListUserSessions", err)
		if len(list) != 1 {
			t.Fatalf("ListUserSessions = %d sessions, want 1", len(list))
		}
		scribble(&list[0])
		assertSessionStored(t, s, want, "after mutating a session ListUserSessions returned")
	})
}
