package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// The proxy's cost curves (docs/benchmarks.md, "Cost curves"; make
// bench-scale-proxy): how Portcullis's CPU, memory and upstream connections
// grow with the clusters it serves and the watches held open through it.
var (
	curveClusters    = flag.String("proxy-clusters", "1,10,100", "BenchmarkProxyClusters: numbers of clusters, one run each")
	curveClustersCSV = flag.String("proxy-clusters-csv", "", "BenchmarkProxyClusters: write the curve to this CSV file")
	curveGetDuration = flag.Duration("proxy-clusters-duration", 10*time.Second, "BenchmarkProxyClusters: how long the GET load runs at each point")
	curveWatches     = flag.String("proxy-watches", "1k,10k,20k", "BenchmarkProxyWatches: numbers of watches held open, in increasing order (the watches of one point stay open for the next)")
	curveWatchesCSV  = flag.String("proxy-watches-csv", "", "BenchmarkProxyWatches: write the curve to this CSV file")
	curveIdle        = flag.Duration("proxy-watches-idle", 10*time.Second, "BenchmarkProxyWatches: how long Portcullis's CPU is read while the watches are idle")
	curveDump        = flag.String("proxy-curve-dump", "", "BenchmarkProxyClusters, BenchmarkProxyWatches: write Portcullis's goroutine dump, heap profile and binary at each point into DIR/clusters-N or DIR/watches-N")
)

// curveDumpAt writes dumpPortcullis's files for one point, with -proxy-curve-dump.
func curveDumpAt(b *testing.B, s *proxyStack, point string) {
	if *curveDump == "" {
		return
	}
	dir := filepath.Join(*curveDump, point)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	dumpPortcullis(b, s, s.portcullis.Process.Pid(), dir)
}

// BenchmarkProxyClusters measures Portcullis's proxy as the clusters it
// serves grow: for each N of -proxy-clusters, a fresh etcd, kube-apiserver
// and portcullis-server whose configuration has N clusters that all point
// at that one kube-apiserver (each an upstream of its own in the proxy: its
// own transport, connections and credential). The load is BenchmarkProxyMode's
// small GET (16 in flight, one HTTP/2 connection from the client, the same
// for every N), with each request's cluster chosen round-robin over the N
// (each with its own Portcullis token for alice, as a user with N
// kubeconfig contexts), for -proxy-clusters-duration after a 2 s warm-up.
// Per point: req/s, p50/p99, Portcullis's and kube-apiserver's CPU per
// request, Portcullis's RSS after the load and Go heap after a collection,
// and the TCP connections Portcullis holds to kube-apiserver. The machine
// is shared, so these sequential points see different background load;
// the largest point's stack then also runs the load spread over 1, 10, …
// of its clusters interleaved in 1 s slices (-get-duration each, as
// BenchmarkProxyMode's get), which compares the CPU per request of the
// points under the same load.
//
//	go test ./test/e2e -run '^$' -bench ProxyClusters -benchtime 1x -timeout 20m -proxy-clusters-csv docs/img/proxy-clusters.csv
func BenchmarkProxyClusters(b *testing.B) {
	points, err := parseCurveCounts(*curveClusters)
	if err != nil {
		b.Fatalf("-proxy-clusters: %v", err)
	}
	var rows [][]string
	header := []string{"clusters", "requests", "seconds", "req_per_s", "p50_ms", "p99_ms", "portcullis_cpu_us_per_req", "apiserver_cpu_us_per_req",
		"portcullis_rw_syscalls_per_req", "rss_mib", "heap_mib", "goroutines", "upstream_conns", "upstream_conns_per_cluster", "fds", "inotify_instances", "load1_start", "load1_end"}
	fmt.Printf("\n| clusters | req/s | p50 | p99 | Portcullis CPU / req | kube-apiserver CPU / req | Portcullis read+write syscalls / req | Portcullis RSS | Go heap | goroutines | upstream connections (per cluster) | open files (inotify instances) |\n")
	fmt.Printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var spread map[int][]string
	for i, n := range points {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			var row []string
			// The largest point also compares, interleaved, the load
			// spread over each point's number of its clusters.
			row, spread = benchClustersPoint(b, n, points[:i+1], i == len(points)-1)
			rows = append(rows, row)
		})
	}
	header = append(header, "interleaved_req_per_s", "interleaved_p50_ms", "interleaved_p99_ms", "interleaved_portcullis_cpu_us_per_req", "interleaved_apiserver_cpu_us_per_req")
	fmt.Printf("\n| load spread over (of %d clusters, interleaved) | req/s | p50 | p99 | Portcullis CPU / req | kube-apiserver CPU / req |\n", points[len(points)-1])
	fmt.Printf("| ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for i, n := range points {
		cells := spread[n]
		if cells == nil {
			cells = make([]string, 5) // not measured
		} else {
			fmt.Printf("| %d | %s | %s ms | %s ms | %s µs | %s µs |\n", n, cells[0], cells[1], cells[2], cells[3], cells[4])
		}
		rows[i] = append(rows[i], cells...)
	}
	writeCurveCSV(b, *curveClustersCSV, header, rows)
}

