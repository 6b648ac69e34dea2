package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// BenchmarkProxyMode puts kube-apiserver reached directly and through
// Portcullis's proxy side by side, on one machine, in one run:
//
//   - get/direct, get/proxied: GET of a small ConfigMap by the same user
//     (alice in devs: a static token directly, a Portcullis token through
//     the proxy), same client (one HTTP/2 connection, as client-go) and
//     concurrency; reports req/s and the p50/p99 latency;
//   - idle-watches: 1,000 idle watches held open through Portcullis;
//     reports Portcullis's memory per watch (RSS, and Go heap+stacks);
//   - exec-stream/direct, exec-stream/proxied: kubectl exec -i cat of 32 MiB
//     through the node agent and back; reports MB/s (of the payload, each
//     way).
//
// Run it with (figures in docs/benchmarks.md):
//
//	go test ./test/e2e -run '^$' -bench ProxyMode -benchtime 5s -timeout 20m
//
// Audit is off on both sides. Everything (load generator, Portcullis,
// kube-apiserver, etcd) shares the machine's cores, so the proxied figures
// include the cost of Portcullis competing with kube-apiserver for CPU.
func BenchmarkProxyMode(b *testing.B) {
	directToken := "alice-direct-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s := startProxyStack(b, proxyStackOptions{
		clusters:     []string{"c1"},
		directTokens: []framework.StaticToken{{Token: directToken, User: "alice", UID: "alice-direct", Groups: []string{"devs"}}},
		users:        map[string][]string{"alice@c1": {"--user", "alice", "--group", "devs"}},
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
	for _, c := range []struct {
		name string
		cl   *benchClient
	}{{"direct", direct}, {"proxied", proxied}} {
		b.Run("get/"+c.name, func(b *testing.B) {
			procs := map[string]int{"apiserver": s.c1.Process.Pid(), "portcullis": s.portcullis.Process.Pid(), "client": os.Getpid()}
			cpu0 := map[string]time.Duration{}
			for name, pid := range procs {
				cpu0[name] = processCPU(b, pid)
			}
			n := benchGet(b, c.cl, getPath)
			for name, pid := range procs {
				if n > 0 {
					b.ReportMetric(float64((processCPU(b, pid)-cpu0[name]).Microseconds())/float64(n), name+"-cpu-µs/req")
				}
			}
		})
	}

	b.Run("idle-watches", func(b *testing.B) {
		for range b.N {
			benchIdleWatches(b, s, proxied, 1000)
		}
	})

	agent := framework.StartNodeAgent(b, s.c1, "bench-node")
	agent.CreatePod("default", "p")
	payload := make([]byte, 32<<20)
	if _, err := rand.Read(payload); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, kubeconfig string }{
		{"direct", directKubeconfig},
		{"proxied", s.kubeconfig["alice@c1"]},
	} {
		b.Run("exec-stream/"+c.name, func(b *testing.B) { benchExecStream(b, c.kubeconfig, payload) })
	}
}

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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// benchGet runs the GET load and returns how many requests it made.
func benchGet(b *testing.B, c *benchClient, path string) int {
	if code, err := c.get(context.Background(), path); err != nil || code != http.StatusOK {
		b.Fatalf("GET %s: %d %v", path, code, err)
	}
	var mu sync.Mutex
	var latencies []time.Duration
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			code, err := c.get(context.Background(), path)
			if err != nil || code != http.StatusOK {
				b.Errorf("GET %s: %d %v", path, code, err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		latencies = append(latencies, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(latencies) == 0 {
		return 0
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	return len(latencies)
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
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=900&fieldSelector=metadata.name%3Dno-such-"+strconv.Itoa(i), nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		// The watch must outlive the client's request timeout.
		hc := *c.hc
		hc.Timeout = 0
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatalf("watch %d: %v", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			b.Fatalf("watch %d: %d %s", i, resp.StatusCode, body)
		}
		bodies = append(bodies, resp.Body)
	}
	time.Sleep(3 * time.Second)
	rss1, mem1 := processRSS(b, pid), goMemory(b, s)
	b.ReportMetric(float64(rss1-rss0)/float64(n)/1024, "KiB-RSS/watch")
	b.ReportMetric((mem1.heap-mem0.heap)/float64(n)/1024, "KiB-heap/watch")
	b.ReportMetric((mem1.stack-mem0.stack)/float64(n)/1024, "KiB-stack/watch")
	b.ReportMetric((mem1.goroutines-mem0.goroutines)/float64(n), "goroutines/watch")
	b.Logf("Portcullis with %d idle watches: RSS %d → %d MiB, Go heap %.0f → %.0f MiB, stacks %.0f → %.0f MiB",
		n, rss0>>20, rss1>>20, mem0.heap/(1<<20), mem1.heap/(1<<20), mem0.stack/(1<<20), mem1.stack/(1<<20))
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
	resp, err := s.portcullis.HTTPClient().Get(s.portcullis.URL + "/metrics")
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

func benchExecStream(b *testing.B, kubeconfig string, payload []byte) {
	b.SetBytes(int64(len(payload)))
	for range b.N {
		out, stderr, err := framework.KubectlWith(b, framework.KubectlOptions{Kubeconfig: kubeconfig, Stdin: bytes.NewReader(payload), Timeout: 5 * time.Minute},
			"exec", "-i", "p", "--", "cat")
		if err != nil || len(out) != len(payload) {
			b.Fatalf("exec cat: %d of %d bytes back, %v: %s", len(out), len(payload), err, stderr)
		}
	}
}
