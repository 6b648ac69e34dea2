package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"k8s.io/apimachinery/pkg/util/sets"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// recordingSink is an audit backend that keeps every event.
type recordingSink struct {
	mu     sync.Mutex
	events []auditinternal.Event
}

func (s *recordingSink) ProcessEvents(events ...*auditinternal.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range events {
		s.events = append(s.events, *ev.DeepCopy())
	}
	return true
}

// stages are the stages of the events of the request to path.
func (s *recordingSink) stages(path string) []auditinternal.Stage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []auditinternal.Stage
	for _, ev := range s.events {
		if strings.HasPrefix(ev.RequestURI, path) {
			out = append(out, ev.Stage)
		}
	}
	return out
}

func (s *recordingSink) last(path string) (auditinternal.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.events) - 1; i >= 0; i-- {
		if strings.HasPrefix(s.events[i].RequestURI, path) {
			return s.events[i], true
		}
	}
	return auditinternal.Event{}, false
}

// handoffEnv is the proxy behind the generic chain's audit filter, with
// WithStreamHandoff inside it as hotPathChain installs it, and the request
// counted in and out of the handlers on both sides of the hand-off.
type handoffEnv struct {
	*testEnv
	sink *recordingSink
	// inner counts requests inside WithStreamHandoff (in the proxy and
	// below); outer counts requests inside the audit filter.
	inner, outer atomic.Int32
}

func newHandoffEnv(t *testing.T) *handoffEnv {
	t.Helper()
	return newHandoffEnvWith(t, Options{})
}

func newHandoffEnvWith(t *testing.T, opts Options) *handoffEnv {
	t.Helper()
	e := &handoffEnv{testEnv: newTestEnvWith(t, opts), sink: &recordingSink{}}
	counted := func(n *atomic.Int32, h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			defer n.Add(-1)
			h.ServeHTTP(w, r)
		})
	}
	var h http.Handler = counted(&e.inner, e.proxy)
	h = WithStreamHandoff(h)
	h = counted(&e.outer, h)
	// As the server's check says of proxied watches and followed logs.
	longRunning := func(r *http.Request, _ *request.RequestInfo) bool {
		q := r.URL.Query()
		return q.Has("watch") || q.Has("follow")
	}
	h = genericapifilters.WithAudit(h, e.sink, policy.NewFakePolicyRuleEvaluator(auditinternal.LevelMetadata, nil), longRunning)
	h = fakeAuthentication(h)
	h = genericapifilters.WithRequestInfo(h, &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")})
	h = genericapifilters.WithAuditInit(h)
	front := httptest.NewUnstartedServer(WithDeferredImpersonation(h))
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	e.front = front
	return e
}

// get starts a GET as alice and returns the response, its body's lines and
// a function to cancel it.
func (e *handoffEnv) get(t *testing.T, path string) (*http.Response, <-chan string, <-chan error, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.front.URL+path, nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	resp, err := e.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	lines := make(chan string, 16)
	end := make(chan error, 1)
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				lines <- l
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				end <- err
				return
			}
		}
	}()
	return resp, lines, end, cancel
}

func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case l := <-lines:
		if !strings.Contains(l, want) {
			t.Fatalf("read %q, want %s", l, want)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("no %s within 2s: the proxy buffers", want)
	}
}

// watchUpstream serves a watch: one event, then one more per value received
// on next, then ends the response when next is closed, or aborts it (a
// stream reset) when abort is closed.
func watchUpstream(next <-chan string, abort <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;stream=watch")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, `{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"one"}}}`)
		w.(http.Flusher).Flush()
		for {
			select {
			case ev, ok := <-next:
				if !ok {
					return
				}
				fmt.Fprintln(w, ev)
				w.(http.Flusher).Flush()
			case <-abort:
				panic(http.ErrAbortHandler)
			case <-r.Context().Done():
				return
			}
		}
	}
}

const watchPath = "/clusters/c1/api/v1/namespaces/default/configmaps"

