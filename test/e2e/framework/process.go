package framework

import (
	"context"
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

// LogTailLines is how many lines of each component's log a failed test prints.
const LogTailLines = 200

// ProcessSpec describes a process run by StartProcess.
type ProcessSpec struct {
	// Name names the component in logs and failure output, e.g. "etcd",
	// and its log file (processes of one test with the same name, started
	// one after the other, get kube-apiserver.log, kube-apiserver-2.log...).
	Name string
	Path string
	Args []string
	// Env is added to the test process' environment.
	Env []string
	// Dir is the working directory; the test's work directory when empty.
	Dir string
	// StopTimeout is how long Stop waits after SIGTERM before sending
	// SIGKILL to the process group. Default 10s.
	StopTimeout time.Duration
}

// Process is a component run in its own process group, its stdout and stderr
// appended to LogPath. The test's cleanup stops it and, if the test failed,
// prints the end of its log.
type Process struct {
	Name    string
	LogPath string

	spec ProcessSpec
	t    testing.TB

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stopped bool // Stop was called for the current run
}

// logPath is a log file for a process called name that no other process of
// the test uses: two kube-apiservers in one test get kube-apiserver.log and
// kube-apiserver-2.log.
func logPath(t testing.TB, name string) string {
	base := filepath.Join(WorkDir(t), "logs", unsafeChars.ReplaceAllString(name, "_"))
	path := base + ".log"
	for i := 2; ; i++ {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return path
		}
		path = fmt.Sprintf("%s-%d.log", base, i)
	}
}

// StartProcess starts spec's binary and registers its cleanup with t.
func StartProcess(t testing.TB, spec ProcessSpec) *Process {
	t.Helper()
	if spec.Dir == "" {
		spec.Dir = WorkDir(t)
	}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = 10 * time.Second
	}
	p := &Process{
		Name:    spec.Name,
		LogPath: logPath(t, spec.Name),
		spec:    spec,
		t:       t,
	}
	if err := os.MkdirAll(filepath.Dir(p.LogPath), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stopping %s: %v", p.Name, err)
		}
		if t.Failed() {
			t.Logf("\n===== %s: last %d lines of %s =====\n%s\n===== end of %s log =====",
				p.Name, LogTailLines, p.LogPath, p.LogTail(LogTailLines), p.Name)
		}
	})
	if err := p.start(); err != nil {
		t.Fatalf("starting %s: %v", p.Name, err)
	}
	return p
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s is already running", p.Name)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==> %s starting %s %s\n", time.Now().Format(time.RFC3339Nano), p.spec.Path, strings.Join(p.spec.Args, " "))

	path, args := placed(p.spec)
	cmd := exec.Command(path, args...)
	cmd.Dir = p.spec.Dir
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary dies without running cleanups (e.g. -timeout
		// panics), take the component with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr, p.stopped = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "==> %s %s exited: %v\n", time.Now().Format(time.RFC3339Nano), p.Name, exitDescription(err))
		logf.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (p *Process) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid returns the process id of the current run.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Exited is closed when the current run of the process has exited.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitErr returns the current run's exit error (nil while running or after
// exit status 0).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Stop sends SIGTERM to the process group, waits up to StopTimeout, then
// sends SIGKILL. It returns an error when the process had exited on its own
// with a failure, or when it did not exit cleanly after SIGTERM (exit status
// other than 0 and not killed by our signal).
func (p *Process) Stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	alreadyExited := p.exitedLocked()
	alreadyStopped := p.stopped
	p.stopped = true
	p.mu.Unlock()

	if alreadyStopped {
		<-done
		return nil
	}
	if alreadyExited {
		if err := p.ExitErr(); err != nil {
			return fmt.Errorf("%s had exited by itself: %w", p.Name, err)
		}
		return fmt.Errorf("%s had exited by itself with status 0", p.Name)
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	killed := false
	select {
	case <-done:
	case <-time.After(p.spec.StopTimeout):
		killed = true
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	// Reap anything left in the group (children of the component).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if killed {
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.Name, p.spec.StopTimeout)
	}
	err := p.ExitErr()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("%s exited after SIGTERM: %w", p.Name, err)
	}
	return nil
}

// Kill sends SIGKILL to the process group at once (a crash, as far as the
// component can tell) and waits for it to exit.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil || p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Restart stops the process (if running) and starts it again with the same
// arguments, appending to the same log file.
func (p *Process) Restart() error {
	if err := p.Stop(); err != nil {
		p.t.Logf("restart: %v", err)
	}
	return p.start()
}

// Log returns the whole log of the process.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// LogTail returns the last n lines of the process' log.
func (p *Process) LogTail(n int) string { return tail(p.Log(), n) }

// WaitUntil polls cond every 100ms until it returns nil, the process exits, or
// timeout passes. The error names the component, the last condition error and
// includes the end of its log.
func (p *Process) WaitUntil(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exited := p.Exited()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			p.t.Logf("%s: %s after %v", p.Name, what, time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-exited:
			hint := ""
			if strings.Contains(p.Log(), addressInUse) {
				hint = " (a port it was given was taken: see FreePort)"
			}
			return fmt.Errorf("%s exited (%v) before %s%s; last check: %v\n--- last 50 lines of %s ---\n%s",
				p.Name, exitDescription(p.ExitErr()), what, hint, last, p.LogPath, p.LogTail(50))
		case <-ctx.Done():
			return fmt.Errorf("%s: not %s within %v; last check: %v\n--- last 50 lines of %s ---\n%s",
				p.Name, what, timeout, last, p.LogPath, p.LogTail(50))
		case <-tick.C:
		}
	}
}
