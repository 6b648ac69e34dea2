package framework

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// KubectlProcess is a kubectl left running (get -w, logs -f, port-forward,
// attach): its stdout arrives line by line on Lines as kubectl writes it.
type KubectlProcess struct {
	// Lines receives each stdout line; it is closed when kubectl exits.
	Lines <-chan string
	// Stdin writes to kubectl's standard input (nil unless opts.Stdin was nil
	// and StartKubectl was asked for a pipe, see StartKubectl).
	Stdin io.WriteCloser

	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	stderr bytes.Buffer
	err    error
}

// StartKubectl starts the kubectl on PATH in the background, isolated as
// KubectlWith does, and stops it (if still running) when the test ends.
// When opts.Stdin is nil, kubectl's standard input is a pipe, written
// through KubectlProcess.Stdin.
func StartKubectl(t testing.TB, opts KubectlOptions, args ...string) *KubectlProcess {
	t.Helper()
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed on PATH: %v", err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	home := t.TempDir()
	kubeconfig := opts.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = filepath.Join(home, ".kube", "config")
	} else {
		args = append([]string{"--kubeconfig=" + kubeconfig}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	p := &KubectlProcess{cancel: cancel, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = home
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"KUBECONFIG=" + kubeconfig,
		"LANG=C.UTF-8",
	}, opts.Env...)
	if opts.Stdin != nil {
		cmd.Stdin = opts.Stdin
	} else {
		if p.Stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	cmd.WaitDelay = 5 * time.Second
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting kubectl %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("kubectl %s: started (pid %d)", strings.Join(args, " "), cmd.Process.Pid)
	lines := make(chan string, 1024)
	p.Lines = lines
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads: drop rather than block kubectl
			}
		}
		close(lines)
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		t.Logf("kubectl %s: %v; stderr: %s", strings.Join(args, " "), exitDescription(p.Err()), strings.TrimSpace(p.Stderr()))
	})
	return p
}

// WaitLine returns the first line for which match is true, failing the test
// if none arrives within timeout (or kubectl exits first).
func (p *KubectlProcess) WaitLine(t testing.TB, timeout time.Duration, match func(string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.Lines:
			if !ok {
				<-p.done
				t.Fatalf("kubectl exited (%v) before the expected line; stderr: %s", exitDescription(p.Err()), p.Stderr())
			}
			if match(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no expected line from kubectl within %v; stderr: %s", timeout, p.Stderr())
		}
	}
}

// Stop ends kubectl (SIGKILL through its context) and waits for it.
func (p *KubectlProcess) Stop() {
	p.cancel()
	<-p.done
}

// Wait waits for kubectl to exit on its own and returns its error.
func (p *KubectlProcess) Wait() error {
	<-p.done
	return p.Err()
}

// Done is closed when kubectl has exited.
func (p *KubectlProcess) Done() <-chan struct{} { return p.done }

// Err is kubectl's exit error, once it exited.
func (p *KubectlProcess) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stderr is what kubectl wrote to standard error so far.
func (p *KubectlProcess) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// KubectlTTY runs kubectl under a pseudo-terminal of rows x cols (util-linux
// script provides it), isolated as KubectlWith does, for exec -t and
// attach -t: kubectl then sends the terminal size, as for a person at a
// terminal. It returns everything written to the terminal. opts.Stdin is
// ignored: the terminal's input stays open and empty.
func KubectlTTY(t testing.TB, opts KubectlOptions, rows, cols int, args ...string) (string, error) {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatalf("script (util-linux) is needed on PATH for a pseudo-terminal: %v", err)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed on PATH: %v", err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = KubectlTimeout
	}
	home := t.TempDir()
	kubeconfig := opts.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = filepath.Join(home, ".kube", "config")
	}
	quoted := []string{shellQuote(kubectl), shellQuote("--kubeconfig=" + kubeconfig)}
	for _, a := range args {
		quoted = append(quoted, shellQuote(a))
	}
	line := fmt.Sprintf("stty rows %d cols %d; exec %s", rows, cols, strings.Join(quoted, " "))
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "--quiet", "--return", "--flush", "--command", line, "/dev/null")
	cmd.Dir = home
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"KUBECONFIG=" + kubeconfig,
		"LANG=C.UTF-8",
		"TERM=xterm",
	}, opts.Env...)
	// An open, silent input: script ends when kubectl does.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("kubectl %s (under a %dx%d terminal, %v): %v", strings.Join(args, " "), rows, cols, time.Since(start).Round(time.Millisecond), exitDescription(err))
	return string(out), err
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
