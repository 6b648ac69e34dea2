package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
)

func newManager(t *testing.T) (*Manager, *testingclock.FakeClock, store.Store) {
	st := memory.New()
	c := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	m := NewManager(st, func() Settings {
		return Settings{IdleTimeout: time.Hour, MaxLifetime: 24 * time.Hour, ReuseGrace: 30 * time.Second, MaxTokenLifetime: time.Hour}
	}, c)
	return m, c, st
}

func TestRefreshToken_FormatAndStorage(t *testing.T) {
	m, _, st := newManager(t)
	s, tok, err := m.Create(context.Background(), User{Username: "alice"}, "", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sid, secret, ok := ParseRefreshToken(tok)
	if !ok || sid != s.ID || len(secret) != 43 {
		t.Fatalf("token %q does not parse as <sid>.<256-bit secret>", tok)
	}
	got, _ := st.GetSession(context.Background(), sid)
	if strings.Contains(string(got.RefreshTokenHash), secret) || len(got.RefreshTokenHash) != 32 {
		t.Errorf("stored hash looks wrong")
	}
	for _, bad := range []string{"", "nodot", "a.", ".b", sid + ".short", sid + "." + secret + "x"} {
		if _, err := m.Lookup(context.Background(), bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Lookup(%q) = %v", bad, err)
		}
	}
}

func TestRefresh_ConcurrentUsesOfOneTokenAllEndWithTheSameToken(t *testing.T) {
	m, _, _ := newManager(t)
	_, tok, err := m.Create(context.Background(), User{Username: "alice"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]string, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := m.Refresh(context.Background(), tok, nil, nil)
			if err != nil {
				t.Errorf("refresh %d: %v", i, err)
				return
			}
			results[i] = r.RefreshToken
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r != results[0] {
			t.Fatalf("concurrent refreshes handed out different tokens: %v", results)
		}
	}
	if _, err := m.Refresh(context.Background(), results[0], nil, nil); err != nil {
		t.Errorf("the token they all got does not work: %v", err)
	}
}

func TestRefresh_UpstreamAndAuthorize(t *testing.T) {
	m, _, st := newManager(t)
	ctx := context.Background()
	_, tok, _ := m.Create(ctx, User{Username: "alice", Groups: []string{"a"}}, "up-1", "")
	// Authorize refuses: nothing rotates, the upstream change is kept.
	denied := errors.New("denied")
	_, err := m.Refresh(ctx, tok, func(ctx context.Context, s store.Session) (*Upstream, error) {
		return &Upstream{RefreshToken: "up-2", User: &User{Username: "alice", Groups: []string{"b"}}}, nil
	}, func(context.Context, store.Session) error { return denied })
	if !errors.Is(err, denied) {
		t.Fatalf("err = %v", err)
	}
	s, _ := m.Lookup(ctx, tok)
	if s.UpstreamRefreshToken != "up-2" || s.Groups[0] != "b" {
		t.Errorf("upstream change not kept: %+v", s)
	}
	// Upstream refuses: the session ends.
	_, err = m.Refresh(ctx, tok, func(context.Context, store.Session) (*Upstream, error) {
		return nil, ErrUpstreamRefused
	}, nil)
	if !errors.Is(err, ErrUpstreamRefused) {
		t.Fatalf("err = %v", err)
	}
	if revoked, _ := st.IsRevoked(ctx, s.ID); !revoked {
		t.Errorf("session not revoked")
	}
}

// failingDelete is a store whose DeleteSession fails.
type failingDelete struct{ store.Store }

func (failingDelete) DeleteSession(context.Context, string) error {
	return errors.New("disk full")
}

func TestEnd_RevokesFirstAndSaysWhenOnlyTheDeleteFailed(t *testing.T) {
	m, clk, st := newManager(t)
	s, _, err := m.Create(context.Background(), User{Username: "alice"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	broken := NewManager(failingDelete{st}, m.settings, clk)
	err = broken.End(context.Background(), s, "test", "admin")
	if !errors.Is(err, ErrNotDeleted) {
		t.Fatalf("End = %v, want an error wrapping ErrNotDeleted", err)
	}
	if revoked, err := st.IsRevoked(context.Background(), s.ID); err != nil || !revoked {
		t.Errorf("the session was not revoked before the delete failed: %v %v", revoked, err)
	}
	revs, _ := st.ListRevocations(context.Background())
	if want := clk.Now().Add(time.Hour + revocationSkew); len(revs) != 1 || !revs[0].ExpiresAt.Equal(want) {
		t.Errorf("revocations = %+v, want one kept until the last token's expiry plus the skew (%v)", revs, want)
	}
}

func TestRefresh_TheReuseGraceWorksAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	a, clk, st := newManager(t)
	// b is another replica: its own manager over the same store.
	b := NewManager(st, a.settings, clk)
	_, tok, err := a.Create(ctx, User{Username: "alice"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.Refresh(ctx, tok, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk.Step(10 * time.Second)
	second, err := b.Refresh(ctx, tok, nil, nil)
	if err != nil {
		t.Fatalf("the second client, on another replica within the grace: %v", err)
	}
	if second.RefreshToken != first.RefreshToken || !second.Grace {
		t.Fatalf("replica b handed out %q (grace %v), want the token a's rotation handed out", second.RefreshToken, second.Grace)
	}
	stored, _ := st.GetSession(ctx, first.Session.ID)
	if _, secret, _ := ParseRefreshToken(first.RefreshToken); strings.Contains(string(stored.PreviousSealedNext), secret) {
		t.Fatal("the stored session holds the handed-out secret in clear")
	}
	if _, err := b.Refresh(ctx, first.RefreshToken, nil, nil); err != nil {
		t.Fatalf("the shared token does not refresh on b: %v", err)
	}
}
