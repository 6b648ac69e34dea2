package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
)

func accessRequest(id string) store.AccessRequest {
	return store.AccessRequest{
		ID:           id,
		Username:     "bob@example.com",
		Cluster:      "prod-eu-1",
		Groups:       []string{"sre-admin"},
		Duration:     30 * time.Minute,
		Reason:       "INC-1234",
		State:        store.AccessRequestPending,
		CreatedAt:    base,
		PendingUntil: base.Add(time.Hour),
		ExpiresAt:    base.Add(48 * time.Hour),
	}
}

func requestID(r store.AccessRequest) string { return r.ID }

func testAccessRequests(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("an empty store lists no access requests", func(t *testing.T) {
		assertIDs(t, "access requests", listIDs(t, open(t).ListAccessRequests, requestID), nil)
	})

	t.Run("a created request reads back with all its fields and is listed", func(t *testing.T) {
		s := open(t)
		a, b := accessRequest("req-a"), accessRequest("req-b")
		b.Approvals = []store.Approval{{By: "carol@example.com", At: base.Add(time.Minute), Reason: "ok"}}
		must(t, "CreateAccessRequest b", s.CreateAccessRequest(ctx, dup(b)))
		must(t, "CreateAccessRequest a", s.CreateAccessRequest(ctx, dup(a)))
		got, err := s.GetAccessRequest(ctx, "req-b")
		must(t, "GetAccessRequest", err)
		assertEqual(t, "access request req-b", got, b)
		list, err := s.ListAccessRequests(ctx)
		must(t, "ListAccessRequests", err)
		assertEqual(t, "listed access requests", list, []store.AccessRequest{a, b})
	})

	t.Run("creating a request with a taken ID fails with ErrAlreadyExists", func(t *testing.T) {
		s := open(t)
		must(t, "CreateAccessRequest", s.CreateAccessRequest(ctx, accessRequest("req-a")))
		second := accessRequest("req-a")
		second.Reason = "other"
		if err := s.CreateAccessRequest(ctx, second); !errors.Is(err, store.ErrAlreadyExists) {
			t.Fatalf("CreateAccessRequest with a taken ID: got %v, want ErrAlreadyExists", err)
		}
		got, err := s.GetAccessRequest(ctx, "req-a")
		must(t, "GetAccessRequest", err)
		assertEqual(t, "kept request", got, accessRequest("req-a"))
	})

	t.Run("getting or updating a missing request fails with ErrNotFound", func(t *testing.T) {
		s := open(t)
		if _, err := s.GetAccessRequest(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetAccessRequest: got %v, want ErrNotFound", err)
		}
		_, err := s.UpdateAccessRequest(ctx, "nope", func(*store.AccessRequest) error { return nil })
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("UpdateAccessRequest: got %v, want ErrNotFound", err)
		}
	})

	t.Run("an update is written and returned; a failing update writes nothing", func(t *testing.T) {
		s := open(t)
		must(t, "CreateAccessRequest", s.CreateAccessRequest(ctx, accessRequest("req-a")))
		want := accessRequest("req-a")
		want.State = store.AccessRequestApproved
		want.Approvals = []store.Approval{{By: "carol@example.com", At: base.Add(time.Minute)}}
		want.DecidedBy, want.DecidedAt, want.GrantID = "carol@example.com", base.Add(time.Minute), "grant-1"
		got, err := s.UpdateAccessRequest(ctx, "req-a", func(r *store.AccessRequest) error {
			r.State, r.Approvals = want.State, dup(want.Approvals)
			r.DecidedBy, r.DecidedAt, r.GrantID = want.DecidedBy, want.DecidedAt, want.GrantID
			return nil
		})
		must(t, "UpdateAccessRequest", err)
		assertEqual(t, "returned request", got, want)
		boom := errors.New("boom")
		if _, err := s.UpdateAccessRequest(ctx, "req-a", func(r *store.AccessRequest) error {
			r.State = store.AccessRequestDenied
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("UpdateAccessRequest with a failing update: got %v, want the update's error", err)
		}
		if _, err := s.UpdateAccessRequest(ctx, "req-a", func(r *store.AccessRequest) error {
			r.ID = "other"
			return nil
		}); err == nil {
			t.Fatal("UpdateAccessRequest that changes the ID succeeded; it must fail")
		}
		stored, err := s.GetAccessRequest(ctx, "req-a")
		must(t, "GetAccessRequest", err)
		assertEqual(t, "stored request", stored, want)
	})

	t.Run("concurrent approvals are all kept", func(t *testing.T) {
		s := open(t)
		must(t, "CreateAccessRequest", s.CreateAccessRequest(ctx, accessRequest("req-a")))
		const n = 5
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := s.UpdateAccessRequest(ctx, "req-a", func(r *store.AccessRequest) error {
					r.Approvals = append(r.Approvals, store.Approval{By: string(rune('a' + i)), At: base})
					return nil
				})
				errs <- err
			}()
		}
		for range n {
			must(t, "UpdateAccessRequest", <-errs)
		}
		got, err := s.GetAccessRequest(ctx, "req-a")
		must(t, "GetAccessRequest", err)
		if len(got.Approvals) != n {
			t.Fatalf("after %d concurrent approvals the request holds %d: %+v", n, len(got.Approvals), got.Approvals)
		}
	})

	t.Run("an empty ID is refused", func(t *testing.T) {
		s := open(t)
		if err := s.CreateAccessRequest(ctx, accessRequest("")); err == nil {
			t.Fatal("CreateAccessRequest with an empty ID succeeded")
		}
	})

	t.Run("GarbageCollect deletes requests whose ExpiresAt has passed", func(t *testing.T) {
		s := open(t)
		old, live := accessRequest("req-old"), accessRequest("req-live")
		old.ExpiresAt = base.Add(time.Hour)
		live.ExpiresAt = base.Add(3 * time.Hour)
		must(t, "CreateAccessRequest old", s.CreateAccessRequest(ctx, old))
		must(t, "CreateAccessRequest live", s.CreateAccessRequest(ctx, live))
		n, err := s.GarbageCollect(ctx, base.Add(2*time.Hour))
		must(t, "GarbageCollect", err)
		if n != 1 {
			t.Errorf("GarbageCollect deleted %d objects, want 1", n)
		}
		assertIDs(t, "access requests", listIDs(t, s.ListAccessRequests, requestID), []string{"req-live"})
	})

	t.Run("a cancelled context fails every access request method", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		for name, call := range map[string]func() error{
			"CreateAccessRequest": func() error { return s.CreateAccessRequest(cctx, accessRequest("x")) },
			"GetAccessRequest":    func() error { _, err := s.GetAccessRequest(cctx, "x"); return err },
			"ListAccessRequests":  func() error { _, err := s.ListAccessRequests(cctx); return err },
			"UpdateAccessRequest": func() error {
				_, err := s.UpdateAccessRequest(cctx, "x", func(*store.AccessRequest) error { return nil })
				return err
			},
		} {
			if err := call(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context: got %v, want context.Canceled", name, err)
			}
		}
	})
}
