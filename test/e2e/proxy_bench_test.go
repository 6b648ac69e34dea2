package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// BenchmarkProxyMode puts kube-apiserver reached directly and through
// Portcullis's proxy side by side, on one machine, in one run:
//
//   - get: GET of a small ConfigMap by the same user (alice in devs: a
//     static token directly, a Portcullis token through the proxy), same
//     client (one HTTP/2 connection, as client-go) and concurrency (16),
//     direct and proxied alternating in 1 s slices for 10 s each
//     (-get-duration, -get-slice) so that both see the same background
//     load; reports req/s, p50/p99 and each process's CPU per request for
//     both, and proxied/direct;
//   - idle-watches: 1,000 idle watches held open through Portcullis;
//     reports Portcullis's memory per watch (RSS, and Go heap+stacks) after
//     a garbage collection;
//   - exec-stream: kubectl exec -i cat of 32 MiB through the node agent and
//     back, directly and through Portcullis alternately, 5 times each
//     (-exec-rounds); reports MB/s (of the payload, each way) and
//     proxied/direct;
//   - get-constrained, exec-stream-constrained: the same once the
//     optional constrained-impersonation RBAC is applied and kube-apiserver
//     restarted.
//
// Run it with (figures in docs/benchmarks.md):
//
//	go test ./test/e2e -run '^$' -bench ProxyMode -timeout 20m
//
// Audit is off on both sides. By default (-placement=shared) every process
// may use every CPU. With -placement=separate etcd and kube-apiserver run on
// CPU 0, Portcullis, the load generator, kubectl and the node agent on CPU 1;
// that does not make them separate hosts: the two vCPUs of this machine slow
// each other down (see docs/benchmarks.md).
func BenchmarkProxyMode(b *testing.B) {
	switch *benchPlacement {
	case "separate":
		// The control plane on core 0,
		// Portcullis and the clients (this process, kubectl, the node
		// agent) on core 1.
		if runtime.NumCPU() < 2 {
			b.Fatal("-placement=separate needs two CPUs")
		}
		framework.PlaceProcesses(b, map[string]string{"etcd": "0", "kube-apiserver": "0", "portcullis-server": "1"})
		framework.PinSelf(b, 1)
	case "shared":
	default:
		b.Fatalf("-placement=%q: want separate or shared", *benchPlacement)
	}
	directToken := "alice-direct-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s := startProxyStack(b, proxyStackOptions{
		clusters:     []string{"c1"},
		directTokens: []framework.StaticToken{{Token: directToken, User: "alice", UID: "alice-direct", Groups: []string{"devs"}}},
		users:        map[string][]string{"alice@c1": {"--user", "alice", "--group", "devs"}},
		// forceGC asks /debug/pprof for a collection.
		extraArgs: []string{"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/debug/pprof/*"},
	})
	if _, stderr, err := framework.Kubectl(b, s.admin["c1"], "create", "configmap", "small", "--from-literal=k=v"); err != nil {
		b.Fatalf("create configmap: %v: %s", err, stderr)
	}
	directKubeconfig := filepath.Join(framework.WorkDir(b), "kubeconfigs", "alice-direct.kubeconfig")
	if err := framework.WriteKubeconfig(directKubeconfig, s.c1.URL, s.c1.CAFile, &clientcmdapi.AuthInfo{Token: directToken}); err != nil {
		b.Fatal(err)
	}

	direct := newBenchClient(b, s.c1.URL, s.c1.CAFile, directToken)
	proxied := newBenchClient(b, s.portcullis.URL+"/clusters/c1", s.portcullis.CACertFile(), s.tokens["alice@c1"])
	const getPath = "/api/v1/namespaces/default/configmaps/small"
	// Read when each comparison starts: kube-apiserver is restarted between them.
	procs := func() map[string]int {
		return map[string]int{"apiserver": s.c1.Process.Pid(), "etcd": s.c1.Etcd.Process.Pid(), "portcullis": s.portcullis.Process.Pid(), "client": os.Getpid()}
	}
	targets := []getTarget{{name: "direct", cl: direct}, {name: "proxied", cl: proxied}}
	// The same GETs through a bare reverse proxy (TLS and HTTP/2 on both
	// sides, nothing else) in this process: what any proxy costs here.
	relay := startRelay(b, s.c1.URL, s.c1.CAFile)
	withRelay := append(slices.Clone(targets), getTarget{name: "relay", cl: newBenchClient(b, relay.url, relay.caFile, directToken)})
	b.Run("get", func(b *testing.B) {
		if *getProfile != "" {
			done := profilePortcullis(b, s, *getProfile, "get")
			defer func() { <-done }()
		}
		benchGetSideBySide(b, withRelay, getPath, procs())
	})
	// Once, whatever b.N: a second round would start from the first's RSS.
	b.Run("idle-watches", func(b *testing.B) { benchIdleWatches(b, s, proxied, 1000) })

	agent := framework.StartNodeAgent(b, s.c1, "bench-node")
	agent.CreatePod("default", "p")
	payload := make([]byte, 32<<20)
	if _, err := rand.Read(payload); err != nil {
		b.Fatal(err)
	}
	b.Run("exec-stream", func(b *testing.B) {
		benchExecSideBySide(b, directKubeconfig, s.kubeconfig["alice@c1"], payload)
	})

	// The same with the optional constrained-impersonation RBAC
	// (artifacts/rbac/proxy-clusterrole-constrained.yaml), which lets
	// kube-apiserver cache its impersonation checks.
	manifest := filepath.Join(framework.RepoRoot(b), "artifacts", "rbac", "proxy-clusterrole-constrained.yaml")
	if _, stderr, err := framework.Kubectl(b, s.admin["c1"], "apply", "-f", manifest); err != nil {
		b.Fatalf("applying %s: %v: %s", manifest, err, stderr)
	}
	// kube-apiserver remembers, per requester, the impersonation mode that
	// last succeeded (legacy, until now) and tries it first: restart it so
	// that it starts from the constrained modes, as a cluster that had both
	// ClusterRoles from the start would.
	if err := s.c1.Process.Restart(); err != nil {
		b.Fatalf("restarting kube-apiserver: %v", err)
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		code, err := proxied.get(ctx, getPath)
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		b.Fatalf("kube-apiserver did not come back through the proxy: %v", err)
	}
	b.Run("get-constrained", func(b *testing.B) { benchGetSideBySide(b, targets, getPath, procs()) })
	b.Run("exec-stream-constrained", func(b *testing.B) {
		benchExecSideBySide(b, directKubeconfig, s.kubeconfig["alice@c1"], payload)
	})
}

