package portal_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/clientlimit"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store/bolt"
)

// reportLatency adds p50 and p99 (in ms) of the samples to the benchmark.
func reportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	q := func(p float64) float64 {
		return float64(samples[int(p*float64(len(samples)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// boltEnv is a portal on a bolt store, with opts (their Store is set here).
func boltEnv(b *testing.B, opts ...portaltest.Options) *portaltest.Env {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var o portaltest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Store = st
	return portaltest.New(b, o)
}

func benchRefresh(b *testing.B, e *portaltest.Env, rt string) {
	c := e.Client()
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		resp, err := c.PostForm(e.URL+"/portal/api/refresh", url.Values{"refresh_token": {rt}, "cluster": {"c1"}})
		if err != nil {
			b.Fatal(err)
		}
		var out struct {
			RefreshToken string `json:"refresh_token"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("refresh: %s %v", resp.Status, err)
		}
		samples = append(samples, time.Since(start))
		rt = out.RefreshToken
	}
	b.StopTimer()
	reportLatency(b, samples)
}

// BenchmarkRefresh is a refresh as the CLI does it, over TLS on loopback,
// with the bolt store, for a session whose IdP gave no refresh token (so
// Portcullis's own cost: check, rotate, policy, mint).
func BenchmarkRefresh(b *testing.B) {
	e := boltEnv(b)
	_, rt, err := e.Sessions.Create(context.Background(), session.User{
		Username: "alice@example.com", Email: "alice@example.com", IdentityProvider: "fake", Groups: []string{"idp-devs"},
	}, "", "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	benchRefresh(b, e, rt)
}

// BenchmarkRefreshWithIdP also refreshes at the (in-process, loopback) IdP
// and re-verifies its ID token at each refresh.
func BenchmarkRefreshWithIdP(b *testing.B) {
	e := boltEnv(b)
	verifier := oauth2.GenerateVerifier()
	br := e.Browser()
	var back *url.URL
	br.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme == "http" {
			back = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	q := url.Values{"cli_redirect": {"http://127.0.0.1:1/cb"}, "cli_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "cli_state": {"s"}}
	resp, err := br.Get(e.URL + "/login/fake?" + q.Encode())
	if err != nil || back == nil {
		b.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	resp, err = e.Client().PostForm(e.URL+"/portal/api/token", url.Values{"code": {back.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:1/cb"}})
	if err != nil {
		b.Fatal(err)
	}
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	benchRefresh(b, e, out.RefreshToken)
}

// BenchmarkLoginToToken is a whole CLI login (loopback flow) against an
// in-process IdP that logs in at once: /login/<idp>, the IdP's redirect,
// /callback (code exchange, ID token verification, policy), and the CLI's
// /portal/api/token (session creation, minting).
func BenchmarkLoginToToken(b *testing.B) {
	// Every login comes from 127.0.0.1: with the default login-start
	// limits, the 21st would be refused.
	e := boltEnv(b, portaltest.Options{StartLimits: &clientlimit.Limits{PerClient: clientlimit.Rate{Every: time.Millisecond, Burst: 1_000_000}}})
	br := e.Browser()
	var back *url.URL
	br.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme == "http" {
			back = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	c := e.Client()
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		verifier := oauth2.GenerateVerifier()
		q := url.Values{"cli_redirect": {"http://127.0.0.1:1/cb"}, "cli_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "cli_state": {"s"}, "cluster": {"c1"}}
		back = nil
		resp, err := br.Get(e.URL + "/login/fake?" + q.Encode())
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if back == nil {
			b.Fatalf("login %d: no redirect to the CLI (%s)", len(samples)+1, resp.Status)
		}
		resp, err = c.PostForm(e.URL+"/portal/api/token", url.Values{"code": {back.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:1/cb"}})
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("token: %v %v", err, resp.Status)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if !strings.Contains(out["refresh_token"].(string), ".") {
			b.Fatal("no refresh token")
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, samples)
}