func benchClustersPoint(b *testing.B, n int, spreads []int, interleave bool) (row []string, spread map[int][]string) {
	load0 := curveLoad1()
	names := []string{"c1"}
	for i := 2; i <= n; i++ {
		names = append(names, fmt.Sprintf("c1-%03d", i))
	}
	users := map[string][]string{}
	for _, name := range names {
		users["alice@"+name] = []string{"--user", "alice", "--group", "devs"}
	}
	start := time.Now()
	s := startProxyStack(b, proxyStackOptions{
		clusters:  []string{"c1"},
		c1Aliases: names[1:],
		users:     users,
		extraArgs: []string{"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/debug/pprof/*"},
	})
	b.Logf("%d clusters: stack up in %v", n, time.Since(start).Round(time.Millisecond))
	if _, stderr, err := framework.Kubectl(b, s.admin["c1"], "create", "configmap", "small", "--from-literal=k=v"); err != nil {
		b.Fatalf("create configmap: %v: %s", err, stderr)
	}
	// One client connection for every N: only the clusters behind it change.
	shared := newBenchClient(b, s.portcullis.URL, s.portcullis.CACertFile(), "")
	clients := make([]*benchClient, n)
	for i, name := range names {
		clients[i] = &benchClient{base: s.portcullis.URL + "/clusters/" + name, token: s.tokens["alice@"+name], hc: shared.hc}
	}
	const getPath = "/api/v1/namespaces/default/configmaps/small"
	b.Logf("%d clusters: %d connections to kube-apiserver before any request through them", n, tcpConnsTo(b, s.portcullis.Process.Pid(), s.c1.Port))
	for _, c := range clients {
		if code, err := c.get(context.Background(), getPath); err != nil || code != http.StatusOK {
			b.Fatalf("GET %s%s: %d %v", c.base, getPath, code, err)
		}
	}
	pick := func(i int) *benchClient { return clients[i%n] }
	loadSlice(b, pick, getPath, 2*time.Second) // warm-up
	pid, apiPid := s.portcullis.Process.Pid(), s.c1.Process.Pid()
	cpu0, apiCPU0 := processCPU(b, pid), processCPU(b, apiPid)
	sys0 := processSyscalls(b, pid)
	t0 := time.Now()
	lat := loadSlice(b, pick, getPath, *curveGetDuration)
	elapsed := time.Since(t0)
	cpu, apiCPU := processCPU(b, pid)-cpu0, processCPU(b, apiPid)-apiCPU0
	syscalls := processSyscalls(b, pid) - sys0
	if b.Failed() || len(lat) == 0 {
		b.FailNow()
	}
	conns := tcpConnsTo(b, pid, s.c1.Port)
	fds, inotify := openFiles(b, pid)
	rss := processRSS(b, pid)
	forceGC(b, s)
	mem := goMemory(b, s)
	curveDumpAt(b, s, fmt.Sprintf("clusters-%d", n))
	slices.Sort(lat)
	req := len(lat)
	rps := float64(req) / elapsed.Seconds()
	p50, p99 := curveMs(lat[req/2]), curveMs(lat[req*99/100])
	cpuPer, apiPer := float64(cpu.Microseconds())/float64(req), float64(apiCPU.Microseconds())/float64(req)
	load1 := curveLoad1()
	b.ReportMetric(rps, "req/s")
	b.ReportMetric(cpuPer, "portcullis-cpu-µs/req")
	b.ReportMetric(float64(conns), "upstream-conns")
	fmt.Printf("| %d | %.0f | %.2f ms | %.2f ms | %.0f µs | %.0f µs | %.1f | %.1f MiB | %.1f MiB | %.0f | %d (%.2f) | %d (%d) |\n",
		n, rps, p50, p99, cpuPer, apiPer, float64(syscalls)/float64(req), curveMiB(rss), mem.heap/(1<<20), mem.goroutines, conns, float64(conns)/float64(n), fds, inotify)
	if interleave {
		spread = benchClustersSpread(b, s, clients, spreads, getPath)
	}
	return []string{strconv.Itoa(n), strconv.Itoa(req), curveF2(elapsed.Seconds()), curveF1(rps), curveF3(p50), curveF3(p99), curveF1(cpuPer), curveF1(apiPer),
		curveF1(float64(syscalls) / float64(req)), curveF1(curveMiB(rss)), curveF1(mem.heap / (1 << 20)), strconv.Itoa(int(mem.goroutines)), strconv.Itoa(conns), curveF2(float64(conns) / float64(n)), strconv.Itoa(fds), strconv.Itoa(inotify), load0, load1}, spread
}

