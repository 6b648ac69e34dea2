package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/internal/testkit/benchsession"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store/bolt"
)

var settings = benchsession.Settings

type fillResult struct {
	Seconds   float64
	FileBytes int64
}

// runFill (child): path n fillers. Creates sessions 0..n-1 in a new store
// at path through CreateSession, fillers goroutines at a time.
func runFill(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want: path sessions fillers, got %q", args)
	}
	path := args[0]
	n, err1 := strconv.Atoi(args[1])
	fillers, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad arguments %q", args)
	}
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	created := time.Now()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failOnce sync.Once
	var failure error
	var failed atomic.Bool
	for range fillers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := st.CreateSession(ctx, benchsession.New(i, created)); err != nil {
					failOnce.Do(func() { failure = err; failed.Store(true) })
					return
				}
				if (i+1)%100000 == 0 {
					logf("filled %d sessions in %v", i+1, time.Since(start).Round(time.Second))
				}
			}
		})
	}
	wg.Wait()
	if failure != nil {
		return fmt.Errorf("filling: %w", failure)
	}
	secs := time.Since(start).Seconds()
	if err := st.Close(); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(fillResult{Seconds: secs, FileBytes: fi.Size()})
}

// result is one point of the curve: the fill's figures from the parent,
// the rest from the measure child.
type result struct {
	Sessions, Fillers, Concurrency int
	FillSeconds                    float64
	FileBytes                      int64
	LoadStart, LoadEnd             string

	OpenColdms, Openms      float64
	P50ms, P99ms, Maxms     float64
	PerSecond               float64
	HeapBytes, RSSBytes     int64
	RSSAnonBytes            int64
	RSSFileBytes            int64
	PeakRSSBytes            int64
	Createms                float64 // p50 of the ended sessions' CreateSession, on the disk
	GCms, GCNothingms       float64
	ListSeconds             float64
	ListRSSFileBytes        int64 // file-backed resident memory after listing every session
	FileBytesAfter          int64
	RefreshesMeasured, Gone int
	// A collection (nothing ended) with refreshes one at a time meanwhile:
	// how long it took, how many refreshes completed, the slowest.
	GCConcurrentms, DuringGCMaxms float64
	RefreshesDuringGC             int
	// bbolt's free pages at the end (read by the parent).
	FreePages int
}

