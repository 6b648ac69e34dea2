package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config"
	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// BenchmarkTokenCredentialRequest_Direct measures credential exchanges
// against the portcullis-server binary on loopback, directly (not through
// kube-apiserver): each request carries an RS256 ID token of a trusted
// identity provider, which Portcullis verifies (kube-apiserver's OIDC
// authenticator), maps, admits by policy and exchanges for an ES256 cluster
// token. Clients authenticate with Portcullis tokens of many users, so that
// the per-client rate limit (20 at once, 5/s) is not what is measured.
// Client and server share the machine. It reports the latency percentiles
// of single requests and the throughput.
//
//	go test -run '^$' -bench TokenCredentialRequest_Direct -benchtime 3000x ./test/e2e/
func BenchmarkTokenCredentialRequest_Direct(b *testing.B) {
	pki := framework.NewPKI(b)
	ci := framework.StartTestIssuer(b, pki)
	port := framework.FreePort(b)
	stateDir := b.TempDir()
	cfgYAML := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
identityProviders:
- name: ci
  issuer:
    url: %s
    audiences: [portcullis-ci]
  certificateAuthorityFile: %s
  acceptIDTokens: true
  claimMappings:
    username:
      claim: sub
      prefix: "ci:"
clusters:
- name: bench
  access:
    allUsers: true
`, port, filepath.Join(stateDir, "state.db"), ci.URL, pki.CA.CertFile)

	// Callers' tokens, minted before the server holds the store.
	callers := make([]string, b.N/15+8)
	func() {
		path := filepath.Join(stateDir, "config.yaml")
		if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
			b.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		st, err := server.OpenStore(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		km, err := server.NewKeys(context.Background(), cfg, st, nil)
		if err != nil {
			b.Fatal(err)
		}
		minter, err := token.NewMinter(km, cfg.IssuerURL, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := range callers {
			user := fmt.Sprintf("caller-%d", i)
			if callers[i], _, err = minter.Mint(context.Background(), token.Claims{
				Subject: user, Username: user, Audience: []string{"bench"}, Expiry: time.Now().Add(time.Hour),
			}); err != nil {
				b.Fatal(err)
			}
		}
	}()
	p := framework.StartPortcullis(b, framework.PortcullisOptions{ConfigYAML: cfgYAML, Port: port})
	hc := p.HTTPClient()
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	body := []byte(tcrJSONBody("bench", ci.IDToken(b, map[string]any{"aud": "portcullis-ci", "sub": "runner"})))
	url := p.URL + aggAPIGroup + "/tokencredentialrequests"

	var next atomic.Int64
	exchange := func() time.Duration {
		caller := callers[int(next.Add(1))/15%len(callers)]
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+caller)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var got loginv1alpha1.TokenCredentialRequest
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated || got.Status.Token == "" {
			b.Fatalf("HTTP %d, %v: %+v", resp.StatusCode, err, got.Status)
		}
		return time.Since(start)
	}
	// The identity provider's keys load asynchronously after start.
	for deadline := time.Now().Add(30 * time.Second); ; {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var got loginv1alpha1.TokenCredentialRequest
		_ = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if got.Status.Token != "" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no exchange succeeded: %+v", got.Status)
		}
		time.Sleep(100 * time.Millisecond)
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
	pct := func(q float64) float64 {
		return float64(latencies[int(float64(len(latencies)-1)*q)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "req/s")
}
