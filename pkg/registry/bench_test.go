package registry

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// BenchmarkTokenCredentialRequest measures whole exchanges over loopback
// HTTPS through the generic apiserver's handler chain: an ID token of an
// RS256 identity provider is verified (kube-apiserver's OIDC authenticator),
// mapped, admitted by the policy, and a cluster token is minted (ES256).
// The client and the server share the machine. It reports the latency
// percentiles of single requests and the throughput.
//
//	go test -run '^$' -bench TokenCredentialRequest -benchtime 2000x ./pkg/registry/
func BenchmarkTokenCredentialRequest(b *testing.B) {
	f := newFixture(b)
	iss := newOIDCIssuer(b)
	f.withIdP(b, iss)
	ts := startTestServer(b, f.options())
	body := tcrJSON("dev", iss.idToken(b, nil))

	exchange := func() time.Duration {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, ts.URL+tcrPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		resp, err := ts.Client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var got v1alpha1.TokenCredentialRequest
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated || got.Status.Token == "" {
			b.Fatalf("HTTP %d, %v: %+v", resp.StatusCode, err, got.Status)
		}
		return time.Since(start)
	}
	for range 20 { // connections, caches, JIT-free but lazy paths
		exchange()
	}

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
	)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			local = append(local, exchange())
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	elapsed := b.Elapsed()
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(float64(len(latencies)-1)*p)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "req/s")
}
