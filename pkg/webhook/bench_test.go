package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/audit"
	"k8s.io/client-go/kubernetes/fake"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
	kstore "portcullis.dev/portcullis/pkg/store/kubernetes"
	"portcullis.dev/portcullis/pkg/store/memory"
)

// warmSetSize is the number of distinct valid tokens BenchmarkReviewWarm
// cycles through: a cluster's worth of active users and controllers.
const warmSetSize = 10000

// benchFixture is a fixture as the server builds it: the verification cache
// at the configuration's default size and the Prometheus metrics on.
func benchFixture(b *testing.B) *fixture {
	return newFixtureWith(b, fixtureOptions{cacheSize: v1alpha1.DefaultTokenCacheSize, metrics: DefaultMetrics()})
}

// BenchmarkReviewWarmByStore is BenchmarkReviewWarm on each state store,
// with 1,000 live revocations: on the hot path a store is asked IsRevoked
// and ListGrants, which the bolt and kubernetes stores answer from memory
// (the kubernetes store from its informer caches, here fed by a fake
// clientset: the API is not on the hot path, which is the point).
func BenchmarkReviewWarmByStore(b *testing.B) {
	for _, bs := range []struct {
		name string
		open func(testing.TB) store.Store
	}{
		{"memory", func(testing.TB) store.Store { return memory.New() }},
		{"bolt", func(t testing.TB) store.Store {
			st, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"kubernetes", func(t testing.TB) store.Store {
			st, err := kstore.New(context.Background(), fake.NewClientset(), kstore.Options{Namespace: "portcullis"})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	} {
		b.Run(bs.name, func(b *testing.B) {
			f := newFixtureWith(b, fixtureOptions{cacheSize: v1alpha1.DefaultTokenCacheSize, metrics: DefaultMetrics(), store: bs.open})
			now := time.Now()
			for i := range 1000 {
				if err := f.st.Revoke(context.Background(), store.Revocation{ID: fmt.Sprintf("revoked-%d", i), RevokedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
			bodies := reviewBodies(b, f, warmSetSize)
			for _, body := range bodies {
				benchServe(b, f.handler, body)
			}
			b.ReportAllocs()
			i, cpu := 0, processCPU()
			for b.Loop() {
				benchServe(b, f.handler, bodies[i%len(bodies)])
				i++
			}
			reportCPU(b, cpu, i)
		})
	}
}

// reviewBodies mints n distinct tokens for c1 (distinct users, so distinct
// payloads) and returns the v1 TokenReviews kube-apiserver would send for
// them, with its default API audience.
func reviewBodies(b *testing.B, f *fixture, n int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	for i := range out {
		c := claimsFor(clusterC1)
		c.Username = fmt.Sprintf("user-%d", i)
		out[i] = reviewBody(b, "v1", f.mint(c), audDefault)
	}
	return out
}

// benchServe sends one review through the handler as the generic chain
// would (with an audit context) and checks it was authenticated.
func benchServe(b *testing.B, h http.Handler, body []byte) {
	req := httptest.NewRequestWithContext(audit.WithAuditContext(context.Background()), http.MethodPost, PathPrefix+"/"+clusterC1, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"authenticated":true`)) {
		var out reviewResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		b.Fatalf("HTTP %d, authenticated=%v, error %q", rec.Code, out.Status.Authenticated, out.Status.Error)
	}
}

// reportCPU reports the process's CPU time per operation since cpu0 (all
// threads, the garbage collector included) as cpu-ns/op.
func reportCPU(b *testing.B, cpu0 time.Duration, n int) {
	if cpu1 := processCPU(); cpu1 > 0 && n > 0 {
		b.ReportMetric(float64(cpu1-cpu0)/float64(n), "cpu-ns/op")
	}
}

// BenchmarkReviewWarm cycles through 10,000 distinct valid tokens, each seen
// before: decoding, the cache lookup (SHA-256), the time, audience and
// revocation checks, the policy, and the answer. misses/op is the share of
// reviews that needed a signature check because the token had been evicted
// from the verification cache.
func BenchmarkReviewWarm(b *testing.B) {
	f := benchFixture(b)
	bodies := reviewBodies(b, f, warmSetSize)
	for _, body := range bodies {
		benchServe(b, f.handler, body)
	}
	misses := f.misses.Load()
	b.ReportAllocs()
	i, cpu := 0, processCPU()
	for b.Loop() { // the setup above runs once
		benchServe(b, f.handler, bodies[i%len(bodies)])
		i++
	}
	reportCPU(b, cpu, i)
	b.ReportMetric(float64(f.misses.Load()-misses)/float64(i), "misses/op")
}

// BenchmarkReviewCold reviews a token never seen before on every iteration:
// BenchmarkReviewWarm plus parsing and one ES256 verification (compare
// pkg/token's BenchmarkES256VerifyRaw).
func BenchmarkReviewCold(b *testing.B) {
	f := benchFixture(b)
	bodies := reviewBodies(b, f, b.N)
	hits := f.hits.Load()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; i < b.N; i++ {
		benchServe(b, f.handler, bodies[i])
	}
	b.StopTimer()
	reportCPU(b, cpu, b.N)
	if n := f.hits.Load() - hits; n != 0 {
		b.Fatalf("%d cache hits in a cold benchmark", n)
	}
}