func TestStreamHandoffDeliversEventsAtOnceAndAuditsTheEnd(t *testing.T) {
	e := newHandoffEnv(t)
	next := make(chan string)
	e.up.setHandler(watchUpstream(next, nil))
	before := counterValue(t, requestsTotal.WithLabelValues("c1", "200"))

	resp, lines, end, _ := e.get(t, watchPath+"?watch=true")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json;stream=watch" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if id := resp.Header.Get("Audit-Id"); id == "" {
		t.Error("no Audit-Id response header")
	}
	readLine(t, lines, "ADDED")

	// The stream was handed off: the proxy and everything below the
	// hand-off returned, the audit filter did not.
	within(t, "the proxy to return", func() bool { return e.inner.Load() == 0 })
	if e.outer.Load() != 1 {
		t.Fatalf("%d requests inside the audit filter, want the watch", e.outer.Load())
	}
	if got := counterValue(t, requestsTotal.WithLabelValues("c1", "200")) - before; got != 1 {
		t.Errorf("requests_total{code=200} grew by %v, want 1", got)
	}
	if st := e.sink.stages(watchPath); !slices.Equal(st, []auditinternal.Stage{auditinternal.StageRequestReceived, auditinternal.StageResponseStarted}) {
		t.Fatalf("audit stages while the watch is open: %v", st)
	}

	for i := range 3 {
		ev := fmt.Sprintf(`{"type":"MODIFIED","object":{"kind":"ConfigMap","metadata":{"name":"one","resourceVersion":"%d"}}}`, i)
		next <- ev
		readLine(t, lines, fmt.Sprintf(`"resourceVersion":"%d"`, i))
	}

	// The upstream ends the watch: a clean end for the client, then the
	// audit event's last stage.
	close(next)
	select {
	case err := <-end:
		if err != nil {
			t.Fatalf("the stream ended with %v, want a clean end", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
	within(t, "ResponseComplete", func() bool {
		st := e.sink.stages(watchPath)
		return len(st) == 3 && st[2] == auditinternal.StageResponseComplete
	})
	ev, _ := e.sink.last(watchPath)
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusOK {
		t.Errorf("audit response status %+v, want 200", ev.ResponseStatus)
	}
	if ev.Annotations["proxy.portcullis.dev/verb"] != "watch" {
		t.Errorf("audit annotations %v, want the proxy's", ev.Annotations)
	}
	within(t, "the audit filter to return", func() bool { return e.outer.Load() == 0 })
}

// Without audit the proxy classifies only the requests that may be streams;
// every kind of stream is still handed off.
func TestStreamHandoffWithoutAudit(t *testing.T) {
	e := newHandoffEnvWith(t, Options{Unaudited: true})
	next := make(chan string)
	defer close(next)
	e.up.setHandler(watchUpstream(next, nil))
	for _, path := range []string{
		watchPath + "?watch=true",
		"/clusters/c1/api/v1/watch/namespaces/default/configmaps",
		"/clusters/c1/api/v1/namespaces/default/pods/p/log?follow=true",
	} {
		resp, lines, _, cancel := e.get(t, path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		readLine(t, lines, "ADDED")
		within(t, path+" to be handed off", func() bool { return e.inner.Load() == 0 && e.outer.Load() == 1 })
		cancel()
		within(t, path+" to end", func() bool { return e.outer.Load() == 0 })
	}
}

func TestStreamHandoffUpstreamErrorResetsTheStream(t *testing.T) {
	e := newHandoffEnv(t)
	next := make(chan string)
	abort := make(chan struct{})
	e.up.setHandler(watchUpstream(next, abort))

	_, lines, end, _ := e.get(t, watchPath+"?watch=true")
	readLine(t, lines, "ADDED")
	next <- `{"type":"MODIFIED"}`
	readLine(t, lines, "MODIFIED")
	close(abort)
	select {
	case err := <-end:
		if err == nil {
			t.Fatal("the stream ended cleanly after the upstream reset it; want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
	// The audit filter saw the abort.
	within(t, "the audit event's last stage", func() bool {
		st := e.sink.stages(watchPath)
		return len(st) == 3
	})
	if st := e.sink.stages(watchPath); st[2] != auditinternal.StagePanic {
		t.Errorf("audit stages %v, want the abort (Panic) last", st)
	}
}

func TestStreamHandoffClientGoneCancelsUpstream(t *testing.T) {
	e := newHandoffEnv(t)
	upstreamDone := make(chan struct{})
	e.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		watchUpstream(nil, nil)(w, r)
	})
	_, lines, _, cancel := e.get(t, watchPath+"?watch=true")
	readLine(t, lines, "ADDED")
	cancel()
	select {
	case <-upstreamDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream watch is still open after the client went away")
	}
	within(t, "the audit filter to return", func() bool { return e.outer.Load() == 0 })
}

func TestStreamHandoffCopiesBurstsIntact(t *testing.T) {
	e := newHandoffEnv(t)
	// Events of awkward sizes around the one-byte wait and the 4 KiB
	// buffer, one of them much larger.
	var want bytes.Buffer
	var events []string
	for i, size := range []int{0, 1, 2, 4094, 4095, 4096, 4097, 100000, 10} {
		ev := fmt.Sprintf(`{"n":%d,"pad":"%s"}`+"\n", i, strings.Repeat("x", size))
		events = append(events, ev)
		want.WriteString(ev)
	}
	e.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for _, ev := range events {
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	})
	for name, client := range map[string]*http.Client{"HTTP/2": e.front.Client(), "HTTP/1.1": e.h1Client} {
		resp, body := e.do(t, client, "GET", "/clusters/c1/api/v1/namespaces/default/pods/p/log?follow=true", bearer("alice-token"))
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want.Bytes()) {
			t.Errorf("%s: status %d, %d bytes; want 200 and the %d bytes sent", name, resp.StatusCode, len(body), want.Len())
		}
	}
}

func TestStreamHandoffLeavesOtherResponsesAlone(t *testing.T) {
	e := newHandoffEnv(t)
	// A watch refused upstream: an answer of known length through the
	// streaming proxy.
	e.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("watch") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":403}`)
			return
		}
		// An ordinary GET, streamed (no Content-Length) by the upstream.
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ordinary")
		w.(http.Flusher).Flush()
		io.WriteString(w, " answer")
	})
	for _, c := range []struct {
		path string
		code int
		body string
	}{
		{watchPath + "?watch=true", http.StatusForbidden, `"code":403`},
		{watchPath, http.StatusOK, "ordinary answer"},
	} {
		resp, body := e.do(t, e.front.Client(), "GET", c.path, bearer("alice-token"))
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.body) {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, resp.StatusCode, body, c.code, c.body)
		}
		within(t, "ResponseComplete", func() bool {
			ev, ok := e.sink.last(c.path)
			return ok && ev.Stage == auditinternal.StageResponseComplete
		})
		if ev, _ := e.sink.last(c.path); ev.ResponseStatus == nil || ev.ResponseStatus.Code != int32(c.code) {
			t.Errorf("GET %s: audit status %+v, want %d", c.path, ev.ResponseStatus, c.code)
		}
	}
	// Only a GET on the proxy's paths that may be a stream gets a slot.
	var sawSlot bool
	h := WithStreamHandoff(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, sawSlot = r.Context().Value(streamSlotKey{}).(*streamSlot)
	}))
	for _, c := range []struct {
		method, path string
		slot         bool
	}{
		{"GET", "/clusters/c1/api/v1/configmaps?watch=true", true},
		{"GET", "/clusters/c1/api/v1/watch/configmaps", true},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods/p/log?follow=1", true},
		{"GET", "/clusters/c1/api/v1/configmaps", false},
		{"POST", "/clusters/c1/api/v1/namespaces/default/configmaps?watch=true", false},
		{"GET", "/tokenreview?watch=true", false},
	} {
		sawSlot = false
		ctx, cancel := context.WithCancel(context.Background())
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, c.method, c.path, nil))
		cancel()
		if sawSlot != c.slot {
			t.Errorf("%s %s: slot %v, want %v", c.method, c.path, sawSlot, c.slot)
		}
	}
}

