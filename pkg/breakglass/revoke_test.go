package breakglass

import (
	"context"
	"errors"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
)

func TestRevokeThroughTheSocketIsAuditedAndKeptAsLongAsATokenLives(t *testing.T) {
	cfg, m, _ := setup(t)
	st := memory.New()
	sessions := session.NewManager(st, func() session.Settings { return session.Settings{MaxTokenLifetime: time.Hour} }, nil)
	rec := &recorder{}
	path := SocketPath(filepath.Join(t.TempDir(), "state.db"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, path, func() *v1alpha1.PortcullisConfiguration { return cfg }, m, rec, sessions)
	}()
	t.Cleanup(func() { cancel(); <-done })
	var until time.Time
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		until, err = RevokeVia(context.Background(), path, RevokeRequest{TokenID: "abc_DEF-1", Reason: "INC-7"})
		if !errors.Is(err, ErrNoServer) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if until.Before(time.Now().Add(time.Hour)) {
		t.Errorf("kept until %v, before a token minted now could expire", until)
	}
	if revoked, _ := st.IsRevoked(context.Background(), "abc_DEF-1"); !revoked {
		t.Fatal("not revoked")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	me, _ := user.Current()
	if len(rec.events) != 1 || rec.events[0].User.Username != "local:"+me.Username || rec.events[0].Annotations["portcullis.dev/jti"] != "abc_DEF-1" ||
		rec.events[0].Annotations["portcullis.dev/revocation-reason"] != "INC-7" || rec.events[0].ObjectRef.Resource != "tokenrevocations" {
		t.Fatalf("audit events %+v", rec.events)
	}
	for _, bad := range []RevokeRequest{{Reason: "r"}, {TokenID: "a b", Reason: "r"}, {TokenID: "abc"}} {
		if _, err := RevokeVia(context.Background(), path, bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
}

type failingRevoker struct{}

func (failingRevoker) RevokeTokenID(context.Context, string, string, string) (store.Revocation, error) {
	return store.Revocation{}, errors.New("disk full")
}

func TestRevokeSaysWhenTheRevocationOrItsAuditFailed(t *testing.T) {
	sessions := session.NewManager(memory.New(), func() session.Settings { return session.Settings{MaxTokenLifetime: time.Hour} }, nil)
	if _, err := Revoke(context.Background(), sessions, &recorder{refuse: true}, Operator{Name: "local:op"}, RevokeRequest{TokenID: "a", Reason: "r"}); err == nil || !strings.Contains(err.Error(), "IS revoked") {
		t.Errorf("a refused audit event: %v, want an error saying the token is revoked all the same", err)
	}
	if _, err := Revoke(context.Background(), failingRevoker{}, &recorder{}, Operator{Name: "local:op"}, RevokeRequest{TokenID: "a", Reason: "r"}); err == nil {
		t.Error("a failed revocation reported success")
	}
	if _, err := Revoke(context.Background(), sessions, nil, Operator{}, RevokeRequest{TokenID: "a", Reason: "r"}); err == nil {
		t.Error("a revocation without an audit backend succeeded")
	}
}
