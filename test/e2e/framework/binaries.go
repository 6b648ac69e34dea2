package framework

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const modulePath = "portcullis.dev/portcullis"

// BuildFlagsEnv names an environment variable with extra `go build` flags for
// the project's own binaries, e.g. E2E_BUILD_FLAGS="-race".
const BuildFlagsEnv = "E2E_BUILD_FLAGS"

// Bins holds the absolute paths of every binary the end-to-end tests run.
type Bins struct {
	Etcd             string
	Dex              string
	KubeAPIServer    string
	PortcullisServer string // ./cmd/portcullis-server
	Portcullis       string // ./cmd/portcullis (the CLI)
}

// Tools holds the paths of the control-plane tools built by hack/build-tools.sh.
type Tools struct {
	Etcd          string
	Dex           string
	KubeAPIServer string
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error

	toolsMu    sync.Mutex
	toolBuilds = map[string]*toolBuild{}

	projectMu     sync.Mutex
	projectBuilds = map[string]*projectBuild{}
	projectBinDir string // set by Main; created lazily otherwise
)

type toolBuild struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

type projectBuild struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// RepoRoot returns the root of the portcullis module (the directory holding
// its go.mod), found by walking up from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() { rootDir, rootErr = findRepoRoot() })
	if rootErr != nil {
		t.Fatalf("finding the repository root: %v", rootErr)
	}
	return rootDir
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && moduleLine(b) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func moduleLine(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// Binaries returns the paths of all binaries: the control-plane tools (built
// by hack/build-tools.sh, once per test process) and the project's own
// binaries (built with `go build`, once per test process). It fails the test
// with the build output when any build fails.
//
// Tests that need only some binaries should prefer ToolBinaries,
// PortcullisServerBinary or PortcullisCLIBinary (the Start* functions do),
// so that a broken build of one binary fails only the tests that need it.
func Binaries(t testing.TB) Bins {
	t.Helper()
	tl := ToolBinaries(t)
	return Bins{
		Etcd:             tl.Etcd,
		Dex:              tl.Dex,
		KubeAPIServer:    tl.KubeAPIServer,
		PortcullisServer: PortcullisServerBinary(t),
		Portcullis:       PortcullisCLIBinary(t),
	}
}

// ToolBinaries runs hack/build-tools.sh for all tools (once per test process)
// and returns their paths. The first build of kube-apiserver takes minutes;
// later runs take seconds.
func ToolBinaries(t testing.TB) Tools {
	t.Helper()
	return Tools{
		Etcd:          ToolBinary(t, "etcd"),
		Dex:           ToolBinary(t, "dex"),
		KubeAPIServer: ToolBinary(t, "kube-apiserver"),
	}
}

// ToolBinary runs `hack/build-tools.sh <name>` once per test process (its
// output goes to the log of the first test that asks) and returns the path
// of _output/bin/<name>. name is etcd, dex or kube-apiserver. Building one
// tool at a time lets a test that needs only Dex start before kube-apiserver
// is built.
func ToolBinary(t testing.TB, name string) string {
	t.Helper()
	root := RepoRoot(t)
	toolsMu.Lock()
	b := toolBuilds[name]
	if b == nil {
		b = &toolBuild{}
		toolBuilds[name] = b
	}
	toolsMu.Unlock()
	b.once.Do(func() {
		t.Logf("running hack/build-tools.sh %s (a first build takes minutes; cached afterwards)", name)
		start := time.Now()
		b.out, b.err = buildTool(root, name)
		t.Logf("hack/build-tools.sh %s took %v; output:\n%s", name, time.Since(start).Round(time.Millisecond), b.out)
		b.path = filepath.Join(root, "_output", "bin", name)
		if b.err == nil {
			if err := isExecutable(b.path); err != nil {
				b.err = fmt.Errorf("hack/build-tools.sh succeeded but %v", err)
			}
		}
	})
	if b.err != nil {
		t.Fatalf("building %s failed: %v\n--- output of hack/build-tools.sh %s ---\n%s", name, b.err, name, b.out)
	}
	return b.path
}

// buildTool runs hack/build-tools.sh under an exclusive lock on
// _output/.build-tools.lock, so that test processes running in parallel
// (go test ./test/e2e/... runs one per package) do not build the same binary
// concurrently.
func buildTool(root, name string) ([]byte, error) {
	out := filepath.Join(root, "_output")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(out, ".build-tools.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	cmd := exec.Command("bash", filepath.Join(root, "hack", "build-tools.sh"), name)
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	err = cmd.Run()
	return buf.Bytes(), err
}

func isExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// PortcullisServerBinary builds ./cmd/portcullis-server once per test process
// and returns its path.
func PortcullisServerBinary(t testing.TB) string {
	t.Helper()
	return buildProject(t, "./cmd/portcullis-server", "portcullis-server")
}

// PortcullisCLIBinary builds ./cmd/portcullis once per test process and
// returns its path.
func PortcullisCLIBinary(t testing.TB) string {
	t.Helper()
	return buildProject(t, "./cmd/portcullis", "portcullis")
}

func buildProject(t testing.TB, pkg, name string) string {
	t.Helper()
	root := RepoRoot(t)
	projectMu.Lock()
	b := projectBuilds[pkg]
	if b == nil {
		b = &projectBuild{}
		projectBuilds[pkg] = b
	}
	projectMu.Unlock()

	b.once.Do(func() {
		dir, err := projectBinaryDir()
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		args := []string{"build", "-o", b.path}
		args = append(args, strings.Fields(os.Getenv(BuildFlagsEnv))...)
		args = append(args, pkg)
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		start := time.Now()
		b.out, b.err = cmd.CombinedOutput()
		t.Logf("go %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatalf("building %s failed: %v\n--- go build output ---\n%s", pkg, b.err, b.out)
	}
	return b.path
}

func projectBinaryDir() (string, error) {
	projectMu.Lock()
	defer projectMu.Unlock()
	if projectBinDir != "" {
		return projectBinDir, nil
	}
	// Without Main nobody removes this directory at exit; that is the price
	// of using the framework from a package without TestMain.
	d, err := os.MkdirTemp("", "portcullis-e2e-bin-")
	if err != nil {
		return "", err
	}
	projectBinDir = d
	return d, nil
}

// Main runs the tests of an end-to-end package: use it as
//
//	func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }
//
// It owns the temporary directory the project's binaries are built into and
// removes it when the tests are done, and ends the run with a banner listing
// the tests skipped because a component is missing (SkipMissing).
func Main(m *testing.M) int {
	d, err := os.MkdirTemp("", "portcullis-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating the binary directory: %v\n", err)
		return 1
	}
	projectMu.Lock()
	projectBinDir = d
	projectMu.Unlock()
	code := m.Run()
	reportMissingEverywhere()
	if err := os.RemoveAll(d); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "removing %s: %v\n", d, err)
	}
	return code
}
