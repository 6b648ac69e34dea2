package framework

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// KeepLogsEnv is the environment variable that keeps every test's work
// directory (logs, configuration, PKI). "1"/"true" keeps them under
// $TMPDIR/portcullis-e2e/<run>/; an absolute path keeps them under that
// directory instead. `go test -v` keeps them too. A failed test's work
// directory is always kept.
const KeepLogsEnv = "KEEP_E2E_LOGS"

var (
	workDirs  sync.Map // testing.TB -> string
	runIDOnce sync.Once
	runID     string
)

// keepBase returns the directory kept work directories go into, or "" when
// work directories are removed after passing tests.
func keepBase() string {
	v := os.Getenv(KeepLogsEnv)
	if filepath.IsAbs(v) {
		return v
	}
	if b, err := strconv.ParseBool(v); (err == nil && b) || (v != "" && err != nil) || testing.Verbose() {
		return filepath.Join(os.TempDir(), "portcullis-e2e")
	}
	return ""
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// WorkDir returns the test's work directory, created on first use. Component
// logs, configuration files and the PKI live there. It is removed when the
// test passes, unless KEEP_E2E_LOGS is set or -v is given; when the test
// fails it is kept and its path is logged.
func WorkDir(t testing.TB) string {
	t.Helper()
	if d, ok := workDirs.Load(t); ok {
		return d.(string)
	}
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 80 {
		name = name[:80]
	}
	var dir string
	var err error
	keep := keepBase()
	if keep != "" {
		runIDOnce.Do(func() { runID = time.Now().Format("20060102-150405") + "-" + strconv.Itoa(os.Getpid()) })
		parent := filepath.Join(keep, runID)
		if err = os.MkdirAll(parent, 0o755); err == nil {
			dir, err = os.MkdirTemp(parent, name+"-")
		}
	} else {
		dir, err = os.MkdirTemp("", "portcullis-e2e-"+name+"-")
	}
	if err != nil {
		t.Fatalf("creating the work directory: %v", err)
	}
	workDirs.Store(t, dir)
	// Registered before any component is started, so it runs after the
	// components' cleanups (cleanups run last-in first-out).
	t.Cleanup(func() {
		workDirs.Delete(t)
		switch {
		case keep != "":
			t.Logf("work directory (logs, config, PKI) kept: %s", dir)
		case t.Failed():
			t.Logf("test failed; work directory (logs, config, PKI) kept: %s", dir)
		default:
			if err := os.RemoveAll(dir); err != nil {
				t.Logf("removing %s: %v", dir, err)
			}
		}
	})
	return dir
}

// writeFile writes content to name inside the test's work directory and
// returns the file's path.
func writeFile(t testing.TB, name string, content []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(WorkDir(t), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, perm); err != nil {
		t.Fatalf("writing %s: %v", p, err)
	}
	return p
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d earlier lines omitted ...]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
