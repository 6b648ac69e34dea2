package framework

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Front plays a Kubernetes Service in front of several replicas: a TCP
// balancer on 127.0.0.1 that sends each new connection to the next ready
// backend, round robin. A backend is ready while its /readyz answers 200
// (polled every 100 ms, as an endpoints controller would learn it); a
// backend that refuses the connection is skipped for the next one.
type Front struct {
	URL  string // https://127.0.0.1:<port>
	Port int

	t        testing.TB
	l        net.Listener
	mu       sync.Mutex
	backends []*frontBackend
	next     atomic.Uint64
	conns    atomic.Int64
	wg       sync.WaitGroup
	stop     context.CancelFunc
}

type frontBackend struct {
	addr  string
	ready atomic.Bool
}

// StartFront starts a front for the backends (host:port of HTTPS servers
// with a /readyz endpoint).
func StartFront(t testing.TB, backends ...string) *Front {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Front{Port: l.Addr().(*net.TCPAddr).Port, t: t, l: l, stop: cancel}
	f.URL = "https://" + l.Addr().String()
	f.SetBackends(backends...)
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.probe(ctx) }()
	go func() { defer f.wg.Done(); f.accept() }()
	t.Cleanup(func() {
		cancel()
		l.Close()
		f.wg.Wait()
	})
	return f
}

// SetBackends replaces the backends; they start not ready until probed.
func (f *Front) SetBackends(addrs ...string) {
	bs := make([]*frontBackend, len(addrs))
	for i, a := range addrs {
		bs[i] = &frontBackend{addr: a}
	}
	f.mu.Lock()
	f.backends = bs
	f.mu.Unlock()
	f.probeOnce(context.Background())
}

// Connections is how many connections the front has passed on.
func (f *Front) Connections() int64 { return f.conns.Load() }

func (f *Front) snapshot() []*frontBackend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.backends
}

func (f *Front) probe(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.probeOnce(ctx)
		}
	}
}

// probeClient checks readiness only: TEST-ONLY, the balancer does not verify
// the backends' certificates (clients verify them end to end through it).
var probeClient = &http.Client{
	Timeout:   time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec // test-only readiness probe
}

func (f *Front) probeOnce(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range f.snapshot() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+b.addr+"/readyz", nil)
			resp, err := probeClient.Do(req)
			if err != nil {
				b.ready.Store(false)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			b.ready.Store(resp.StatusCode == http.StatusOK)
		}()
	}
	wg.Wait()
}

func (f *Front) accept() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.serve(c) }()
	}
}

func (f *Front) serve(c net.Conn) {
	defer c.Close()
	bs := f.snapshot()
	start := f.next.Add(1)
	var up net.Conn
	// Ready backends first, in turn; if none answers, any that accepts.
	for pass := 0; pass < 2 && up == nil; pass++ {
		for i := range bs {
			b := bs[(int(start)+i)%len(bs)]
			if pass == 0 && !b.ready.Load() {
				continue
			}
			var err error
			if up, err = net.DialTimeout("tcp", b.addr, time.Second); err == nil {
				break
			}
			b.ready.Store(false)
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	f.conns.Add(1)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
