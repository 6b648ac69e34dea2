package e2e

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"portcullis.dev/portcullis/internal/testkit/benchsession"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	kstore "portcullis.dev/portcullis/pkg/store/kubernetes"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// benchSessionsEnv sets how many sessions BenchmarkKubernetesSessionScale
// fills the namespace with (10,000 when unset).
const benchSessionsEnv = "PORTCULLIS_BENCH_SESSIONS"

// benchCSVEnv, if set, is a CSV file BenchmarkKubernetesSessionScale appends
// its figures to as a row of the store cost curve (backend "kubernetes"),
// after the bolt store's rows that hack/bench/store writes there (make
// bench-scale-store).
const benchCSVEnv = "PORTCULLIS_BENCH_CSV"

// storeCurveColumns are the store cost curve's columns, as hack/bench/store
// (measure.go, csvHeader) writes them; a row fills those that mean the same
// thing for its backend and leaves the others empty.
var storeCurveColumns = []string{
	"backend", "sessions", "load_start", "load_end", "fill_per_s",
	"refresh_p50_ms", "refresh_p99_ms", "refreshes_per_s", "refreshes_per_s_unlimited",
	"heap_mib", "rss_mib", "rss_anon_mib", "rss_file_mib", "peak_rss_mib", "file_mib",
	"create_ms", "gc_ended_ms", "gc_nothing_ms", "refresh_during_gc_max_ms", "refreshes_during_gc",
	"open_ms", "open_cold_ms", "list_all_s", "free_pages",
	"apiserver_heap_mib", "apiserver_rss_mib", "etcd_rss_mib", "etcd_db_mib",
}

