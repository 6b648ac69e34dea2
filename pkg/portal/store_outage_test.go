package portal_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
)

// unwritableStore is a store whose writes fail as a full or read-only
// file system makes bolt's fail (store.ErrUnavailable) while broken is set.
type unwritableStore struct {
	store.Store
	broken atomic.Bool
}

func (s *unwritableStore) fail() error {
	if s.broken.Load() {
		return fmt.Errorf("the state file cannot be written: %w", store.ErrUnavailable)
	}
	return nil
}

func (s *unwritableStore) UpdateSession(ctx context.Context, id string, f func(*store.Session) error) (store.Session, error) {
	if err := s.fail(); err != nil {
		return store.Session{}, err
	}
	return s.Store.UpdateSession(ctx, id, f)
}

func (s *unwritableStore) Revoke(ctx context.Context, r store.Revocation) error {
	if err := s.fail(); err != nil {
		return err
	}
	return s.Store.Revoke(ctx, r)
}

// A refresh or a logout the state store cannot record is a 503 that says to
// try again (not a 500, and never a logout reported done), and the session
// works again once the store does.
func TestAnUnwritableStateStoreIsA503ForRefreshAndLogout(t *testing.T) {
	st := &unwritableStore{Store: memory.New()}
	e := portaltest.New(t, portaltest.Options{Store: st})
	_, refresh, err := e.Sessions.Create(context.Background(), session.User{Username: "alice@example.com", Email: "alice@example.com", Groups: []string{"devs"}, IdentityProvider: "fake"}, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	c := e.Client()
	st.broken.Store(true)
	for _, path := range []string{"/portal/api/refresh", "/portal/api/logout"} {
		status, body := postForm(t, c, e.URL+path, url.Values{"refresh_token": {refresh}, "cluster": {"c1"}})
		if status != http.StatusServiceUnavailable || str(body, "error") != "temporarily_unavailable" || !strings.Contains(str(body, "error_description"), "try again") {
			t.Errorf("%s while the store cannot be written: %d %v; want 503 temporarily_unavailable", path, status, body)
		}
	}
	st.broken.Store(false)
	if status, body := postForm(t, c, e.URL+"/portal/api/refresh", url.Values{"refresh_token": {refresh}, "cluster": {"c1"}}); status != http.StatusOK {
		t.Errorf("refresh once the store works again: %d %v", status, body)
	}
}