// scriptedBody returns its chunks one Read at a time, then err.
type scriptedBody struct {
	chunks [][]byte
	err    error
	reads  []int // the buffer sizes read into
	closed bool
}

func (b *scriptedBody) Read(p []byte) (int, error) {
	b.reads = append(b.reads, len(p))
	if len(b.chunks) == 0 {
		return 0, b.err
	}
	n := copy(p, b.chunks[0])
	if n == len(b.chunks[0]) {
		b.chunks = b.chunks[1:]
	} else {
		b.chunks[0] = b.chunks[0][n:]
	}
	return n, nil
}

func (b *scriptedBody) Close() error { b.closed = true; return nil }

// flushRecorder records writes and flushes, and can fail writes.
type flushRecorder struct {
	buf      bytes.Buffer
	log      []string
	header   http.Header
	failFrom int // fail the write with this index, if > 0
}

func (f *flushRecorder) Header() http.Header {
	if f.header == nil {
		f.header = http.Header{}
	}
	return f.header
}
func (f *flushRecorder) WriteHeader(int) {}
func (f *flushRecorder) Write(p []byte) (int, error) {
	if f.failFrom > 0 && len(f.log) >= f.failFrom {
		return 0, errors.New("client gone")
	}
	f.log = append(f.log, fmt.Sprintf("write %d", len(p)))
	return f.buf.Write(p)
}
func (f *flushRecorder) Flush() { f.log = append(f.log, "flush") }