// benchClustersSpread runs the GET load spread round-robin over the first
// k of clients for each k of spreads, interleaved in -get-slice slices for
// -get-duration each (benchGetSideBySide), so that every k sees the same
// background load: what the number of upstreams in use, alone, costs per
// request. It returns, per k: req/s, p50 and p99 (ms), Portcullis's and
// kube-apiserver's CPU per request (µs).
func benchClustersSpread(b *testing.B, s *proxyStack, clients []*benchClient, spreads []int, path string) map[int][]string {
	var targets []getTarget
	for _, k := range spreads {
		targets = append(targets, getTarget{name: fmt.Sprintf("spread-%d", k), cl: clients[0], pick: func(i int) *benchClient { return clients[i%k] }})
	}
	procs := map[string]int{"portcullis": s.portcullis.Process.Pid(), "apiserver": s.c1.Process.Pid()}
	load0 := curveLoad1()
	benchGetSideBySide(b, targets, path, procs)
	b.Logf("interleaved spreads: load average %s → %s", load0, curveLoad1())
	out := map[int][]string{}
	for i, k := range spreads {
		t := targets[i]
		per := func(proc string) string { return curveF1(float64(t.cpu[proc].Microseconds()) / float64(t.n)) }
		out[k] = []string{curveF1(float64(t.n) / t.elapsed.Seconds()), curveF3(curveMs(t.latencies[t.n/2])), curveF3(curveMs(t.latencies[t.n*99/100])), per("portcullis"), per("apiserver")}
	}
	return out
}

