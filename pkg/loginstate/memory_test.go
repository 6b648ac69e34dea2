package loginstate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/loginstate/loginstatetest"
)

func TestMemoryConformance(t *testing.T) {
	loginstatetest.Run(t, func(t *testing.T, clk clock.PassiveClock) loginstate.Store {
		return loginstate.NewMemory(100, clk)
	})
}

func TestMemoryIsBoundedByLiveEntries(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	m := loginstate.NewMemory(2, clk)
	exp := clk.Now().Add(time.Minute)
	for _, k := range []string{"a", "b"} {
		if err := m.Create(ctx, loginstate.KindAttempt, k, nil, exp); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Create(ctx, loginstate.KindAttempt, "c", nil, exp); !errors.Is(err, loginstate.ErrFull) {
		t.Fatalf("third Create = %v, want ErrFull", err)
	}
	clk.SetTime(exp)
	if err := m.Create(ctx, loginstate.KindAttempt, "c", nil, exp.Add(time.Minute)); err != nil {
		t.Fatalf("Create once the others expired = %v", err)
	}
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want the expired entries swept", m.Len())
	}
}