// appendCurveRow appends row (values by column) to the CSV file at path,
// in the order of the header it already has, or writes storeCurveColumns as
// its header first if it is missing or empty.
func appendCurveRow(path string, row map[string]string) error {
	header, writeHeader := storeCurveColumns, true
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		first, _, _ := strings.Cut(string(data), "\n")
		if header, err = csv.NewReader(strings.NewReader(first)).Read(); err != nil {
			return fmt.Errorf("reading the header of %s: %w", path, err)
		}
		if !strings.HasSuffix(string(data), "\n") {
			return fmt.Errorf("%s does not end with a new line", path)
		}
		writeHeader = false
	}
	for col := range row {
		if !slices.Contains(header, col) {
			return fmt.Errorf("%s has no column %q: its header is older than this benchmark; remove the file and run again", path, col)
		}
	}
	record := make([]string, len(header))
	for i, col := range header {
		record[i] = row[col]
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	if writeHeader {
		_ = w.Write(header)
	}
	_ = w.Write(record)
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// BenchmarkKubernetesSessionScale fills one namespace of a real
// kube-apiserver (and etcd) with N sessions and measures what a replica on
// the kubernetes store pays for them: refresh latency through
// session.Manager with few sessions and with N, the replica's Go heap and
// RSS before and after the N exist (sessions are not cached, so they should
// not grow), kube-apiserver's and etcd's RSS and etcd's database file, how
// long GarbageCollect takes with N live sessions (it lists only the ended
// ones), how long opening another store takes, how long an admin list of
// all sessions takes, and how many refreshes a second one replica serves
// (with the store's client-side rate limit, and without).
//
// It does its work once, whatever b.N:
//
//	go test ./test/e2e -run '^$' -bench KubernetesSessionScale -benchtime 1x -v
//	PORTCULLIS_BENCH_SESSIONS=100000 go test ./test/e2e -run '^$' -bench KubernetesSessionScale -benchtime 1x -v -timeout 30m
//
// With PORTCULLIS_BENCH_CSV=file it also appends its figures to file as a
// row of the store cost curve (make bench-scale-store).
func BenchmarkKubernetesSessionScale(b *testing.B) {
	n := 10000
	if v := os.Getenv(benchSessionsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("%s=%q: want a number of sessions, at least 1000", benchSessionsEnv, v)
		}
	}
	const (
		base      = 300 // sessions present for the first refresh measurement
		refreshes = 300 // refreshes measured each time
		ended     = 100 // ended sessions for GarbageCollect to find
		fillers   = 16  // goroutines creating sessions

		refreshEvery = 20 * time.Millisecond // pace of the measured refreshes
		unpaced      = 1200                  // refreshes for the throughput
		concurrent   = 8                     // goroutines refreshing at once
	)
	ctx := context.Background()
	api := framework.StartAPIServer(b, framework.APIServerOptions{})
	sn := &storeNamespaces{api: api}
	ns := sn.new(b)
	sn.mu.Lock()
	shipped := rest.CopyConfig(sn.cfg[ns])
	fillCfg := rest.CopyConfig(sn.cfg[ns])
	sn.mu.Unlock()
	// The replica under test: the store's own client-side rate limit
	// (DefaultQPS, DefaultBurst), as shipped.
	shipped.QPS, shipped.Burst = 0, 0
	// Filling goes as fast as the API server takes it.
	fillCfg.QPS = -1
	openStore := func(cfg *rest.Config) *kstore.Store {
		b.Helper()
		octx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		s, err := kstore.NewForConfig(octx, rest.CopyConfig(cfg), kstore.Options{Namespace: ns})
		if err != nil {
			b.Fatalf("opening a kubernetes store in %s: %v", ns, err)
		}
		return s
	}
	replica := openStore(shipped)
	defer replica.Close()

	settings := benchsession.Settings
	m := session.NewManager(replica, func() session.Settings { return settings }, nil)
	created := time.Now()

	// Session i has an ID and a first refresh secret derived from i
	// (benchsession), so that the test holds nothing per session; tokens
	// rotated by a refresh are kept in rotated.
	newSession := func(i int) store.Session { return benchsession.New(i, created) }
	// fill creates sessions from..to-1 with fillers goroutines, through a
	// store of its own, closed before it returns.
	fill := func(from, to int, mk func(int) store.Session) time.Duration {
		b.Helper()
		filler := openStore(fillCfg)
		defer filler.Close()
		start := time.Now()
		next := atomic.Int64{}
		next.Store(int64(from))
		var (
			wg       sync.WaitGroup
			failOnce sync.Once
			failure  error
			failed   atomic.Bool
		)
		for range fillers {
			wg.Go(func() {
				for !failed.Load() {
					i := int(next.Add(1) - 1)
					if i >= to {
						return
					}
					if err := filler.CreateSession(ctx, mk(i)); err != nil {
						failOnce.Do(func() { failure = err; failed.Store(true) })
						return
					}
				}
			})
		}
		wg.Wait()
		if failure != nil {
			b.Fatalf("filling sessions: %v", failure)
		}
		return time.Since(start)
	}

	var refresher benchsession.Refresher
	refreshOne := func(m *session.Manager, i int) time.Duration {
		b.Helper()
		d, err := refresher.Refresh(ctx, m, i)
		if err != nil {
			b.Error(err)
		}
		return d
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// refresh refreshes count random sessions of the first among, one at a
	// time, one every refreshEvery, and returns the latencies. A refresh is
	// three requests (GET, then GET and PUT in UpdateSession), so the pace
	// keeps under the store's client-side limit of DefaultQPS requests a
	// second, which would otherwise add its wait to the latency once its
	// burst is spent.
	refresh := func(count, among int) []time.Duration {
		b.Helper()
		out := make([]time.Duration, 0, count)
		next := time.Now()
		for range count {
			time.Sleep(time.Until(next))
			next = next.Add(refreshEvery)
			out = append(out, refreshOne(m, rng.IntN(among)))
			if b.Failed() {
				b.FailNow()
			}
		}
		return out
	}

	// apiserverHeap is kube-apiserver's Go heap in use right after a
	// collection (forced through its /debug/pprof), from its /metrics:
	// what it holds, where its RSS also keeps what it has not returned to
	// the OS yet.
	hc := api.PKI.HTTPClient()
	apiGet := func(path string) []byte {
		b.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.URL+path, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+api.AdminToken)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s, %v", path, resp.Status, err)
		}
		return body
	}
	apiserverHeap := func() int64 {
		b.Helper()
		apiGet("/debug/pprof/heap?gc=1")
		for line := range strings.SplitSeq(string(apiGet("/metrics")), "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					b.Fatalf("kube-apiserver's go_memstats_heap_inuse_bytes %q: %v", v, err)
				}
				return int64(f)
			}
		}
		b.Fatal("no go_memstats_heap_inuse_bytes in kube-apiserver's /metrics")
		return 0
	}

	type memory struct{ heap, rss, apiserver, apiserverHeap, etcd, etcdDB int64 }
	measure := func() memory {
		b.Helper()
		debug.FreeOSMemory() // a collection, and freed memory returned to the OS
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mem := memory{
			heap:      int64(ms.HeapInuse),
			rss:       processRSS(b, os.Getpid()),
			apiserver: processRSS(b, api.Process.Pid()),
			// read after its RSS, which the forced collection must not change
			apiserverHeap: apiserverHeap(),
			etcd:          processRSS(b, api.Etcd.Process.Pid()),
		}
		if fi, err := os.Stat(filepath.Join(api.Etcd.DataDir, "member", "snap", "db")); err == nil {
			mem.etcdDB = fi.Size()
		}
		return mem
	}
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	load := func() string {
		data, _ := os.ReadFile("/proc/loadavg")
		return string(data[:min(len(data), 14)])
	}

	load0 := load()
	b.Logf("load average at start: %s", load0)
	fill(0, base, newSession)
	refresh(200, base) // warm up: connections, and kube-apiserver just started
	baseLat := refresh(refreshes, base)
	before := measure()

	fillTime := fill(base, n, newSession)
	b.Logf("filled %d sessions in %v (%.0f/s, %d goroutines); load average %s", n-base, fillTime.Round(time.Millisecond), float64(n-base)/fillTime.Seconds(), fillers, load())
	lat := refresh(refreshes, n)
	after := measure()

	// Unpaced, concurrent refreshes of distinct sessions: what one replica
	// can do, client-side limit included; then the same through a store
	// without that limit, to tell the limit from the API server's capacity.
	var counter atomic.Int64
	throughputOf := func(m *session.Manager) float64 {
		b.Helper()
		start := time.Now()
		var wg sync.WaitGroup
		stop := counter.Load() + unpaced
		for range concurrent {
			wg.Go(func() {
				for !b.Failed() {
					c := counter.Add(1) - 1
					if c >= stop {
						return
					}
					refreshOne(m, int(c*7919%int64(n))) // distinct while c < n: 7919 is prime
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
		return float64(unpaced) / time.Since(start).Seconds()
	}
	throughput := throughputOf(m)
	unlimited := openStore(fillCfg)
	throughputUnlimited := throughputOf(session.NewManager(unlimited, func() session.Settings { return settings }, nil))
	if err := unlimited.Close(); err != nil {
		b.Fatal(err)
	}

	// Ended sessions among the live ones: idle for longer than their
	// timeout, as garbage collection finds them.
	old := created.Add(-24 * time.Hour)
	endedFrom := n + 1000000
	fill(endedFrom, endedFrom+ended, func(i int) store.Session {
		s := newSession(i)
		s.CreatedAt, s.LastUsedAt = old, old
		return s
	})
	start := time.Now()
	collected, err := replica.GarbageCollect(ctx, time.Now())
	gcTime := time.Since(start)
	if err != nil || collected != ended {
		b.Fatalf("GarbageCollect with %d live and %d ended sessions: %d collected, %v", n, ended, collected, err)
	}
	start = time.Now()
	if collected, err = replica.GarbageCollect(ctx, time.Now()); err != nil || collected != 0 {
		b.Fatalf("GarbageCollect with nothing ended: %d collected, %v", collected, err)
	}
	gcNothing := time.Since(start)

	// Another replica starting: its caches hold keys, revocations and
	// grants only.
	start = time.Now()
	another := openStore(shipped)
	openTime := time.Since(start)
	if err := another.Close(); err != nil {
		b.Fatal(err)
	}

	// An admin's list of every session (portcullis-server sessions list):
	// this one grows with N, and holds them all in this process meanwhile.
	start = time.Now()
	all, err := replica.ListSessions(ctx)
	listTime := time.Since(start)
	if err != nil || len(all) != n {
		b.Fatalf("ListSessions: %d sessions, %v", len(all), err)
	}

	b.Logf("refresh with %d sessions: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d", base, ms(percentile(baseLat, .5)), ms(percentile(baseLat, .99)), ms(percentile(baseLat, 1)), refreshes)
	b.Logf("refresh with %d sessions: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d", n, ms(percentile(lat, .5)), ms(percentile(lat, .99)), ms(percentile(lat, 1)), refreshes)
	b.Logf("%d refreshes of distinct sessions, %d at a time, unpaced: %.0f/s; without the client-side limit: %.0f/s", unpaced, concurrent, throughput, throughputUnlimited)
	b.Logf("replica (this process, store open): Go heap in use %.1f -> %.1f MiB, RSS %.1f -> %.1f MiB", mib(before.heap), mib(after.heap), mib(before.rss), mib(after.rss))
	b.Logf("kube-apiserver RSS %.0f -> %.0f MiB, Go heap in use after a collection %.0f -> %.0f MiB; etcd RSS %.0f -> %.0f MiB; etcd db file %.1f -> %.1f MiB", mib(before.apiserver), mib(after.apiserver), mib(before.apiserverHeap), mib(after.apiserverHeap), mib(before.etcd), mib(after.etcd), mib(before.etcdDB), mib(after.etcdDB))
	b.Logf("GarbageCollect with %d live sessions: %v (%d ended, collected), %v (nothing ended)", n, gcTime.Round(time.Microsecond), ended, gcNothing.Round(time.Microsecond))
	b.Logf("opening another store: %v; ListSessions of all %d: %v; load average at end: %s", openTime.Round(time.Millisecond), n, listTime.Round(time.Millisecond), load())

	b.ReportMetric(float64(n), "sessions")
	b.ReportMetric(float64(n-base)/fillTime.Seconds(), "creates/s")
	b.ReportMetric(ms(percentile(baseLat, .5)), "p50-ms-few")
	b.ReportMetric(ms(percentile(baseLat, .99)), "p99-ms-few")
	b.ReportMetric(ms(percentile(lat, .5)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, .99)), "p99-ms")
	b.ReportMetric(throughput, "refreshes/s")
	b.ReportMetric(throughputUnlimited, "refreshes/s-unlimited")
	b.ReportMetric(mib(before.heap), "heap-MiB-before")
	b.ReportMetric(mib(after.heap), "heap-MiB-after")
	b.ReportMetric(mib(before.rss), "rss-MiB-before")
	b.ReportMetric(mib(after.rss), "rss-MiB-after")
	b.ReportMetric(mib(before.apiserver), "apiserver-rss-MiB-before")
	b.ReportMetric(mib(after.apiserver), "apiserver-rss-MiB-after")
	b.ReportMetric(mib(before.apiserverHeap), "apiserver-heap-MiB-before")
	b.ReportMetric(mib(after.apiserverHeap), "apiserver-heap-MiB-after")
	b.ReportMetric(mib(before.etcd), "etcd-rss-MiB-before")
	b.ReportMetric(mib(after.etcd), "etcd-rss-MiB-after")
	b.ReportMetric(mib(after.etcdDB), "etcd-db-MiB-after")
	b.ReportMetric(ms(gcTime), "gc-ms")
	b.ReportMetric(ms(gcNothing), "gc-nothing-ms")
	b.ReportMetric(ms(openTime), "open-ms")
	b.ReportMetric(listTime.Seconds(), "list-all-s")

	if path := os.Getenv(benchCSVEnv); path != "" {
		f1 := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
		f3 := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
		firstField := func(s string) string { f, _, _ := strings.Cut(s, " "); return f }
		err := appendCurveRow(path, map[string]string{
			"backend":                   "kubernetes",
			"sessions":                  strconv.Itoa(n),
			"load_start":                firstField(load0),
			"load_end":                  firstField(load()),
			"fill_per_s":                fmt.Sprintf("%.0f", float64(n-base)/fillTime.Seconds()),
			"refresh_p50_ms":            f3(ms(percentile(lat, .5))),
			"refresh_p99_ms":            f3(ms(percentile(lat, .99))),
			"refreshes_per_s":           fmt.Sprintf("%.0f", throughput),
			"refreshes_per_s_unlimited": fmt.Sprintf("%.0f", throughputUnlimited),
			"heap_mib":                  f1(mib(after.heap)),
			"rss_mib":                   f1(mib(after.rss)),
			"gc_ended_ms":               f1(ms(gcTime)),
			"gc_nothing_ms":             f1(ms(gcNothing)),
			"open_ms":                   f1(ms(openTime)),
			"list_all_s":                f3(listTime.Seconds()),
			"apiserver_heap_mib":        f1(mib(after.apiserverHeap)),
			"apiserver_rss_mib":         f1(mib(after.apiserver)),
			"etcd_rss_mib":              f1(mib(after.etcd)),
			"etcd_db_mib":               f1(mib(after.etcdDB)),
		})
		if err != nil {
			b.Fatalf("%s: %v", benchCSVEnv, err)
		}
		b.Logf("appended the kubernetes row for %d sessions to %s", n, path)
	}
}