func TestCopyStream(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 4096)
	full := bytes.Repeat([]byte("s"), 512)
	body := &scriptedBody{chunks: [][]byte{[]byte("hello"), full, big, []byte("tail"), []byte("x")}, err: io.EOF}
	w := &flushRecorder{}
	copyStream(w, body)
	want := []string{"flush", "write 5", "flush", "write 512", "flush", "write 4096", "flush", "write 4", "flush", "write 1", "flush"}
	if !slices.Equal(w.log, want) {
		t.Errorf("writes and flushes %v, want %v", w.log, want)
	}
	// One-byte reads while waiting; then the rest of what came, after that
	// byte, in a pooled buffer, and more while reads fill it.
	wantReads := []int{1, 4095, 1, 4095, 1, 4095, 4096, 1, 4095}
	if !slices.Equal(body.reads, wantReads) {
		t.Errorf("read buffer sizes %v, want %v", body.reads, wantReads)
	}
	if !body.closed {
		t.Error("body not closed")
	}

	// A write error stops the copy quietly.
	// (The first two chunks go out in one write: "a" is the one-byte wait,
	// "b" what the read after it finds.)
	body = &scriptedBody{chunks: [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")}, err: io.EOF}
	w = &flushRecorder{failFrom: 3} // the headers' flush, write ab, flush; then fail
	copyStream(w, body)
	if w.buf.String() != "ab" || !body.closed {
		t.Errorf("after a failed write: wrote %q, closed %v; want \"ab\" and closed", w.buf.String(), body.closed)
	}

	// An upstream read error aborts the response.
	body = &scriptedBody{chunks: [][]byte{[]byte("a")}, err: errors.New("stream reset")}
	w = &flushRecorder{}
	func() {
		defer func() {
			if r := recover(); r != http.ErrAbortHandler {
				t.Errorf("panic %v, want http.ErrAbortHandler", r)
			}
		}()
		copyStream(w, body)
	}()
	if w.buf.String() != "a" || !body.closed {
		t.Errorf("after a read error: wrote %q, closed %v; want \"a\" and closed", w.buf.String(), body.closed)
	}
}

func TestHandOffStreamOnlyTakesStreams(t *testing.T) {
	slot := &streamSlot{}
	ctx := context.WithValue(context.Background(), streamSlotKey{}, slot)
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://up/api", nil)
	for _, c := range []struct {
		name string
		res  *http.Response
		take bool
	}{
		{"stream", &http.Response{StatusCode: 200, ContentLength: -1}, true},
		{"known length", &http.Response{StatusCode: 200, ContentLength: 10}, false},
		{"error", &http.Response{StatusCode: 500, ContentLength: -1}, false},
		{"trailers", &http.Response{StatusCode: 200, ContentLength: -1, Trailer: http.Header{"X": nil}}, false},
	} {
		slot.body = nil
		body := io.NopCloser(strings.NewReader("x"))
		c.res.Body, c.res.Request = body, req
		if err := HandOffStream(c.res); err != nil {
			t.Fatal(err)
		}
		if took := slot.body != nil; took != c.take {
			t.Errorf("%s: taken %v, want %v", c.name, took, c.take)
		}
		if c.take && c.res.Body != http.NoBody || !c.take && c.res.Body != body {
			t.Errorf("%s: response body %T", c.name, c.res.Body)
		}
	}
	// Without a slot (no WithStreamHandoff in the chain) the proxy copies.
	res := &http.Response{StatusCode: 200, ContentLength: -1, Body: http.NoBody, Request: httptest.NewRequest("GET", "/", nil)}
	if err := HandOffStream(res); err != nil || res.Body != http.NoBody {
		t.Errorf("without a slot: %v %T", err, res.Body)
	}
}

// requestProbe remembers, weakly, the last request it forwarded.
type requestProbe struct {
	next http.RoundTripper
	last atomic.Pointer[weak.Pointer[http.Request]]
}

func (p *requestProbe) RoundTrip(r *http.Request) (*http.Response, error) {
	w := weak.Make(r)
	p.last.Store(&w)
	return p.next.RoundTrip(r)
}

// An idle handed-off stream holds nothing of the request sent upstream:
// the upstream transport keeps its response, whose Request field pointed
// at the outgoing request with its cloned headers, for as long as the
// stream lasts (about 1.5 KiB per idle watch).
func TestStreamHandoffReleasesTheUpstreamRequest(t *testing.T) {
	e := newHandoffEnv(t)
	u := e.proxy.state.Load().upstreams["c1"]
	probe := &requestProbe{next: u.streamProxy.Transport}
	u.streamProxy.Transport = probe
	next := make(chan string)
	e.up.setHandler(watchUpstream(next, nil))

	resp, lines, _, _ := e.get(t, watchPath+"?watch=true")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	readLine(t, lines, "ADDED")
	within(t, "the proxy to return", func() bool { return e.inner.Load() == 0 })
	last := probe.last.Load()
	if last == nil {
		t.Fatal("the watch did not go through the stream proxy's transport")
	}
	within(t, "the outgoing request to be collected", func() bool {
		runtime.GC()
		return last.Value() == nil
	})
	// The stream still works.
	next <- `{"type":"MODIFIED","object":{"kind":"ConfigMap","metadata":{"name":"one"}}}`
	readLine(t, lines, "MODIFIED")
	close(next)
}
