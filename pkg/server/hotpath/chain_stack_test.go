package hotpath

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"sync"
	"testing"
	"time"
	"unsafe"

	"k8s.io/apimachinery/pkg/util/sets"
	utilwaitgroup "k8s.io/apimachinery/pkg/util/waitgroup"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"portcullis.dev/portcullis/pkg/proxy"
)

// Frames that the test's goroutine does not have but a real idle watch's
// does, in bytes (go tool objdump, x/net v0.57, Go 1.26, amd64):
// runHandler, initALPNRequest.ServeHTTP, serverHandler.ServeHTTP and
// APIServerHandler.ServeHTTP above the chain (664), and the HTTP/2
// transport's body read below copyStream (transportResponseBody.Read,
// pipe.Read, Cond.Wait, notifyListWait: 376).
const realFramesOutsideTest = 664 + 376

// The runtime halves an idle goroutine's stack when it uses less than a
// quarter of it, counting 800 bytes of guard (runtime.shrinkstack). The
// handler goroutine of a watch grows to 16 KiB while the request is set up;
// to be halved it must then wait on less than 4,096 - 800 bytes.
const shrinkableDepth = 16<<10/4 - 800

// TestIdleStreamWaitsOnAShallowStack measures how deep in its stack a proxied
// watch waits for upstream data, through the real hot-path chain with audit
// on, and checks that the handler goroutine's stack can be halved while the
// watch is idle: 8 KiB per open watch.
//
// It measures the frames of the build it runs in, so it means something only
// without the race detector, whose instrumentation makes frames larger: the
// Makefile's unit target runs it again without -race.
func TestIdleStreamWaitsOnAShallowStack(t *testing.T) {
	if raceEnabled {
		t.Skip("frame sizes under -race are not production's; make unit runs this test again without -race")
	}
	// A collection could move the goroutine's stack between the two
	// measurements.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	events := &recordingBackend{}
	router := NewRouter(http.NotFoundHandler(), Chain(handOffProbe(t), testChainConfig(events)))

	probe := &depthProbe{depth: make(chan uintptr, 1), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequest(http.MethodGet, "/clusters/c1/api/v1/namespaces/default/configmaps?watch=true", nil).WithContext(context.WithValue(ctx, probeKey{}, probe))
	req.Header.Set("Authorization", "Bearer test")
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		growStack(64)
		probe.top = stackAddr()
		router.ServeHTTP(w, req)
	}()
	var depth uintptr
	select {
	case depth = <-probe.depth:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream was never copied from the hand-off")
	}
	close(probe.release)
	<-done

	if w.Code != http.StatusOK || w.Body.String() != "x" {
		t.Fatalf("response %d %q, want 200 and the probe's one byte", w.Code, w.Body.String())
	}
	if n := events.count(); n < 2 {
		t.Fatalf("%d audit events, want the request's (audit must be in the measured chain)", n)
	}
	total := int(depth) + realFramesOutsideTest
	t.Logf("an idle watch waits %d bytes deep in the chain, about %d bytes with the HTTP/2 frames; the runtime halves its stack below %d", depth, total, shrinkableDepth)
	if total >= shrinkableDepth {
		t.Errorf("an idle watch waits about %d bytes deep, want under %d so that its 16 KiB stack is halved (see Chain)", total, shrinkableDepth)
	}
}

// handOffProbe stands in for the proxy at the hand-off: it answers a watch
// with a streamed response whose body is the request's depthProbe, through
// the proxy's own ModifyResponse.
func handOffProbe(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probe := r.Context().Value(probeKey{}).(*depthProbe)
		res := &http.Response{StatusCode: http.StatusOK, ContentLength: -1, Header: http.Header{}, Body: probe, Request: r}
		if err := proxy.HandOffStream(res); err != nil || res.Body != http.NoBody {
			t.Errorf("the hot-path chain offered no hand-off slot for a watch (err %v)", err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

type probeKey struct{}

// depthProbe is an upstream body: its first Read reports how deep in the
// stack it was called, waits for release and returns one byte.
type depthProbe struct {
	top     uintptr
	depth   chan uintptr
	release chan struct{}
	sent    bool
}

// Read measures from its own frame down: a little more than the real
// wait's depth, whose frames below copyStream are counted apart.
func (p *depthProbe) Read(b []byte) (int, error) {
	if p.sent {
		return 0, io.EOF
	}
	p.depth <- p.top - stackAddr()
	<-p.release
	p.sent = true
	b[0] = 'x'
	return 1, nil
}

func (p *depthProbe) Close() error { return nil }

// stackAddr is the address of a local of its own frame, in the caller's
// stack.
//
//go:noinline
func stackAddr() uintptr {
	var x byte
	return uintptr(unsafe.Pointer(&x))
}

// growStack grows the goroutine's stack by at least kib KiB, so that nothing
// the chain does afterwards grows (moves) it again.
//
//go:noinline
func growStack(kib int) byte {
	var pad [1024]byte
	if kib <= 1 {
		return pad[0]
	}
	pad[kib%len(pad)] = byte(kib)
	return growStack(kib-1) + pad[0]
}

// testChainConfig is the configuration Chain reads, with every user
// authenticated, everything authorized and audit at RequestResponse level.
func testChainConfig(events audit.Backend) *genericapiserver.Config {
	codecs := testCodecs()
	c := &genericapiserver.Config{
		Serializer:                     codecs,
		MaxRequestsInFlight:            10,
		MaxMutatingRequestsInFlight:    10,
		RequestTimeout:                 time.Minute,
		NonLongRunningRequestWaitGroup: new(utilwaitgroup.SafeWaitGroup),
		LongRunningFunc:                LongRunning(nil),
		AuditBackend:                   events,
		AuditPolicyRuleEvaluator:       policy.NewFakePolicyRuleEvaluator(auditinternal.LevelRequestResponse, nil),
		RequestInfoResolver: &apirequest.RequestInfoFactory{
			APIPrefixes:          sets.NewString("api", "apis"),
			GrouplessAPIPrefixes: sets.NewString("api"),
		},
	}
	c.Authentication.Authenticator = authenticator.RequestFunc(func(*http.Request) (*authenticator.Response, bool, error) {
		return &authenticator.Response{User: &user.DefaultInfo{Name: "alice", Groups: []string{"devs"}}}, true, nil
	})
	c.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	return c
}

// recordingBackend counts audit events.
type recordingBackend struct {
	mu sync.Mutex
	n  int
}

func (b *recordingBackend) ProcessEvents(events ...*auditinternal.Event) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += len(events)
	return true
}

func (b *recordingBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *recordingBackend) Run(<-chan struct{}) error { return nil }
func (b *recordingBackend) Shutdown()                 {}
func (b *recordingBackend) String() string            { return "recording" }