// runMeasure (child): path n warmup refreshes throughput concurrency ended.
func runMeasure(args []string) error {
	if len(args) != 7 {
		return fmt.Errorf("want: path sessions warmup refreshes throughput concurrency ended, got %q", args)
	}
	path := args[0]
	var nums [6]int
	for i, a := range args[1:] {
		v, err := strconv.Atoi(a)
		if err != nil {
			return fmt.Errorf("bad argument %q", a)
		}
		nums[i] = v
	}
	n, warmup, refreshes, throughput, concurrency, ended := nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]
	ctx := context.Background()
	var r result

	// Opening, first with none of the file in the page cache (as after a
	// node's reboot), then with all of it (a restart).
	if err := dropPageCache(path); err != nil {
		return err
	}
	start := time.Now()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return err
	}
	r.OpenColdms = ms(time.Since(start))
	if err := st.Close(); err != nil {
		return err
	}
	start = time.Now()
	if st, err = bolt.Open(path, bolt.Options{}); err != nil {
		return err
	}
	r.Openms = ms(time.Since(start))
	defer st.Close()
	logf("%d sessions: opened in %.0f ms (cold page cache: %.0f ms)", n, r.Openms, r.OpenColdms)

	m := session.NewManager(st, func() session.Settings { return settings }, nil)
	var refresher benchsession.Refresher
	refreshOne := func(i int) (time.Duration, error) { return refresher.Refresh(ctx, m, i) }

	// Latency: one at a time, random sessions among the n.
	rng := rand.New(rand.NewPCG(1, 2))
	for range warmup {
		if _, err := refreshOne(rng.IntN(n)); err != nil {
			return err
		}
	}
	lat := make([]time.Duration, 0, refreshes)
	for range refreshes {
		d, err := refreshOne(rng.IntN(n))
		if err != nil {
			return err
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	r.P50ms, r.P99ms, r.Maxms = ms(pct(lat, .5)), ms(pct(lat, .99)), ms(pct(lat, 1))
	r.RefreshesMeasured = refreshes

	// Memory of a replica serving refreshes.
	debug.FreeOSMemory()
	var mstats runtime.MemStats
	runtime.ReadMemStats(&mstats)
	r.HeapBytes = int64(mstats.HeapInuse)
	status, err := procStatus()
	if err != nil {
		return err
	}
	r.RSSBytes, r.RSSAnonBytes, r.RSSFileBytes = status["VmRSS"], status["RssAnon"], status["RssFile"]

	// Throughput: distinct sessions, concurrency at a time.
	var counter atomic.Int64
	var failOnce sync.Once
	var failure error
	var failed atomic.Bool
	var wg sync.WaitGroup
	start = time.Now()
	for range concurrency {
		wg.Go(func() {
			for !failed.Load() {
				c := counter.Add(1) - 1
				if c >= int64(throughput) {
					return
				}
				if _, err := refreshOne(int(c * 7919 % int64(n))); err != nil { // distinct while c < n: 7919 is prime
					failOnce.Do(func() { failure = err; failed.Store(true) })
				}
			}
		})
	}
	wg.Wait()
	if failure != nil {
		return failure
	}
	r.PerSecond = float64(throughput) / time.Since(start).Seconds()

	// Garbage collection, with ended sessions among the live ones (idle
	// past their timeout), then with none.
	old := time.Now().Add(-24 * time.Hour)
	creates := make([]time.Duration, 0, ended)
	for i := range ended {
		start := time.Now()
		if err := st.CreateSession(ctx, benchsession.New(n+1000000+i, old)); err != nil {
			return err
		}
		creates = append(creates, time.Since(start))
	}
	slices.Sort(creates)
	r.Createms = ms(pct(creates, .5))
	start = time.Now()
	gone, err := st.GarbageCollect(ctx, time.Now())
	r.GCms = ms(time.Since(start))
	if err != nil || gone != ended {
		return fmt.Errorf("GarbageCollect with %d ended sessions: %d collected, %v", ended, gone, err)
	}
	r.Gone = gone
	start = time.Now()
	if gone, err = st.GarbageCollect(ctx, time.Now()); err != nil || gone != 0 {
		return fmt.Errorf("GarbageCollect with nothing ended: %d collected, %v", gone, err)
	}
	r.GCNothingms = ms(time.Since(start))

	// What a refresh waits for while a collection runs (nothing ended):
	// refreshes one at a time until it is done.
	gcDone := make(chan error, 1)
	start = time.Now()
	go func() {
		_, err := st.GarbageCollect(ctx, time.Now())
		gcDone <- err
	}()
	var during []time.Duration
	for running := true; running; {
		select {
		case err := <-gcDone:
			if err != nil {
				return err
			}
			running = false
		default:
			d, err := refreshOne(rng.IntN(n))
			if err != nil {
				return err
			}
			during = append(during, d)
		}
	}
	r.GCConcurrentms = ms(time.Since(start))
	r.RefreshesDuringGC = len(during)
	if len(during) > 0 {
		slices.Sort(during)
		r.DuringGCMaxms = ms(pct(during, 1))
	}

	// An admin's list of every session.
	start = time.Now()
	all, err := st.ListSessions(ctx)
	r.ListSeconds = time.Since(start).Seconds()
	if err != nil || len(all) != n {
		return fmt.Errorf("ListSessions: %d sessions, %v", len(all), err)
	}
	all = nil
	if status, err = procStatus(); err != nil {
		return err
	}
	r.ListRSSFileBytes, r.PeakRSSBytes = status["RssFile"], status["VmHWM"]
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	r.FileBytesAfter = fi.Size()
	return json.NewEncoder(os.Stdout).Encode(&r)
}

// dropPageCache asks the kernel to drop the file's pages from the page
// cache (they are clean: the file was synced), so that the next open reads
// it from the disk.
func dropPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("dropping %s from the page cache: %w", path, err)
	}
	return nil
}

