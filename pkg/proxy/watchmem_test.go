package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// BenchmarkIdleWatchMemory reports the proxy's memory per idle watch: 1,000
// watches held open through the proxy (front server, fake chain, proxy,
// upstream client) against an upstream that never sends an event. The
// figure includes the test's own client and fake upstream, so it is an
// upper bound of the proxy's share. It measures once, whatever b.N: each
// measurement holds 1,000 watches and waits for them to settle, so a
// -benchtime of many iterations would take many minutes.
//
//	go test ./pkg/proxy -run '^$' -bench IdleWatchMemory -benchtime 1x
func BenchmarkIdleWatchMemory(b *testing.B) {
	env := newTestEnv(b)
	done := make(chan struct{})
	defer close(done)
	env.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	})
	const n = 1000
	for range min(b.N, 1) {
		base := memInUse()
		ctx, cancel := context.WithCancel(context.Background())
		var bodies []io.Closer
		for i := range n {
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/clusters/c1/api/v1/configmaps?watch=true&n=%d", env.front.URL, i), nil)
			req.Header.Set("Authorization", "Bearer alice-token")
			resp, err := env.front.Client().Do(req)
			if err != nil {
				b.Fatal(err)
			}
			bodies = append(bodies, resp.Body)
		}
		time.Sleep(500 * time.Millisecond)
		b.ReportMetric(float64(memInUse()-base)/n/1024, "KiB/watch")
		cancel()
		for _, body := range bodies {
			body.Close()
		}
	}
}

func memInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
