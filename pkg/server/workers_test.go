package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	apirequest "k8s.io/apiserver/pkg/endpoints/request"
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

func TestWorkersServeOnAnotherGoroutine(t *testing.T) {
	var served string
	h := withWorkers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served = goid()
		w.WriteHeader(http.StatusTeapot)
	}), 2, isWatch)
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
	h := withWorkers(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(boom) }), 1, isWatch)
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
	abort := withWorkers(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }), 1, isWatch)
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
	ok := withWorkers(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), 1, isWatch)
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
	h := withWorkers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}), 2, isWatch)
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
