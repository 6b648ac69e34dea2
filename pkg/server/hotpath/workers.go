package hotpath

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"

	apirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// withWorkers runs the rest of the hot-path chain on long-lived worker
// goroutines instead of the HTTP/2 server's goroutine of the request.
//
// The HTTP/2 server starts a new goroutine per request, with a small stack;
// the filter chain, the TokenReview handler and the proxy then need several
// KiB of it, so every request grew its stack by copying it two or three
// times, about a tenth of a warm TokenReview's CPU. A worker's stack has
// already grown. (gRPC's server offers the same for the same reason.) The
// request's goroutine waits for the worker, so the ResponseWriter is never
// used by two goroutines at once, as with the timeout filter, which runs the
// chain in a goroutine of its own.
//
// Long-running requests (watches, logs -f, upgrades) would hold a worker
// for minutes: they go to long on the request's own goroutine, and so does
// any request that arrives while every worker is busy (to short).
func withWorkers(short http.Handler, long longRunningChain, workers int, longRunning apirequest.LongRunningRequestCheck) http.Handler {
	p := &workerPool{handler: short, long: long, longRunning: longRunning, jobs: make(chan *job)}
	for range workers {
		go p.work()
	}
	return p
}

type workerPool struct {
	handler     http.Handler
	long        longRunningChain
	longRunning apirequest.LongRunningRequestCheck
	jobs        chan *job
}

// ServeHTTP is kept small: an idle watch waits under its frame.
func (p *workerPool) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.isLongRunning(r) {
		// handler() returns before the request is served: no frame of
		// its own under an idle watch.
		p.long.handler().ServeHTTP(w, r)
		return
	}
	p.dispatch(w, r)
}

func (p *workerPool) isLongRunning(r *http.Request) bool {
	if p.longRunning == nil {
		return false
	}
	info, ok := apirequest.RequestInfoFrom(r.Context())
	return ok && p.longRunning(r, info)
}

// dispatch serves r on a worker, or on this goroutine if none is free.
//
//go:noinline
func (p *workerPool) dispatch(w http.ResponseWriter, r *http.Request) {
	j := jobs.Get().(*job)
	j.w, j.r = w, r
	select {
	case p.jobs <- j:
		panicked := <-j.done
		j.w, j.r = nil, nil
		jobs.Put(j)
		if panicked != nil {
			panic(panicked)
		}
	default:
		j.w, j.r = nil, nil
		jobs.Put(j)
		p.handler.ServeHTTP(w, r)
	}
}

type job struct {
	w    http.ResponseWriter
	r    *http.Request
	done chan any // the panic value, or nil
}

var jobs = sync.Pool{New: func() any { return &job{done: make(chan any, 1)} }}

func (p *workerPool) work() {
	for j := range p.jobs {
		j.done <- p.serve(j)
	}
}

// serve runs one request and returns what it panicked with, if anything,
// for the request's goroutine to panic with: the generic chain's panic
// recovery and the HTTP server then handle it as they would have.
func (p *workerPool) serve(j *job) (panicked any) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panicked = v
				return
			}
			panicked = &workerPanic{value: v, stack: debug.Stack()}
		}
	}()
	p.handler.ServeHTTP(j.w, j.r)
	return nil
}

// workerPanic carries a worker's panic, with the worker's stack, to the
// request's goroutine.
type workerPanic struct {
	value any
	stack []byte
}

func (p *workerPanic) Error() string {
	return fmt.Sprintf("%v\n\nworker goroutine:\n%s", p.value, p.stack)
}

func (p *workerPanic) Unwrap() error {
	err, _ := p.value.(error)
	return err
}
