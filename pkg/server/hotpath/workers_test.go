package hotpath

import (
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
)

func workerRequest(path string, longRunning bool) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	verb := "get"
	if longRunning {
		verb = "watch"
	}
	return r.WithContext(apirequest.WithRequestInfo(r.Context(), &apirequest.RequestInfo{Verb: verb}))
}

// settle gives new workers time to reach their queue: until then requests
// run on their own goroutines, as when every worker is busy.
func settle() { time.Sleep(100 * time.Millisecond) }

func isWatch(_ *http.Request, info *apirequest.RequestInfo) bool { return info.Verb == "watch" }

func goid() string {
	buf := make([]byte, 64)
	return strings.Fields(string(buf[:runtime.Stack(buf, false)]))[1]
}

// onWorkers runs h through withWorkers for short and long-running requests.
func onWorkers(h http.Handler, workers int) http.Handler {
	return withWorkers(h, longRunningChain{plain: h, logged: h}, workers, isWatch)
}

// Long-running requests go to the long-running chain, the variant with HTTP
// logging only when klog's verbosity turns the logging filter on.
func TestWorkersSendLongRunningRequestsToTheirChain(t *testing.T) {
	var got string
	mark := func(name string) http.Handler {
		return http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got = name })
	}
	h := withWorkers(mark("short"), longRunningChain{plain: mark("plain"), logged: mark("logged")}, 1, isWatch)
	settle()
	for _, tc := range []struct {
		verbosity   string
		longRunning bool
		want        string
	}{
		{"0", false, "short"},
		{"0", true, "plain"},
		{"3", true, "logged"},
		{"3", false, "short"},
		{"2", true, "plain"},
	} {
		setVerbosity(t, tc.verbosity)
		got = ""
		h.ServeHTTP(httptest.NewRecorder(), workerRequest("/clusters/c1/api", tc.longRunning))
		if got != tc.want {
			t.Errorf("-v=%s, long-running %v: served by %q, want %q", tc.verbosity, tc.longRunning, got, tc.want)
		}
	}
}

func setVerbosity(t *testing.T, v string) {
	t.Helper()
	var fs flag.FlagSet
	klog.InitFlags(&fs)
	old := fs.Lookup("v").Value.String()
	if err := fs.Set("v", v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Set("v", old) })
}

func TestWorkersServeOnAnotherGoroutine(t *testing.T) {
	var served string
	h := onWorkers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served = goid()
		w.WriteHeader(http.StatusTeapot)
	}), 2)
	settle()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, workerRequest("/tokenreview/c1", false))
	if w.Code != http.StatusTeapot {
		t.Fatalf("status %d", w.Code)
	}
	if served == goid() {
		t.Errorf("a short request ran on the request's goroutine, want a worker")
	}
	h.ServeHTTP(w, workerRequest("/clusters/c1/api", true))
	if served != goid() {
		t.Errorf("a long-running request ran on a worker, want the request's goroutine")
	}
}

func TestWorkersCarryPanicsBack(t *testing.T) {
	boom := errors.New("boom")
	h := onWorkers(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(boom) }), 1)
	settle()
	func() {
		defer func() {
			p := recover()
			wp, ok := p.(*workerPanic)
			if !ok || !errors.Is(wp, boom) || !strings.Contains(wp.Error(), "worker goroutine") {
				t.Errorf("recovered %#v, want a workerPanic wrapping boom with the worker's stack", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), workerRequest("/tokenreview/c1", false))
	}()
	abort := onWorkers(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }), 1)
	settle()
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recovered %#v, want http.ErrAbortHandler as it was", p)
			}
		}()
		abort.ServeHTTP(httptest.NewRecorder(), workerRequest("/tokenreview/c1", false))
	}()
	// The worker survived both.
	ok := onWorkers(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), 1)
	w := httptest.NewRecorder()
	ok.ServeHTTP(w, workerRequest("/tokenreview/c1", false))
	if w.Code != http.StatusNoContent {
		t.Errorf("status %d after panics", w.Code)
	}
}

// With every worker busy, requests run on their own goroutines rather than
// wait.
func TestWorkersOverflowRunsInline(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	h := onWorkers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}), 2)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), workerRequest("/tokenreview/c1", false)) })
	}
	for range 6 {
		<-started // all six run at once although there are two workers
	}
	close(release)
	wg.Wait()
}
