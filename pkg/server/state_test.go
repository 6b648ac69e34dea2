package server

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
)

type switchElector struct{ leader atomic.Bool }

func (e *switchElector) IsLeader() bool          { return e.leader.Load() }
func (e *switchElector) Run(ctx context.Context) { <-ctx.Done() }

func TestChoresCollectExpiredStateOnlyOnTheChoresReplica(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memory.New()
	past := time.Now().Add(-time.Hour)
	if err := st.CreateSession(ctx, store.Session{ID: "ended", Username: "u", RefreshTokenHash: []byte{1}, CreatedAt: past, LastUsedAt: past, ExpiresAt: past.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	logins := loginstate.NewMemory(10, nil)
	if err := logins.Create(ctx, loginstate.KindAttempt, "old", nil, time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	el := &switchElector{}
	s := &Server{Store: st, backend: &stateBackend{Store: st, Logins: logins, Chores: el}}
	go s.runChores(ctx, 20*time.Millisecond)

	time.Sleep(200 * time.Millisecond)
	if _, err := st.GetSession(ctx, "ended"); err != nil {
		t.Fatalf("a replica without the chores collected: %v", err)
	}
	el.leader.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := st.GetSession(ctx, "ended")
		if errors.Is(err, store.ErrNotFound) && logins.Len() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chores replica did not collect the ended session (%v) and the expired login (%d left)", err, logins.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
