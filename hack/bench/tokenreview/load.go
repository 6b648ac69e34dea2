package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// client is the load generator's view of one server: conns keep-alive
// connections, used by up to concurrency goroutines at once.
type client struct {
	base    string // https://127.0.0.1:<port>
	url     string // base + the TokenReview path
	proto   string
	clients []*http.Client
}

func newClient(base, path string, tlsConfig *tls.Config, proto string, conns int) *client {
	c := &client{base: base, url: base + path, proto: proto}
	newTransport := func(maxConns int) *http.Transport {
		tc := tlsConfig.Clone()
		t := &http.Transport{
			TLSClientConfig:     tc,
			MaxConnsPerHost:     maxConns,
			MaxIdleConnsPerHost: maxConns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		}
		if proto == "h2" {
			t.ForceAttemptHTTP2 = true
		} else {
			tc.NextProtos = []string{"http/1.1"}
		}
		return t
	}
	if proto == "h2" {
		// One HTTP/2 connection per transport, requests multiplexed on it,
		// as kube-apiserver's webhook client does.
		for range conns {
			c.clients = append(c.clients, &http.Client{Transport: newTransport(1), Timeout: 30 * time.Second})
		}
	} else {
		c.clients = []*http.Client{{Transport: newTransport(conns), Timeout: 30 * time.Second}}
	}
	return c
}

func (c *client) close() {
	for _, hc := range c.clients {
		hc.CloseIdleConnections()
	}
}

// worker is one goroutine's state.
type worker struct {
	hc  *http.Client
	buf bytes.Buffer
	lat []time.Duration
}

// do sends one review and checks the answer.
func (c *client) do(w *worker, body []byte, want []byte) error {
	req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	resp, err := w.hc.Do(req)
	if err != nil {
		return err
	}
	w.buf.Reset()
	_, err = w.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, w.buf.Bytes())
	}
	if c.proto == "h2" && resp.ProtoMajor != 2 || c.proto == "h1" && resp.ProtoMajor != 1 {
		return fmt.Errorf("the server answered over %s, not %s", resp.Proto, c.proto)
	}
	if want != nil && !bytes.Contains(w.buf.Bytes(), want) {
		return fmt.Errorf("unexpected answer: %.300s", w.buf.Bytes())
	}
	return nil
}

// loadResult is what one run of the client against one server measured.
type loadResult struct {
	reviews   int64
	errors    int64
	firstErr  error
	elapsed   time.Duration
	latencies []time.Duration // sorted
	exhausted bool            // stopped early: no more bodies
}

func (r *loadResult) rate() float64 { return float64(r.reviews) / r.elapsed.Seconds() }

func (r *loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(p*float64(len(r.latencies))+0.5) - 1
	return r.latencies[max(0, min(i, len(r.latencies)-1))]
}

// errNoMore is returned by a body source that has run out.
var errNoMore = errors.New("no more bodies")

// run sends reviews from concurrency goroutines until duration has passed
// (or next runs out), recording each review's latency when record is set.
// next is called concurrently; want is a substring every answer must hold.
func (c *client) run(concurrency int, duration time.Duration, next func() ([]byte, error), want []byte, record bool) *loadResult {
	var (
		wg       sync.WaitGroup
		reviews  atomic.Int64
		errs     atomic.Int64
		errOnce  sync.Once
		firstErr error
		out      = &loadResult{}
		workers  = make([]*worker, concurrency)
		start    = time.Now()
		deadline = start.Add(duration)
		noMore   atomic.Bool
	)
	for g := range workers {
		w := &worker{hc: c.clients[g%len(c.clients)]}
		if record {
			w.lat = make([]time.Duration, 0, 1<<14)
		}
		workers[g] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				body, err := next()
				if err != nil {
					noMore.Store(true)
					return
				}
				t0 := time.Now()
				err = c.do(w, body, want)
				d := time.Since(t0)
				if err != nil {
					errs.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				reviews.Add(1)
				if record {
					w.lat = append(w.lat, d)
				}
			}
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	out.reviews, out.errors, out.firstErr, out.exhausted = reviews.Load(), errs.Load(), firstErr, noMore.Load()
	if record {
		for _, w := range workers {
			out.latencies = append(out.latencies, w.lat...)
		}
		slices.Sort(out.latencies)
	}
	return out
}

// sendAll sends every body once (to warm caches and connections), without
// measuring, and fails on the first error.
func (c *client) sendAll(concurrency int, bodies [][]byte, want []byte) error {
	var i atomic.Int64
	res := c.run(concurrency, time.Hour, func() ([]byte, error) {
		n := i.Add(1) - 1
		if n >= int64(len(bodies)) {
			return nil, errNoMore
		}
		return bodies[n], nil
	}, want, false)
	if res.errors > 0 {
		return fmt.Errorf("%d of %d failed; first: %w", res.errors, len(bodies), res.firstErr)
	}
	return nil
}

// get fetches a path of the server with the client's certificate.
func (c *client) get(path string) ([]byte, error) {
	resp, err := c.clients[0].Get(c.base + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %.300s", path, resp.StatusCode, b)
	}
	return b, nil
}
