package proxy

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"
)

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	// Write and rename, as the kubelet does for projected tokens.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFileRereadsARotatedToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, "first\n", t0)
	clock := testingclock.NewFakeClock(t0)
	tf := newTokenFile(path, 2*time.Second, clock)

	get := func(want string) {
		t.Helper()
		got, err := tf.Get()
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got != want {
			t.Fatalf("Get = %q, want %q", got, want)
		}
	}
	get("first")

	writeFile(t, path, "second", t0.Add(time.Minute))
	get("first") // not checked again before the interval
	clock.Step(2 * time.Second)
	get("second")

	// A rotation in progress (file briefly missing or empty) keeps the last good token.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	clock.Step(2 * time.Second)
	get("second")
	writeFile(t, path, "  \n", t0.Add(2*time.Minute))
	clock.Step(2 * time.Second)
	get("second")
	writeFile(t, path, "third", t0.Add(3*time.Minute))
	clock.Step(2 * time.Second)
	get("third")

	// Invalidate (after the upstream refused the token) re-reads at once,
	// even when the file's time and size did not change.
	writeFile(t, path, "forth", t0.Add(3*time.Minute))
	get("third")
	tf.Invalidate()
	get("forth")
}

func TestTokenFileFailsWithoutAnyToken(t *testing.T) {
	tf := newTokenFile(filepath.Join(t.TempDir(), "missing"), time.Second, clock.RealClock{})
	if _, err := tf.Get(); err == nil {
		t.Fatal("Get of a missing file succeeded")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	writeFile(t, empty, "\n", time.Now())
	if _, err := newTokenFile(empty, time.Second, clock.RealClock{}).Get(); err == nil {
		t.Fatal("Get of an empty file succeeded")
	}
}