// procStatus returns the kB fields of /proc/self/status, in bytes.
func procStatus() (map[string]int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		if err == nil {
			out[name] = kb * 1024
		}
	}
	return out, nil
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(float64(len(sorted)-1)*p)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// csvHeader is the curve's columns, shared with the kubernetes backend's
// rows (BenchmarkKubernetesSessionScale, test/e2e/store_scale_bench_test.go),
// which leaves the bolt-only ones empty and fills the apiserver_ and etcd_
// ones.
var csvHeader = []string{
	"backend", "sessions", "load_start", "load_end", "fill_per_s",
	"refresh_p50_ms", "refresh_p99_ms", "refreshes_per_s", "refreshes_per_s_unlimited",
	"heap_mib", "rss_mib", "rss_anon_mib", "rss_file_mib", "peak_rss_mib", "file_mib",
	"create_ms", "gc_ended_ms", "gc_nothing_ms", "refresh_during_gc_max_ms", "refreshes_during_gc", "open_ms", "open_cold_ms", "list_all_s", "free_pages",
	"apiserver_heap_mib", "apiserver_rss_mib", "etcd_rss_mib", "etcd_db_mib",
}

func writeCSV(path string, rows []*result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(csvHeader)
	f1 := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	f3 := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, r := range rows {
		_ = w.Write([]string{
			"bolt", strconv.Itoa(r.Sessions), r.LoadStart, r.LoadEnd, fmt.Sprintf("%.0f", float64(r.Sessions)/r.FillSeconds),
			f3(r.P50ms), f3(r.P99ms), fmt.Sprintf("%.0f", r.PerSecond), "",
			f1(mib(r.HeapBytes)), f1(mib(r.RSSBytes)), f1(mib(r.RSSAnonBytes)), f1(mib(r.RSSFileBytes)), f1(mib(r.PeakRSSBytes)), f1(mib(r.FileBytes)),
			f3(r.Createms), f1(r.GCms), f1(r.GCNothingms), f1(r.DuringGCMaxms), strconv.Itoa(r.RefreshesDuringGC), f1(r.Openms), f1(r.OpenColdms), f3(r.ListSeconds), strconv.Itoa(r.FreePages),
			"", "", "", "",
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// report prints the curve as a markdown table.
func report(o *options, rows []*result, load0, load1 string) {
	fmt.Printf("Bolt store cost curve: %d cores; %d refreshes measured one at a time after %d, %d at %d in flight; %d ended sessions; load average %s → %s\n\n",
		runtime.NumCPU(), o.refreshes, o.warmup, o.throughput, o.concurrency, o.ended, load0, load1)
	fmt.Println("| sessions | fill (tmpfs) | file | refresh p50 / p99 / max | refreshes/s | Go heap | RSS (anon + file) | peak RSS | GarbageCollect ended / none | refreshes during one (slowest) | open warm / cold | ListSessions | file-backed RSS after it | free pages |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Printf("| %d | %.0f /s | %.1f MiB | %.2f / %.2f / %.2f ms | %.0f | %.1f MiB | %.1f (%.1f + %.1f) MiB | %.1f MiB | %.0f / %.0f ms | %d in %.0f ms (%.1f ms) | %.0f / %.0f ms | %.2f s | %.1f MiB | %d |\n",
			r.Sessions, float64(r.Sessions)/r.FillSeconds, mib(r.FileBytes), r.P50ms, r.P99ms, r.Maxms, r.PerSecond,
			mib(r.HeapBytes), mib(r.RSSBytes), mib(r.RSSAnonBytes), mib(r.RSSFileBytes), mib(r.PeakRSSBytes),
			r.GCms, r.GCNothingms, r.RefreshesDuringGC, r.GCConcurrentms, r.DuringGCMaxms, r.Openms, r.OpenColdms, r.ListSeconds, mib(r.ListRSSFileBytes), r.FreePages)
	}
}