var watchDump = flag.String("watch-dump", "", "BenchmarkProxyMode: write Portcullis's goroutine dump, heap profile and binary to this directory while the idle watches are open")

var getProfile = flag.String("get-profile", "", "BenchmarkProxyMode: write a CPU profile of Portcullis over the GET comparison, and its binary, to this directory (go tool pprof DIR/portcullis-server DIR/get.cpu.pb.gz)")

var benchPlacement = flag.String("placement", "shared", "BenchmarkProxyMode: shared (all processes on all CPUs) or separate (control plane on CPU 0, Portcullis and clients on CPU 1)")

var (
	getDuration = flag.Duration("get-duration", 10*time.Second, "BenchmarkProxyMode: how long each side of the GET comparison runs")
	getSlice    = flag.Duration("get-slice", time.Second, "BenchmarkProxyMode: the GET comparison alternates direct and proxied in slices this long")
	execRounds  = flag.Int("exec-rounds", 5, "BenchmarkProxyMode: kubectl exec runs of each side, alternating")
)

// benchClient is one HTTP/2 connection's worth of client, as client-go uses.
type benchClient struct {
	base, token string
	hc          *http.Client
}

func newBenchClient(t testing.TB, base, caFile, token string) *benchClient {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 100,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &benchClient{base: base, token: token, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *benchClient) get(ctx context.Context, path string) (int, error) {
	return c.do(ctx, http.MethodGet, path, nil)
}

// do sends one request, with a JSON body if body is not nil, and drains the
// answer.
func (c *benchClient) do(ctx context.Context, method, path string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// getTarget is one side of the GET comparison, and what was measured of it.
type getTarget struct {
	name string
	cl   *benchClient
	// pick, if set, chooses each request's client instead of cl (cl still
	// makes the first request).
	pick      func(i int) *benchClient
	n         int
	elapsed   time.Duration
	latencies []time.Duration
	cpu       map[string]time.Duration
}

// benchGetSideBySide runs the GET load against each target in turn, in
// -get-slice slices for -get-duration each, so that both see the same
// background load (the machine is shared), and reports for each: req/s,
// p50/p99 and each process's CPU per request; and the ratio of the second
// target's throughput to the first's. Same client, same concurrency.
func benchGetSideBySide(b *testing.B, targets []getTarget, path string, procs map[string]int) {
	// The timer keeps running: one round takes longer than any sensible
	// -benchtime, so the framework does not ask for more rounds.
	for i := range targets {
		t := &targets[i]
		t.n, t.elapsed, t.latencies, t.cpu = 0, 0, nil, map[string]time.Duration{}
		if code, err := t.cl.get(context.Background(), path); err != nil || code != http.StatusOK {
			b.Fatalf("GET %s (%s): %d %v", path, t.name, code, err)
		}
	}
	for done := time.Duration(0); done < *getDuration; done += *getSlice {
		for i := range targets {
			t := &targets[i]
			cpu0 := map[string]time.Duration{}
			for name, pid := range procs {
				cpu0[name] = processCPU(b, pid)
			}
			start := time.Now()
			pick := t.pick
			if pick == nil {
				pick = func(int) *benchClient { return t.cl }
			}
			lat := loadSlice(b, pick, path, *getSlice)
			t.elapsed += time.Since(start)
			for name, pid := range procs {
				t.cpu[name] += processCPU(b, pid) - cpu0[name]
			}
			t.n += len(lat)
			t.latencies = append(t.latencies, lat...)
		}
	}
	for i := range targets {
		t := &targets[i]
		if t.n == 0 {
			b.Fatalf("%s: no request completed", t.name)
		}
		slices.Sort(t.latencies)
		b.ReportMetric(float64(t.n)/t.elapsed.Seconds(), t.name+"-req/s")
		b.ReportMetric(float64(t.latencies[t.n/2].Microseconds())/1000, t.name+"-p50-ms")
		b.ReportMetric(float64(t.latencies[t.n*99/100].Microseconds())/1000, t.name+"-p99-ms")
		for name, cpu := range t.cpu {
			b.ReportMetric(float64(cpu.Microseconds())/float64(t.n), t.name+"-"+name+"-cpu-µs/req")
		}
	}
	for _, t := range targets[1:] {
		ratio := (float64(t.n) / t.elapsed.Seconds()) / (float64(targets[0].n) / targets[0].elapsed.Seconds())
		b.ReportMetric(ratio, t.name+"/"+targets[0].name)
	}
}

// relayServer is a bare reverse proxy in the test process.
type relayServer struct {
	url, caFile string
}

// startRelay serves a bare reverse proxy to upstream: the standard
// library's, over TLS and HTTP/2 on both sides, passing the client's
// credential through, with no authentication, policy, impersonation or
// audit of its own. Its throughput against direct access bounds what any
// proxy reaches on this machine. Its CPU is counted in the client's.
func startRelay(b *testing.B, upstream, caFile string) relayServer {
	target, err := url.Parse(upstream)
	if err != nil {
		b.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 100}
	b.Cleanup(tr.CloseIdleConnections)
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: tr,
	}
	srv := httptest.NewUnstartedServer(rp)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	b.Cleanup(srv.Close)
	relayCA := filepath.Join(b.TempDir(), "relay-ca.crt")
	if err := os.WriteFile(relayCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		b.Fatal(err)
	}
	return relayServer{url: srv.URL, caFile: relayCA}
}

// getConcurrency is how many GETs are in flight.
const getConcurrency = 16

// loadSlice keeps getConcurrency GETs of path in flight for d and returns
// their latencies; pick chooses each request's client (e.g. its cluster)
// from the request's sequence number within its worker.
func loadSlice(b *testing.B, pick func(i int) *benchClient, path string, d time.Duration) []time.Duration {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := range getConcurrency {
		wg.Go(func() {
			var mine []time.Duration
			// Workers start at different points of pick's sequence.
			for i := w; time.Now().Before(deadline); i += getConcurrency {
				c := pick(i)
				t0 := time.Now()
				code, err := c.get(context.Background(), path)
				if err != nil || code != http.StatusOK {
					b.Errorf("GET %s%s: %d %v", c.base, path, code, err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}

// processCPU is the user+system CPU time pid has used.
func processCPU(t testing.TB, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which may hold spaces) start after ") ".
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// benchIdleWatches opens n watches through Portcullis, waits until all are
// established and idle, and reports how much Portcullis's memory grew per
// watch.
func benchIdleWatches(b *testing.B, s *proxyStack, c *benchClient, n int) {
	// The timer keeps running: one round takes longer than any sensible
	// -benchtime, so the framework does not ask for more rounds.
	pid := s.portcullis.Process.Pid()
	// Let earlier benchmarks' garbage settle before the baseline.
	time.Sleep(3 * time.Second)
	forceGC(b, s)
	rss0, mem0 := processRSS(b, pid), goMemory(b, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bodies []io.Closer
	defer func() {
		for _, body := range bodies {
			body.Close()
		}
	}()
	for i := range n {
		body, err := openWatch(ctx, c, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=900&fieldSelector=metadata.name%3Dno-such-"+strconv.Itoa(i))
		if err != nil {
			b.Fatalf("watch %d: %v", i, err)
		}
		bodies = append(bodies, body)
	}
	time.Sleep(3 * time.Second)
	// A watch lives for minutes, through many collections; each collection
	// also halves goroutine stacks that use under a quarter of theirs, down
	// to what an idle watch needs, so run a few.
	for range 4 {
		forceGC(b, s)
	}
	rss1, mem1 := processRSS(b, pid), goMemory(b, s)
	if *watchDump != "" {
		dumpPortcullis(b, s, pid, *watchDump)
	}
	b.ReportMetric(float64(rss1-rss0)/float64(n)/1024, "KiB-RSS/watch")
	b.ReportMetric((mem1.heap-mem0.heap)/float64(n)/1024, "KiB-heap/watch")
	b.ReportMetric((mem1.stack-mem0.stack)/float64(n)/1024, "KiB-stack/watch")
	b.ReportMetric((mem1.heap+mem1.stack-mem0.heap-mem0.stack)/float64(n)/1024, "KiB-go/watch")
	b.ReportMetric((mem1.goroutines-mem0.goroutines)/float64(n), "goroutines/watch")
	b.Logf("Portcullis with %d idle watches: RSS %d → %d MiB, Go heap %.0f → %.0f MiB, stacks %.0f → %.0f MiB",
		n, rss0>>20, rss1>>20, mem0.heap/(1<<20), mem1.heap/(1<<20), mem0.stack/(1<<20), mem1.stack/(1<<20))
}

// openWatch starts the watch at path (with its query) through c and
// returns its body once the response headers are in: the watch is
// established. It lives until ctx ends or the body is closed.
func openWatch(ctx context.Context, c *benchClient, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	// The watch must outlive the client's request timeout.
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("%d %s", resp.StatusCode, body)
	}
	return resp.Body, nil
}

// dumpPortcullis writes Portcullis's goroutines, heap profile and binary to
// dir, to find out what an idle watch holds:
//
//	go tool pprof -traces dir/portcullis-server dir/heap.pb.gz
func dumpPortcullis(b *testing.B, s *proxyStack, pid int, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for name, path := range map[string]string{"goroutines.txt": "/debug/pprof/goroutine?debug=2", "heap.pb.gz": "/debug/pprof/heap"} {
		resp, err := s.portcullis.HTTPClient().Get(s.portcullis.URL + path)
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", fmt.Sprintf("/proc/%d/exe", pid), filepath.Join(dir, "portcullis-server")).CombinedOutput(); err != nil {
		b.Fatalf("copying the binary: %v: %s", err, out)
	}
	b.Logf("goroutines, heap profile and binary of Portcullis in %s", dir)
}

// forceGC makes Portcullis run a garbage collection (pprof's heap profile
// with gc=1).
// profilePortcullis saves a CPU profile of Portcullis, taken over what the
// GET comparison lasts (the proxied slices are a third of it, and all of
// Portcullis's CPU), into dir/<name>.cpu.pb.gz with its binary; the channel
// closes when it is written.
func profilePortcullis(b *testing.B, s *proxyStack, dir, name string) <-chan struct{} {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	seconds := int((3 * *getDuration).Seconds())
	done := make(chan struct{})
	go func() {
		defer close(done)
		hc := s.portcullis.HTTPClient()
		hc.Timeout = time.Duration(seconds+30) * time.Second
		resp, err := hc.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.portcullis.URL, seconds))
		if err != nil {
			b.Errorf("CPU profile: %v", err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Errorf("CPU profile: %s %v", resp.Status, err)
			return
		}
		if err := os.WriteFile(filepath.Join(dir, name+".cpu.pb.gz"), data, 0o644); err != nil {
			b.Error(err)
		}
		bin, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.portcullis.Process.Pid()))
		if err == nil {
			if data, err := os.ReadFile(bin); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "portcullis-server"), data, 0o755)
			}
		}
	}()
	return done
}

func forceGC(t testing.TB, s *proxyStack) {
	resp, err := s.portcullis.HTTPClient().Get(s.portcullis.URL + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /debug/pprof/heap?gc=1: %s", resp.Status)
	}
}

// processRSS is the resident set of pid, in bytes.
func processRSS(t testing.TB, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// goMemory reads Portcullis's Go heap in use, goroutine stacks in use and
// goroutine count from its /metrics.
func goMemory(t testing.TB, s *proxyStack) goMem {
	hc := metricsClient(t, s.portcullis, s.pki)
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(s.portcullis.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m goMem
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for name, dst := range map[string]*float64{
			"go_memstats_heap_inuse_bytes ":  &m.heap,
			"go_memstats_stack_inuse_bytes ": &m.stack,
			"go_goroutines ":                 &m.goroutines,
		} {
			if v, ok := strings.CutPrefix(sc.Text(), name); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					t.Fatal(err)
				}
				*dst = f
			}
		}
	}
	return m
}

type goMem struct{ heap, stack, goroutines float64 }

// benchExecSideBySide runs kubectl exec -i cat of payload directly and
// through Portcullis in turn, -exec-rounds times each, and reports the MB/s
// of each (of the payload, each way) and proxied/direct.
func benchExecSideBySide(b *testing.B, direct, proxied string, payload []byte) {
	var took [2]time.Duration
	for range *execRounds {
		for i, kubeconfig := range []string{direct, proxied} {
			start := time.Now()
			out, stderr, err := framework.KubectlWith(b, framework.KubectlOptions{Kubeconfig: kubeconfig, Stdin: bytes.NewReader(payload), Timeout: 5 * time.Minute},
				"exec", "-i", "p", "--", "cat")
			took[i] += time.Since(start)
			if err != nil || len(out) != len(payload) {
				b.Fatalf("exec cat: %d of %d bytes back, %v: %s", len(out), len(payload), err, stderr)
			}
		}
	}
	rate := func(d time.Duration) float64 { return float64(*execRounds*len(payload)) / d.Seconds() / 1e6 }
	b.ReportMetric(rate(took[0]), "direct-MB/s")
	b.ReportMetric(rate(took[1]), "proxied-MB/s")
	b.ReportMetric(rate(took[1])/rate(took[0]), "proxied/direct")
}
