package proxy

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// tokenFile is a bearer token kept in a file that is replaced when it
// rotates (a projected service-account token, or a Secret volume). The file
// is stat'ed at most once per recheck interval and read again only when its
// modification time or size changed; a read failure keeps the last good
// token, so a rotation in progress never interrupts the proxy.
//
// It is a measured exception to client-go's transport.NewCachedFileTokenSource
// and TokenSourceWrapTransport: those re-read the file once a minute rather
// than within TokenRecheckInterval of a rotation, cannot be told to re-read
// after the upstream refuses the token, and make the Authorization value
// per request on a cloned request, which an open watch then holds
// (BenchmarkIdleWatchMemory, BenchmarkProxyGet).
//
// The token itself is never logged.
type tokenFile struct {
	path    string
	recheck time.Duration
	clock   clock.PassiveClock

	mu        sync.Mutex
	token     string
	bearer    string // "Bearer " + token, made when the token is read
	modTime   time.Time
	size      int64
	checkedAt time.Time
	loaded    bool
}

func newTokenFile(path string, recheck time.Duration, clk clock.PassiveClock) *tokenFile {
	return &tokenFile{path: path, recheck: recheck, clock: clk}
}

// Get returns the current token.
func (t *tokenFile) Get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getLocked()
}

// Authorization returns the value of the Authorization header for the
// current token. It is made once per token, not per request: a
// service-account token is about a kilobyte, and a proxied watch holds its
// request's headers for as long as it is open.
func (t *tokenFile) Authorization() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.getLocked(); err != nil {
		return "", err
	}
	return t.bearer, nil
}

func (t *tokenFile) getLocked() (string, error) {
	now := t.clock.Now()
	if t.loaded && now.Sub(t.checkedAt) < t.recheck {
		return t.token, nil
	}
	t.checkedAt = now
	fi, err := os.Stat(t.path)
	if err != nil {
		return t.keep(fmt.Errorf("reading the upstream token file %s: %w", t.path, err))
	}
	if t.loaded && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return t.token, nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return t.keep(fmt.Errorf("reading the upstream token file %s: %w", t.path, err))
	}
	tok := string(bytes.TrimSpace(data))
	if tok == "" {
		return t.keep(fmt.Errorf("the upstream token file %s is empty", t.path))
	}
	if t.loaded && tok != t.token {
		klog.InfoS("Upstream token file changed; using the new token", "path", t.path)
	}
	t.token, t.modTime, t.size, t.loaded = tok, fi.ModTime(), fi.Size(), true
	t.bearer = "Bearer " + tok
	return t.token, nil
}

// keep returns the last good token, if any, and logs err; without one it
// returns err. Called with t.mu held.
func (t *tokenFile) keep(err error) (string, error) {
	if !t.loaded {
		return "", err
	}
	klog.ErrorS(err, "Keeping the previous upstream token")
	return t.token, nil
}

// Invalidate makes the next Get read the file again, e.g. after the upstream
// refused the token.
func (t *tokenFile) Invalidate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checkedAt = time.Time{}
	t.modTime = time.Time{}
}
