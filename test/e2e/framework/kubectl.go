package framework

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// KubectlTimeout bounds every Kubectl call unless KubectlOptions.Timeout says
// otherwise.
const KubectlTimeout = 60 * time.Second

// KubectlOptions configures KubectlWith.
type KubectlOptions struct {
	// Kubeconfig is the only configuration kubectl sees (KUBECONFIG and
	// --kubeconfig). Empty means none: kubectl then uses its defaults, under
	// a HOME that is an empty temporary directory.
	Kubeconfig string
	// Env is added to kubectl's otherwise minimal environment (PATH, HOME,
	// KUBECONFIG), e.g. KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false.
	Env     []string
	Stdin   io.Reader
	Timeout time.Duration
}

// Kubectl runs the kubectl found on PATH with the given kubeconfig and
// arguments, with a timeout (KubectlTimeout), and an isolated environment: HOME
// is a fresh temporary directory and no other variable of the test process is
// passed, so no user configuration or cache leaks in. err is non-nil when
// kubectl exits non-zero or times out.
func Kubectl(t testing.TB, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return KubectlWith(t, KubectlOptions{Kubeconfig: kubeconfig}, args...)
}

// KubectlWith is Kubectl with options.
func KubectlWith(t testing.TB, opts KubectlOptions, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed on PATH: %v", err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = KubectlTimeout
	}
	home := t.TempDir()
	kubeconfig := opts.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = filepath.Join(home, ".kube", "config") // does not exist
	} else {
		args = append([]string{"--kubeconfig=" + kubeconfig}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = home
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"KUBECONFIG=" + kubeconfig,
		"LANG=C.UTF-8",
	}, opts.Env...)
	cmd.Stdin = opts.Stdin
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("kubectl %s (%v): %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), exitDescription(runErr))
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		err = fmt.Errorf("kubectl %s: timed out after %v: %w", strings.Join(args, " "), opts.Timeout, runErr)
	case runErr != nil:
		err = fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), runErr)
	}
	return out.String(), errb.String(), err
}
