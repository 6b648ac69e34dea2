// Package loginstatetest is the conformance suite every loginstate.Store
// backend must pass: the memory backend in unit tests, the Kubernetes backend
// against a real kube-apiserver in test/e2e.
package loginstatetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/pkg/loginstate"
)

// NewStore returns a new, empty store that reads the time from clk.
type NewStore func(t *testing.T, clk clock.PassiveClock) loginstate.Store

// Run runs the suite.
func Run(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	start := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	open := func(t *testing.T) (loginstate.Store, *clocktesting.FakePassiveClock) {
		clk := clocktesting.NewFakePassiveClock(start)
		return newStore(t, clk), clk
	}
	soon := start.Add(time.Minute)

	t.Run("a created entry reads back with its expiry", func(t *testing.T) {
		s, _ := open(t)
		must(t, s.Create(ctx, loginstate.KindCode, "k", []byte("v"), soon))
		data, exp, err := s.Get(ctx, loginstate.KindCode, "k")
		must(t, err)
		if string(data) != "v" || !exp.Equal(soon) {
			t.Fatalf("Get = %q, %v; want %q, %v", data, exp, "v", soon)
		}
	})

	t.Run("a key is unique within its kind only", func(t *testing.T) {
		s, _ := open(t)
		must(t, s.Create(ctx, loginstate.KindCode, "k", []byte("code"), soon))
		if err := s.Create(ctx, loginstate.KindCode, "k", []byte("again"), soon); !errors.Is(err, loginstate.ErrExists) {
			t.Fatalf("second Create = %v, want ErrExists", err)
		}
		must(t, s.Create(ctx, loginstate.KindAttempt, "k", []byte("attempt"), soon))
		data, _, err := s.Get(ctx, loginstate.KindCode, "k")
		must(t, err)
		if string(data) != "code" {
			t.Fatalf("the refused Create changed the entry to %q", data)
		}
	})

	t.Run("a missing entry is ErrNotFound everywhere", func(t *testing.T) {
		s, _ := open(t)
		if _, _, err := s.Get(ctx, loginstate.KindDevice, "nope"); !errors.Is(err, loginstate.ErrNotFound) {
			t.Errorf("Get = %v", err)
		}
		if _, err := s.Take(ctx, loginstate.KindDevice, "nope"); !errors.Is(err, loginstate.ErrNotFound) {
			t.Errorf("Take = %v", err)
		}
		if _, err := s.Update(ctx, loginstate.KindDevice, "nope", keep); !errors.Is(err, loginstate.ErrNotFound) {
			t.Errorf("Update = %v", err)
		}
	})

	t.Run("an entry can be taken once", func(t *testing.T) {
		s, _ := open(t)
		must(t, s.Create(ctx, loginstate.KindCode, "k", []byte("v"), soon))
		data, err := s.Take(ctx, loginstate.KindCode, "k")
		must(t, err)
		if string(data) != "v" {
			t.Fatalf("Take = %q", data)
		}
		if _, err := s.Take(ctx, loginstate.KindCode, "k"); !errors.Is(err, loginstate.ErrNotFound) {
			t.Fatalf("second Take = %v, want ErrNotFound", err)
		}
	})

	t.Run("of concurrent takes of one entry exactly one succeeds", func(t *testing.T) {
		s, _ := open(t)
		for round := range 3 {
			key := fmt.Sprint("k", round)
			must(t, s.Create(ctx, loginstate.KindCode, key, []byte("v"), soon))
			var won atomic.Int32
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.Take(ctx, loginstate.KindCode, key)
					switch {
					case err == nil:
						won.Add(1)
					case !errors.Is(err, loginstate.ErrNotFound):
						t.Errorf("Take = %v", err)
					}
				}()
			}
			wg.Wait()
			if n := won.Load(); n != 1 {
				t.Fatalf("round %d: %d takes succeeded, want 1", round, n)
			}
		}
	})

	t.Run("expired entries are gone but can be created again", func(t *testing.T) {
		s, clk := open(t)
		must(t, s.Create(ctx, loginstate.KindAttempt, "k", []byte("v"), soon))
		clk.SetTime(soon)
		if _, _, err := s.Get(ctx, loginstate.KindAttempt, "k"); !errors.Is(err, loginstate.ErrNotFound) {
			t.Errorf("Get at expiry = %v, want ErrNotFound", err)
		}
		if _, err := s.Take(ctx, loginstate.KindAttempt, "k"); !errors.Is(err, loginstate.ErrNotFound) {
			t.Errorf("Take at expiry = %v, want ErrNotFound", err)
		}
		if _, err := s.Update(ctx, loginstate.KindAttempt, "k", keep); !errors.Is(err, loginstate.ErrNotFound) {
			t.Errorf("Update at expiry = %v, want ErrNotFound", err)
		}
		must(t, s.Create(ctx, loginstate.KindAttempt, "k", []byte("w"), soon.Add(time.Minute)))
		data, _, err := s.Get(ctx, loginstate.KindAttempt, "k")
		must(t, err)
		if string(data) != "w" {
			t.Fatalf("Get = %q, want the new entry", data)
		}
	})

	t.Run("Update stores the new data, removes on request and writes nothing on error", func(t *testing.T) {
		s, _ := open(t)
		must(t, s.Create(ctx, loginstate.KindDevice, "k", []byte("a"), soon))
		got, err := s.Update(ctx, loginstate.KindDevice, "k", func(b []byte) ([]byte, bool, error) { return append(b, 'b'), false, nil })
		must(t, err)
		if string(got) != "ab" {
			t.Fatalf("Update returned %q", got)
		}
		boom := errors.New("boom")
		if _, err := s.Update(ctx, loginstate.KindDevice, "k", func([]byte) ([]byte, bool, error) { return []byte("x"), false, boom }); !errors.Is(err, boom) {
			t.Fatalf("Update with an error = %v", err)
		}
		data, exp, err := s.Get(ctx, loginstate.KindDevice, "k")
		must(t, err)
		if string(data) != "ab" || !exp.Equal(soon) {
			t.Fatalf("after updates: %q, %v; want %q and the expiry unchanged", data, exp, "ab")
		}
		if _, err := s.Update(ctx, loginstate.KindDevice, "k", func([]byte) ([]byte, bool, error) { return nil, true, nil }); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Get(ctx, loginstate.KindDevice, "k"); !errors.Is(err, loginstate.ErrNotFound) {
			t.Fatalf("Get after a removing Update = %v", err)
		}
	})

	t.Run("concurrent updates never lose one", func(t *testing.T) {
		s, _ := open(t)
		must(t, s.Create(ctx, loginstate.KindDevice, "n", []byte("0"), soon))
		var wg sync.WaitGroup
		const workers, each = 4, 10
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					_, err := s.Update(ctx, loginstate.KindDevice, "n", func(b []byte) ([]byte, bool, error) {
						var n int
						if err := json.Unmarshal(b, &n); err != nil {
							return nil, false, err
						}
						out, err := json.Marshal(n + 1)
						return out, false, err
					})
					if err != nil {
						t.Errorf("Update: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		data, _, err := s.Get(ctx, loginstate.KindDevice, "n")
		must(t, err)
		if string(data) != fmt.Sprint(workers*each) {
			t.Fatalf("counter = %s, want %d", data, workers*each)
		}
	})

	t.Run("Collect removes expired entries only", func(t *testing.T) {
		s, clk := open(t)
		must(t, s.Create(ctx, loginstate.KindCode, "old", []byte("v"), soon))
		must(t, s.Create(ctx, loginstate.KindCode, "new", []byte("v"), soon.Add(time.Hour)))
		clk.SetTime(soon.Add(time.Second))
		n, err := s.Collect(ctx, clk.Now())
		must(t, err)
		if n != 1 {
			t.Fatalf("Collect removed %d, want 1", n)
		}
		if _, _, err := s.Get(ctx, loginstate.KindCode, "new"); err != nil {
			t.Fatalf("the live entry is gone: %v", err)
		}
	})
}

func keep(b []byte) ([]byte, bool, error) { return b, false, nil }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