// BenchmarkProxyWatches measures Portcullis's proxy as idle watches held
// open through it grow: one etcd, kube-apiserver and portcullis-server (one
// cluster); watches of config maps in default with the label selector
// portcullis-fanout=yes (which nothing matches while they are idle) are
// opened, 16 at a time, up to each count of -proxy-watches in turn, all
// from this process through one HTTP/2 client transport (which opens
// another connection whenever Portcullis's 100 streams per connection are
// taken). At each point, after four forced collections: Portcullis's RSS,
// Go heap and stacks, goroutines, its connections from clients and to
// kube-apiserver, the CPU it burns while the watches sit idle for
// -proxy-watches-idle, and kube-apiserver's RSS; then one event fan-out: a
// config map with the label is created and the time until every watch has
// received it is taken (and the same for its deletion, so that the next
// point's new watches start empty).
//
//	go test ./test/e2e -run '^$' -bench ProxyWatches -benchtime 1x -timeout 20m -proxy-watches-csv docs/img/proxy-watches.csv
func BenchmarkProxyWatches(b *testing.B) {
	points, err := parseCurveCounts(*curveWatches)
	if err != nil {
		b.Fatalf("-proxy-watches: %v", err)
	}
	load0 := curveLoad1()
	s := startProxyStack(b, proxyStackOptions{
		clusters:  []string{"c1"},
		users:     map[string][]string{"alice@c1": {"--user", "alice", "--group", "devs"}},
		extraArgs: []string{"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/debug/pprof/*"},
	})
	proxied := newBenchClient(b, s.portcullis.URL+"/clusters/c1", s.portcullis.CACertFile(), s.tokens["alice@c1"])
	admin := newBenchClient(b, s.c1.URL, s.c1.CAFile, s.c1.AdminToken)
	pid, apiPid := s.portcullis.Process.Pid(), s.c1.Process.Pid()
	if code, err := proxied.get(context.Background(), "/api/v1/namespaces/default/configmaps"); err != nil || code != http.StatusOK {
		b.Fatalf("list through Portcullis: %d %v", code, err)
	}

	// The same settling as benchIdleWatches before its baseline.
	time.Sleep(3 * time.Second)
	forceGC(b, s)
	rss0, mem0 := processRSS(b, pid), goMemory(b, s)
	apiRSS0 := processRSS(b, apiPid)
	b.Logf("baseline: Portcullis RSS %.1f MiB, heap %.1f MiB, stacks %.1f MiB, %d goroutines; kube-apiserver RSS %.0f MiB",
		curveMiB(rss0), mem0.heap/(1<<20), mem0.stack/(1<<20), int(mem0.goroutines), curveMiB(apiRSS0))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu     sync.Mutex
		bodies []io.Closer
		events atomic.Int64 // events received by all watches
	)
	defer func() {
		cancel()
		for _, body := range bodies {
			body.Close()
		}
	}()
	const watchPath = "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=900&labelSelector=portcullis-fanout%3Dyes"
	open := func(from, to int) {
		next := atomic.Int64{}
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < to && !b.Failed(); i = int(next.Add(1) - 1) {
					body, err := openWatch(ctx, proxied, watchPath)
					if err != nil {
						b.Errorf("watch %d: %v", i, err)
						return
					}
					mu.Lock()
					bodies = append(bodies, body)
					mu.Unlock()
					go func() {
						dec := json.NewDecoder(body)
						for {
							var ev struct{ Type string }
							if dec.Decode(&ev) != nil {
								return
							}
							events.Add(1)
						}
					}()
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
	}
	// fanOut sends one change that every open watch sees and returns the
	// time until all n have it, and the CPU Portcullis, kube-apiserver and
	// this process (the watches' client) used meanwhile.
	fanOut := func(n int, method, path string, body []byte) (took, cpu, apiCPU, clientCPU time.Duration) {
		target := events.Load() + int64(n)
		cpu0, apiCPU0, clientCPU0 := processCPU(b, pid), processCPU(b, apiPid), processCPU(b, os.Getpid())
		t0 := time.Now()
		if code, err := admin.do(ctx, method, path, body); err != nil || code/100 != 2 {
			b.Fatalf("%s %s: %d %v", method, path, code, err)
		}
		deadline := t0.Add(2 * time.Minute)
		for events.Load() < target {
			if time.Now().After(deadline) {
				b.Fatalf("%s %s: %d of %d watches got the event in 2 minutes", method, path, events.Load()-target+int64(n), n)
			}
			time.Sleep(time.Millisecond)
		}
		took = time.Since(t0)
		return took, processCPU(b, pid) - cpu0, processCPU(b, apiPid) - apiCPU0, processCPU(b, os.Getpid()) - clientCPU0
	}

	header := []string{"watches", "open_s", "open_cpu_us_per_watch", "rss_mib", "rss_kib_per_watch", "heap_mib", "stack_mib", "go_kib_per_watch",
		"goroutines", "goroutines_per_watch", "client_conns", "upstream_conns", "idle_cpu_ms_per_s", "apiserver_rss_mib",
		"fanout_ms", "fanout_cpu_ms", "fanout_apiserver_cpu_ms", "fanout_client_cpu_ms", "client_rss_mib", "load1_start", "load1_end"}
	var rows [][]string
	fmt.Printf("\n| watches | time to open (Portcullis CPU / watch) | Portcullis RSS (per watch) | Go heap + stacks (per watch) | goroutines (per watch) | client / upstream connections | idle CPU | kube-apiserver RSS | fan-out to all (CPU: Portcullis, kube-apiserver, client) |\n")
	fmt.Printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	have := 0
	for i, n := range points {
		if n <= have {
			b.Fatalf("-proxy-watches: %d after %d: the counts must grow", n, have)
		}
		pointLoad0 := load0
		if i > 0 {
			pointLoad0 = curveLoad1()
		}
		cpu0 := processCPU(b, pid)
		t0 := time.Now()
		open(have, n)
		openTook := time.Since(t0)
		openCPU := processCPU(b, pid) - cpu0
		opened := n - have
		have = n
		time.Sleep(3 * time.Second)
		// As benchIdleWatches: several collections, each of which may
		// halve an idle goroutine's stack once.
		for range 4 {
			forceGC(b, s)
		}
		rss, mem := processRSS(b, pid), goMemory(b, s)
		apiRSS := processRSS(b, apiPid)
		clientConns := tcpConnsTo(b, os.Getpid(), s.portcullis.Port)
		upstream := tcpConnsTo(b, pid, s.c1.Port)
		curveDumpAt(b, s, fmt.Sprintf("watches-%d", n))
		idle0 := processCPU(b, pid)
		time.Sleep(*curveIdle)
		idle := processCPU(b, pid) - idle0
		idlePerS := float64(idle.Microseconds()) / 1000 / curveIdle.Seconds()

		name := fmt.Sprintf("fanout-%d", n)
		manifest := fmt.Appendf(nil, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"labels":{"portcullis-fanout":"yes"}},"data":{"k":"v"}}`, name)
		clientRSS := processRSS(b, os.Getpid())
		fan, fanCPU, fanAPICPU, fanClientCPU := fanOut(n, http.MethodPost, "/api/v1/namespaces/default/configmaps", manifest)
		del, _, _, _ := fanOut(n, http.MethodDelete, "/api/v1/namespaces/default/configmaps/"+name, nil)
		b.Logf("%d watches: fan-out of a creation %v, of its deletion %v", n, fan.Round(time.Millisecond), del.Round(time.Millisecond))
		load1 := curveLoad1()

		d := float64(n)
		rssPer := float64(rss-rss0) / d / 1024
		goPer := (mem.heap + mem.stack - mem0.heap - mem0.stack) / d / 1024
		grPer := (mem.goroutines - mem0.goroutines) / d
		openPer := float64(openCPU.Microseconds()) / float64(opened)
		fmt.Printf("| %d | %.1f s (%.0f µs) | %.1f MiB (%.1f KiB) | %.1f + %.1f MiB (%.1f KiB) | %d (%.2f) | %d / %d | %.1f ms/s | %.0f MiB | %.0f ms (%.0f, %.0f, %.0f ms) |\n",
			n, openTook.Seconds(), openPer, curveMiB(rss), rssPer, mem.heap/(1<<20), mem.stack/(1<<20), goPer, int(mem.goroutines), grPer,
			clientConns, upstream, idlePerS, curveMiB(apiRSS), curveMs(fan), curveMs(fanCPU), curveMs(fanAPICPU), curveMs(fanClientCPU))
		b.ReportMetric(rssPer, fmt.Sprintf("KiB-RSS/watch@%d", n))
		rows = append(rows, []string{strconv.Itoa(n), curveF2(openTook.Seconds()), curveF1(openPer), curveF1(curveMiB(rss)), curveF2(rssPer), curveF1(mem.heap / (1 << 20)), curveF1(mem.stack / (1 << 20)), curveF2(goPer),
			strconv.Itoa(int(mem.goroutines)), curveF3(grPer), strconv.Itoa(clientConns), strconv.Itoa(upstream), curveF2(idlePerS), curveF1(curveMiB(apiRSS)),
			curveF1(curveMs(fan)), curveF1(curveMs(fanCPU)), curveF1(curveMs(fanAPICPU)), curveF1(curveMs(fanClientCPU)), curveF1(curveMiB(clientRSS)), pointLoad0, load1})
	}
	writeCurveCSV(b, *curveWatchesCSV, header, rows)
}

// openFiles counts pid's open file descriptors, and those that are inotify
// instances (each cluster's CA file is watched with one: the kernel's
// fs.inotify.max_user_instances, 128 by default, bounds them per user).
func openFiles(t testing.TB, pid int) (fds, inotify int) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fds++
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && link == "anon_inode:inotify" {
			inotify++
		}
	}
	return fds, inotify
}

// processSyscalls is the number of read and write system calls pid has
// made (syscr + syscw of /proc/<pid>/io; every socket read and write
// counts).
func processSyscalls(t testing.TB, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(string(data), "\n") {
		name, v, _ := strings.Cut(line, ": ")
		if name == "syscr" || name == "syscw" {
			c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/io: %q: %v", pid, line, err)
			}
			n += c
		}
	}
	return n
}

// parseCurveCounts reads "1k,10k,20k" (k for thousands).
func parseCurveCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		if v, ok := strings.CutSuffix(f, "k"); ok {
			f, mult = v, 1000
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

// writeCurveCSV writes the curve's rows to path (nothing when path is
// empty).
func writeCurveCSV(b *testing.B, path string, header []string, rows [][]string) {
	if path == "" || b.Failed() {
		return
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(header)
	_ = w.WriteAll(rows)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %s", path)
}

// curveLoad1 is the 1-minute load average, as /proc/loadavg shows it.
func curveLoad1() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func curveMiB(v int64) float64        { return float64(v) / (1 << 20) }
func curveMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func curveF1(v float64) string        { return strconv.FormatFloat(v, 'f', 1, 64) }
func curveF2(v float64) string        { return strconv.FormatFloat(v, 'f', 2, 64) }
func curveF3(v float64) string        { return strconv.FormatFloat(v, 'f', 3, 64) }
