package e2e

// Fault drills (issue 13): each takes away something Portcullis depends on
// while it runs — the identity provider, an upstream kube-apiserver, the
// audit webhook's backend, the state file's file system, the patience of
// its clients — with the real components, and checks what clients are told,
// that nothing is lost, and that Portcullis recovers without a restart.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/test/e2e/framework"
)

const drillCluster = "c1"

// drillConfig is Portcullis with its portal in front of Dex and one
// webhook-mode cluster, its state in stateFile.
func drillConfig(port int, stateFile string, dex *framework.Dex, secretFile, clientCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
identityProviders:
- name: dex
  issuer:
    url: %s
  certificateAuthorityFile: %s
  clientID: %s
  clientSecretFile: %s
  claimMappings:
    username:
      claim: email
      prefix: ""
groupMappings:
- match:
    emails: [alice@example.com]
  groups: [devs]
clusters:
- name: %s
  access:
    groups: [devs]
webhook:
  clientCAFile: %s
`, port, stateFile, dex.IssuerURL, dex.CAFile, dex.ClientID, secretFile, drillCluster, clientCA)
}

// drillSession is a login session written into the store before the server
// holds it, as the portal would have made it, and a cluster token of it.
type drillSession struct {
	id, refresh, clusterToken string
}

func seedDrillSession(t *testing.T, stateDir, cfgYAML string) drillSession {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(stateDir, "seed-config.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	km, err := server.NewKeys(ctx, cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	minter, err := token.NewMinter(km, cfg.IssuerURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	hash := sha256.Sum256([]byte(secret))
	now := time.Now()
	s := drillSession{id: "drill-session", refresh: "drill-session." + secret}
	must(t, st.CreateSession(ctx, store.Session{
		ID: s.id, Username: "alice@example.com", Groups: []string{"devs"}, Email: "alice@example.com",
		IdentityProvider: "dex", RefreshTokenHash: hash[:], ClientAddress: "192.0.2.10",
		CreatedAt: now, LastUsedAt: now, IdleTimeout: time.Hour, ExpiresAt: now.Add(24 * time.Hour),
	}))
	s.clusterToken, _, err = minter.Mint(ctx, token.Claims{
		Subject: "alice", Username: "alice@example.com", Groups: []string{"devs"}, Email: "alice@example.com",
		IdentityProvider: "dex", Audience: []string{drillCluster}, SessionID: s.id, Expiry: now.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// apiAnswer is an answer of the portal's JSON API.
type apiAnswer struct {
	status int
	body   map[string]any
	raw    string
}

func (a apiAnswer) String() string {
	return fmt.Sprintf("HTTP %d: %s", a.status, strings.TrimSpace(a.raw))
}

func (a apiAnswer) field(k string) string { s, _ := a.body[k].(string); return s }

func postPortal(t *testing.T, p *framework.Portcullis, path string, form url.Values) apiAnswer {
	t.Helper()
	hc := p.HTTPClient()
	hc.Timeout = 60 * time.Second
	defer hc.CloseIdleConnections()
	resp, err := hc.PostForm(p.URL+path, form)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := apiAnswer{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// reviewAt posts a TokenReview as kube-apiserver would (with a webhook
// client certificate) and returns whether it authenticated, or the HTTP
// status of an answer that is not a review.
func reviewAt(t *testing.T, pki *framework.PKI, p *framework.Portcullis, cluster, tok string) (bool, int) {
	t.Helper()
	client := pki.IssueClient("kube-apiserver-webhook-client")
	cert, err := client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CACertPEM())
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	defer hc.CloseIdleConnections()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok + `"}}`
	resp, err := hc.Post(p.URL+"/tokenreview/"+cluster, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("TokenReview at Portcullis: %v", err)
	}
	defer resp.Body.Close()
	var review struct {
		Status struct {
			Authenticated bool   `json:"authenticated"`
			Error         string `json:"error"`
		} `json:"status"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &review) != nil {
		return false, resp.StatusCode
	}
	return review.Status.Authenticated, resp.StatusCode
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, or skips the
// test (recorded in the end-of-run banner) where mounting is not permitted.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		framework.SkipMissing(t, "permission to mount a tmpfs", "run the e2e tests as root, or with CAP_SYS_ADMIN",
			fmt.Sprintf("the full and read-only file system drill did not run (mount: %v: %s)", err, strings.TrimSpace(string(out))))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillFileSystem writes a file in dir until the file system is full.
func fillFileSystem(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return path
		}
	}
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o remount,%s %s: %v: %s", mode, dir, err, out)
	}
}

// browserLogin logs alice in through the portal and Dex in a new browser
// and returns the page the portal ended on.
func browserLogin(t *testing.T, pki *framework.PKI, p *framework.Portcullis) *framework.Page {
	t.Helper()
	b, err := framework.NewBrowser(pki.CA.CertFile, p.CACertFile())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	page, err := b.DexLogin(ctx, nil, p.URL+"/login/dex", "alice@example.com", "alice-password")
	if err != nil {
		t.Fatalf("browser login: %v", err)
	}
	return page
}

// TestDrill_StateFileSystemFullOrReadOnly: the file system of the bolt state
// file fills up while Portcullis runs, and is read-only when it starts.
//
// bbolt writes copy-on-write into pages the file already has, so a full
// file system fails only the writes that need the file to grow: the drill
// logs people in until one login cannot be saved. That login gets a 503
// page saying so (not a 500, not a panic, not a session that was not kept);
// reads (token reviews, session lookups) keep working throughout; once
// there is room again logins work without a restart. A read-only file
// system at start is refused with a message that says what to do, and
// afterwards the file is a valid store holding the last refresh handed out.
func TestDrill_StateFileSystemFullOrReadOnly(t *testing.T) {
	t.Parallel()
	stateDir := mountTmpfs(t, 2<<20)
	pki := framework.NewPKI(t)
	port := framework.FreePort(t)
	dex := framework.StartDex(t, framework.DexOptions{PKI: pki, RedirectURIs: []string{fmt.Sprintf("https://127.0.0.1:%d/callback", port)}})
	secretFile := filepath.Join(t.TempDir(), "dex-client-secret")
	if err := os.WriteFile(secretFile, []byte(dex.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(stateDir, "state.db")
	cfg := drillConfig(port, stateFile, dex, secretFile, pki.ClientCA.CertFile)
	sess := seedDrillSession(t, t.TempDir(), cfg)
	p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: cfg, Port: port})

	refresh := sess.refresh
	rotate := func(t *testing.T) apiAnswer {
		t.Helper()
		a := postPortal(t, p, "/portal/api/refresh", url.Values{"refresh_token": {refresh}, "cluster": {drillCluster}})
		if a.status == http.StatusOK {
			refresh = a.field("refresh_token")
		}
		return a
	}
	readsWork := func(t *testing.T) {
		t.Helper()
		if ok, code := reviewAt(t, pki, p, drillCluster, sess.clusterToken); !ok {
			t.Errorf("a TokenReview of a valid token: authenticated=false (HTTP %d)", code)
		}
		if a := postPortal(t, p, "/portal/api/session", url.Values{"refresh_token": {refresh}}); a.status != http.StatusOK {
			t.Errorf("looking up the session: %v", a)
		}
	}
	if a := rotate(t); a.status != http.StatusOK {
		t.Fatalf("refresh before the drill: %v", a)
	}
	readsWork(t)

	t.Run("a full file system fails the logins it cannot save, clearly, and keeps reads working", func(t *testing.T) {
		filler := fillFileSystem(t, stateDir)
		var failed *framework.Page
		logins := 0
		for ; logins < 150 && failed == nil; logins++ {
			if page := browserLogin(t, pki, p); page.Status != http.StatusOK {
				failed = page
			}
		}
		if failed == nil {
			t.Fatalf("%d logins were all saved on a full file system", logins)
		}
		t.Logf("login %d could not be saved: HTTP %d", logins, failed.Status)
		if failed.Status != http.StatusServiceUnavailable || !strings.Contains(string(failed.Body), "could not be saved") {
			t.Errorf("a login that cannot be saved: HTTP %d %s; want a 503 page saying it could not be saved", failed.Status, truncateString(string(failed.Body), 400))
		}
		readsWork(t)
		// A refresh rewrites the session in place: it may fit, or fail with a
		// 503 that says to try again; never a 500.
		if a := rotate(t); a.status != http.StatusOK && (a.status != http.StatusServiceUnavailable || a.field("error") != "temporarily_unavailable") {
			t.Errorf("a refresh on a full file system: %v; want 200 or 503 temporarily_unavailable", a)
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		if page := browserLogin(t, pki, p); page.Status != http.StatusOK {
			t.Errorf("a login once there is room again (no restart): HTTP %d %s", page.Status, truncateString(string(page.Body), 400))
		}
		if a := rotate(t); a.status != http.StatusOK {
			t.Errorf("a refresh once there is room again: %v", a)
		}
	})

	t.Run("a read-only file system at start is refused with what to do", func(t *testing.T) {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping Portcullis: %v", err)
		}
		remount(t, stateDir, "ro")
		if err := p.Process.Restart(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Process.Exited():
		case <-time.After(60 * time.Second):
			t.Fatal("Portcullis is still running 60s after starting on a read-only state file")
		}
		if log := p.Process.LogTail(20); !strings.Contains(log, "read-only") || !strings.Contains(log, "store.path") {
			t.Errorf("Portcullis's refusal does not say the file system is read-only and what to do:\n%s", log)
		}
		remount(t, stateDir, "rw")
		p.Restart()
		if a := rotate(t); a.status != http.StatusOK {
			t.Errorf("a refresh after the restart on a writable file system: %v", a)
		}
		readsWork(t)
	})

	t.Run("the file is a valid store holding the last refresh", func(t *testing.T) {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping Portcullis: %v", err)
		}
		if strings.Contains(p.Process.Log(), "panic") {
			t.Errorf("Portcullis's log shows a panic")
		}
		st, err := bolt.Open(stateFile, bolt.Options{}) // validates the file (bbolt's consistency check)
		if err != nil {
			t.Fatalf("reopening the state file: %v", err)
		}
		defer st.Close()
		got, err := st.GetSession(context.Background(), sess.id)
		if err != nil {
			t.Fatalf("the session is gone: %v", err)
		}
		_, secret, _ := strings.Cut(refresh, ".")
		if h := sha256.Sum256([]byte(secret)); string(got.RefreshTokenHash) != string(h[:]) {
			t.Errorf("the stored session does not hold the last refresh token handed out")
		}
	})
}

// drillMetrics scrapes Portcullis's /metrics with a client certificate in
// system:monitoring (the group kube-apiserver's RBAC gives /metrics to);
// a server started without --client-ca-file sees an anonymous scraper.
func drillMetrics(t *testing.T, pki *framework.PKI, p *framework.Portcullis) map[string]float64 {
	t.Helper()
	kp := pki.IssueClient("drill-metrics", "system:monitoring")
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CACertPEM())
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// tcpConnsTo counts the TCP connections process pid holds open to a
// remote port on loopback: its socket file descriptors matched with the
// kernel's connection tables of its network namespace.
func tcpConnsTo(t testing.TB, pid, remotePort int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			// f[2] is the remote address:port in hex, f[9] the inode.
			_, port, _ := strings.Cut(f[2], ":")
			var p int
			if _, err := fmt.Sscanf(port, "%X", &p); err == nil && p == remotePort && inodes[f[9]] {
				n++
			}
		}
	}
	return n
}

// loadResult tallies the answers of a load generator.
type loadResult struct {
	mu      sync.Mutex
	ok      int
	byCode  map[int]int
	wrong   []string // answers that are neither 200 nor a 503 Status
	lastErr string
	cut     int // requests in flight when the upstream was killed, broken off
}

// addCut counts a request that was in flight at the instant its upstream
// was killed and broke off: the proxy had already passed the upstream's
// response headers on, so all it can do when the body stops is abort the
// stream, as kube-apiserver itself would.
func (r *loadResult) addCut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut++
}

func (r *loadResult) add(code int, body []byte, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byCode == nil {
		r.byCode = map[int]int{}
	}
	switch {
	case err != nil:
		r.byCode[-1]++
		r.wrong = append(r.wrong, "transport error: "+err.Error())
		return
	case code == http.StatusOK:
		r.ok++
	default:
		var st metav1.Status
		if json.Unmarshal(body, &st) != nil || st.Kind != "Status" || int(st.Code) != code || code != http.StatusServiceUnavailable {
			r.wrong = append(r.wrong, fmt.Sprintf("HTTP %d: %s", code, truncateString(string(body), 300)))
		} else {
			r.lastErr = st.Message
		}
	}
	r.byCode[code]++
}

func (r *loadResult) snapshot() (ok int, byCode map[int]int, wrong []string, lastErr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byCode = map[int]int{}
	for k, v := range r.byCode {
		byCode[k] = v
	}
	return r.ok, byCode, append([]string(nil), r.wrong...), r.lastErr
}

func (r *loadResult) cutCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cut
}

// inFlightAtKill is the grace given to requests started just before the
// upstream was killed: their connection may break mid-answer.
const inFlightAtKill = 100 * time.Millisecond

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// TestDrill_UpstreamDownUnderLoad kills the kube-apiserver of a proxied
// cluster (SIGKILL: connections drop mid-request) while HTTP clients and
// kubectl send requests through Portcullis, and watches are open. While it
// is down every answer is a 503 Status; open watches end instead of
// hanging; once it is back requests succeed again without restarting
// Portcullis; and afterwards Portcullis holds no more goroutines, nor
// connections to the upstream, than before.
func TestDrill_UpstreamDownUnderLoad(t *testing.T) {
	t.Parallel()
	s := startProxyStack(t, proxyStackOptions{clusters: []string{"c1"}})
	pid := s.portcullis.Process.Pid()
	upstream := s.c1
	tok := s.tokens["alice@c1"]
	const path = "/clusters/c1/api/v1/namespaces/default/configmaps?limit=5"

	newClient := func() *http.Client {
		hc := s.portcullis.HTTPClient()
		hc.Timeout = 30 * time.Second
		return hc
	}
	get := func(ctx context.Context, hc *http.Client, path string) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.portcullis.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	// load runs HTTP clients and kubectl until stop is closed, tallying
	// their answers in the results cur points to at the time.
	// killedAt is when the upstream was killed (zero before): a request
	// started before it, or within inFlightAtKill after, may break off.
	var killedAt atomic.Pointer[time.Time]
	cutAtKill := func(started time.Time) bool {
		k := killedAt.Load()
		return k != nil && started.Before(k.Add(inFlightAtKill)) && time.Since(*k) < 30*time.Second
	}
	load := func(stop <-chan struct{}, cur *atomic.Pointer[[2]*loadResult]) *sync.WaitGroup {
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := newClient()
				defer hc.CloseIdleConnections()
				for {
					select {
					case <-stop:
						return
					default:
					}
					started := time.Now()
					code, body, err := get(context.Background(), hc, path)
					if err != nil && cutAtKill(started) {
						cur.Load()[0].addCut()
						continue
					}
					cur.Load()[0].add(code, body, err)
				}
			}()
		}
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					started := time.Now()
					_, stderr, err := framework.Kubectl(t, s.kubeconfig["alice@c1"], "get", "configmaps", "--request-timeout=20s")
					kubectlRes := cur.Load()[1]
					switch {
					case err != nil && cutAtKill(started) && !strings.Contains(stderr, "ServiceUnavailable") && !strings.Contains(stderr, "503"):
						kubectlRes.addCut()
					case err == nil:
						kubectlRes.add(http.StatusOK, nil, nil)
					case strings.Contains(stderr, "ServiceUnavailable") || strings.Contains(stderr, "503"):
						st, _ := json.Marshal(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status"}, Code: 503, Message: strings.TrimSpace(stderr)})
						kubectlRes.add(http.StatusServiceUnavailable, st, nil)
					default:
						kubectlRes.add(0, []byte(stderr), errors.New(strings.TrimSpace(stderr)))
					}
				}
			}()
		}
		return &wg
	}
	settle := func() (goroutines float64, conns int) {
		// Idle keep-alive connections of finished clients are gone once the
		// clients close them; give the server a moment to notice.
		time.Sleep(2 * time.Second)
		return drillMetrics(t, s.pki, s.portcullis)["go_goroutines"], tcpConnsTo(t, pid, upstream.Port)
	}

	// Warm up: every pool and cache the load uses exists before the count.
	{
		stop := make(chan struct{})
		var res, kres loadResult
		var cur atomic.Pointer[[2]*loadResult]
		cur.Store(&[2]*loadResult{&res, &kres})
		wg := load(stop, &cur)
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()
		if ok, _, wrong, _ := res.snapshot(); ok == 0 || len(wrong) > 0 {
			t.Fatalf("warm-up: %d OK, wrong answers: %v", ok, wrong)
		}
	}
	g0, c0 := settle()
	t.Logf("before the drill: %v goroutines, %d connections to the upstream", g0, c0)

	// Watches open through the proxy when the upstream dies.
	type watchEnd struct {
		err error
		at  time.Time
	}
	watchEnded := make(chan watchEnd, 2)
	for range 2 {
		hc := newClient()
		hc.Timeout = 0
		req, _ := http.NewRequest(http.MethodGet, s.portcullis.URL+"/clusters/c1/api/v1/namespaces/default/configmaps?watch=1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("opening a watch: %v %v", err, resp)
		}
		go func() {
			_, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			hc.CloseIdleConnections()
			watchEnded <- watchEnd{err, time.Now()}
		}()
	}

	// One load for the whole drill, its answers tallied per phase.
	stop := make(chan struct{})
	var before, during, starting, after, kbefore, kduring, kstarting, kafter loadResult
	var cur atomic.Pointer[[2]*loadResult]
	cur.Store(&[2]*loadResult{&before, &kbefore})
	wg := load(stop, &cur)
	time.Sleep(2 * time.Second)

	cur.Store(&[2]*loadResult{&during, &kduring})
	killed := time.Now()
	killedAt.Store(&killed)
	upstream.Process.Kill()
	t.Logf("kube-apiserver of c1 killed")
	for range 2 {
		select {
		case e := <-watchEnded:
			t.Logf("a watch ended %v after the upstream died (%v)", e.at.Sub(killed).Round(time.Millisecond), e.err)
		case <-time.After(30 * time.Second):
			t.Errorf("a watch through the proxy is still open 30s after its upstream died")
		}
	}
	time.Sleep(5 * time.Second)

	cur.Store(&[2]*loadResult{&starting, &kstarting})
	if err := upstream.Process.Restart(); err != nil {
		t.Fatalf("restarting kube-apiserver: %v", err)
	}
	// kube-apiserver serves before it is ready (for a moment after it
	// starts it refuses the proxy's impersonation with a 403 of its own,
	// before its RBAC caches are filled): recovery is counted from its
	// readiness, and its answers until then are passed on as they are.
	admin := framework.HTTPClientFor(framework.CertPool(s.pki.CA))
	if err := upstream.Process.WaitUntil(context.Background(), 90*time.Second, "ready again", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, upstream.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+upstream.AdminToken)
		resp, err := admin.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	admin.CloseIdleConnections()
	hc := newClient()
	var recovered time.Duration
	if err := upstream.Process.WaitUntil(context.Background(), 90*time.Second, "served through Portcullis again", func(ctx context.Context) error {
		code, body, err := get(ctx, hc, path)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("HTTP %d %v: %s", code, err, truncateString(string(body), 200))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	hc.CloseIdleConnections()
	recovered = time.Since(killed)
	cur.Store(&[2]*loadResult{&after, &kafter})
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	for _, ph := range []struct {
		name    string
		r, k    *loadResult
		wantOK  bool
		want503 bool
	}{
		{"before the outage", &before, &kbefore, true, false},
		{"during the outage", &during, &kduring, false, true},
		{"after recovery", &after, &kafter, true, false},
	} {
		ok, codes, wrong, lastErr := ph.r.snapshot()
		kok, kcodes, kwrong, klast := ph.k.snapshot()
		t.Logf("%s: HTTP clients %v, kubectl %v; last 503 message: %q; kubectl said: %q", ph.name, codes, kcodes, lastErr, truncateString(klast, 200))
		if cut, kcut := ph.r.cutCount(), ph.k.cutCount(); cut+kcut > 0 {
			t.Logf("%s: %d HTTP and %d kubectl requests in flight at the kill broke off", ph.name, cut, kcut)
		}
		if ph.name == "after recovery" {
			// While kube-apiserver starts, before its RBAC caches are
			// filled, it answers impersonated requests itself (a 403 for
			// the proxy's service account): its own answers, passed on.
			_, scodes, swrong, _ := starting.snapshot()
			_, kscodes, _, _ := kstarting.snapshot()
			t.Logf("while kube-apiserver started: HTTP clients %v, kubectl %v", scodes, kscodes)
			for _, w := range swrong {
				if !strings.Contains(w, `"kind":"Status"`) {
					t.Errorf("while kube-apiserver started: an answer that is not a Status: %q", w)
				}
			}
		}
		if len(wrong) > 0 {
			t.Errorf("%s: %d answers are neither 200 nor a 503 Status, e.g. %q", ph.name, len(wrong), wrong[0])
		}
		if len(kwrong) > 0 {
			t.Errorf("%s: kubectl failed otherwise than with ServiceUnavailable, e.g. %q", ph.name, kwrong[0])
		}
		if ph.wantOK && (ok == 0 || kok == 0) {
			t.Errorf("%s: %d HTTP and %d kubectl successes", ph.name, ok, kok)
		}
		if ph.name == "after recovery" && (codes[http.StatusServiceUnavailable] > 0 || kcodes[http.StatusServiceUnavailable] > 0) {
			t.Errorf("%s: still 503s once the upstream served again", ph.name)
		}
		if ph.want503 && codes[http.StatusServiceUnavailable] == 0 {
			t.Errorf("%s: no 503 at all", ph.name)
		}
		if ph.want503 && lastErr != "" && !strings.Contains(strings.ToLower(lastErr), "unreachable") && !strings.Contains(strings.ToLower(lastErr), "c1") {
			t.Errorf("%s: the 503 does not say what is down: %q", ph.name, lastErr)
		}
	}
	t.Logf("the proxy served c1 again %v after its kube-apiserver was killed (5s down, then its start-up)", recovered.Round(100*time.Millisecond))

	// No leak: back to where it was before the drill.
	var g1 float64
	var c1 int
	deadline := time.Now().Add(60 * time.Second)
	for {
		g1, c1 = settle()
		if (g1 <= g0+10 && c1 <= c0+1) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after the drill: %v goroutines (before %v), %d connections to the upstream (before %d)", g1, g0, c1, c0)
	if g1 > g0+10 {
		t.Errorf("goroutines grew from %v to %v over the drill", g0, g1)
	}
	if c1 > c0+1 {
		t.Errorf("connections to the upstream grew from %d to %d over the drill", c0, c1)
	}
}

// wrongAnswers are what a client must never be told because the identity
// provider is down: that its token is bad, its session over, or a stack.
var wrongAnswers = []string{"invalid", "expired", "ended", "log in again", "Logged out", "logged out", "goroutine", "panic", ".go:"}

func saysNoWrongAnswer(t *testing.T, what, text string) {
	t.Helper()
	for _, w := range wrongAnswers {
		if strings.Contains(text, w) {
			t.Errorf("%s says %q while the identity provider is only down:\n%s", what, w, text)
		}
	}
}

// TestDrill_IdPDownDuringLoginAndRefresh stops Dex (its state kept in etcd,
// so it comes back as the same IdP) at three moments: when a session must
// be refreshed, when a login's code must be redeemed, and when Portcullis
// starts. Each time the client is told the identity provider cannot be
// reached and to try again — never that its token is invalid or its session
// over — no session is lost, and once Dex is back everything works again
// without restarting Portcullis.
func TestDrill_IdPDownDuringLoginAndRefresh(t *testing.T) {
	t.Parallel()
	s := &loginStack{pki: framework.NewPKI(t), dir: framework.WorkDir(t)}
	port := framework.FreePort(t)
	issuer := fmt.Sprintf("https://127.0.0.1:%d", port)
	s.dex = framework.StartDex(t, framework.DexOptions{PKI: s.pki, RedirectURIs: []string{issuer + "/callback"}, Etcd: framework.StartEtcd(t)})
	secretFile := filepath.Join(s.dir, "dex-client-secret")
	if err := os.WriteFile(secretFile, []byte(s.dex.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	s.portcullis = framework.StartPortcullis(t, framework.PortcullisOptions{
		ConfigYAML: loginConfig(port, s.dir, s.dex, secretFile, s.pki.ClientCA.CertFile),
		Port:       port,
	})
	s.browserLog = filepath.Join(s.dir, "browser.log")
	cache := s.newCacheDir(t)
	target := []string{"--server", issuer, "--cluster", loginCluster, "--certificate-authority", s.portcullis.CACertFile()}
	if out, err := s.cli(t, cache, nil, append([]string{"login"}, target...)...); err != nil {
		t.Fatalf("portcullis login: %v\n%s", err, out)
	}
	execCredential := func() (string, error) {
		return s.cli(t, cache, nil, append([]string{"exec-credential"}, target...)...)
	}
	cachedRefresh := func() string {
		files, _ := filepath.Glob(filepath.Join(cache, "portcullis", "*.json"))
		if len(files) != 1 {
			t.Fatalf("cache files: %v", files)
		}
		b, _ := os.ReadFile(files[0])
		var entry struct {
			RefreshToken string `json:"refresh_token"`
		}
		_ = json.Unmarshal(b, &entry)
		return entry.RefreshToken
	}

	t.Run("a refresh while the IdP is down says so and keeps the session", func(t *testing.T) {
		logins := s.browserLogins(t)
		if d := time.Until(cachedExpiry(t, cache)); d > 0 {
			time.Sleep(d + 100*time.Millisecond) // the token's own lifetime: nothing to poll
		}
		if err := s.dex.Process.Stop(); err != nil {
			t.Logf("stopping dex: %v", err)
		}
		out, err := execCredential()
		if err == nil {
			t.Fatalf("exec-credential succeeded with an expired token and the IdP down:\n%s", out)
		}
		if !strings.Contains(out, "identity provider") || !strings.Contains(out, "try again") {
			t.Errorf("exec-credential while the IdP is down does not say the IdP cannot be reached and to try again:\n%s", out)
		}
		saysNoWrongAnswer(t, "exec-credential", out)
		a := postPortal(t, s.portcullis, "/portal/api/refresh", url.Values{"refresh_token": {cachedRefresh()}, "cluster": {loginCluster}})
		if a.status != http.StatusServiceUnavailable || a.field("error") != "temporarily_unavailable" {
			t.Errorf("the portal's refresh while the IdP is down: %v; want 503 temporarily_unavailable", a)
		}
		saysNoWrongAnswer(t, "the portal's refresh", a.raw)

		s.dex.Restart()
		if out, err := execCredential(); err != nil || !strings.Contains(out, `"token"`) {
			t.Errorf("exec-credential once the IdP is back: %v\n%s", err, out)
		}
		if got := s.browserLogins(t); got != logins {
			t.Errorf("the session was lost: %d new logins", got-logins)
		}
	})

	t.Run("a login whose code is redeemed while the IdP is down says so, and the next login works", func(t *testing.T) {
		b, err := framework.NewBrowser(s.pki.CA.CertFile, s.portcullis.CACertFile())
		if err != nil {
			t.Fatal(err)
		}
		var callback *url.URL
		b.Client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if req.URL.Path == "/callback" && strings.HasSuffix(issuer, req.URL.Host) {
				callback = req.URL
				return http.ErrUseLastResponse
			}
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := b.DexLogin(ctx, nil, issuer+"/login/dex", "alice@example.com", "alice-password"); err != nil {
			t.Fatal(err)
		}
		if callback == nil {
			t.Fatal("Dex did not redirect to Portcullis's callback")
		}
		b.Client.CheckRedirect = nil
		if err := s.dex.Process.Stop(); err != nil {
			t.Logf("stopping dex: %v", err)
		}
		page, err := b.Get(ctx, callback.String())
		if err != nil {
			t.Fatal(err)
		}
		body := string(page.Body)
		if (page.Status != http.StatusBadGateway && page.Status != http.StatusServiceUnavailable) ||
			!strings.Contains(body, "cannot be reached") || !strings.Contains(body, "Try again") {
			t.Errorf("the callback while the IdP is down: HTTP %d %s; want a 502/503 page saying the IdP cannot be reached", page.Status, truncateString(body, 600))
		}
		saysNoWrongAnswer(t, "the callback page", body)
		s.dex.Restart()
		if page := browserLogin(t, s.pki, s.portcullis); page.Status != http.StatusOK {
			t.Errorf("a login once the IdP is back: HTTP %d %s", page.Status, truncateString(string(page.Body), 600))
		}
	})

	t.Run("Portcullis started while the IdP is down says so at login and recovers without a restart", func(t *testing.T) {
		if err := s.dex.Process.Stop(); err != nil {
			t.Logf("stopping dex: %v", err)
		}
		s.portcullis.Restart()
		hc := s.portcullis.HTTPClient()
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		defer hc.CloseIdleConnections()
		loginPage := func() (int, string, string) {
			resp, err := hc.Get(issuer + "/login/dex")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, resp.Header.Get("Location"), string(b)
		}
		code, _, body := loginPage()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be reached") {
			t.Errorf("the login page while the IdP has never been reached: HTTP %d %s; want a 503 saying the IdP cannot be reached", code, truncateString(body, 600))
		}
		saysNoWrongAnswer(t, "the login page", body)
		// A session made before keeps its cluster tokens coming from the
		// cache, and its refresh is a clear "try again".
		if out, err := execCredential(); err != nil {
			saysNoWrongAnswer(t, "exec-credential", out)
		}

		s.dex.Restart()
		back := time.Now()
		var last string
		if err := s.portcullis.Process.WaitUntil(context.Background(), 90*time.Second, "sending logins to the IdP again", func(context.Context) error {
			code, loc, body := loginPage()
			if code == http.StatusFound && strings.HasPrefix(loc, s.dex.IssuerURL) {
				return nil
			}
			last = fmt.Sprintf("HTTP %d %s", code, truncateString(body, 200))
			return errors.New(last)
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("logins went to the IdP again %v after it came back", time.Since(back).Round(100*time.Millisecond))
		// The ID-token verifier (k8s.io/apiserver's OIDC authenticator) loads
		// the IdP's keys on its own schedule: until then a login that got
		// through Dex is a clear 503 "try again", and then it works.
		for {
			page := browserLogin(t, s.pki, s.portcullis)
			if page.Status == http.StatusOK {
				break
			}
			body := string(page.Body)
			if page.Status != http.StatusServiceUnavailable || !strings.Contains(body, "Try again") {
				t.Fatalf("a login once the IdP is back: HTTP %d %s", page.Status, truncateString(body, 600))
			}
			saysNoWrongAnswer(t, "a login while the IdP's keys load", body)
			if time.Since(back) > 90*time.Second {
				t.Fatalf("logins still fail 90s after the IdP came back: HTTP %d %s", page.Status, truncateString(body, 600))
			}
			time.Sleep(time.Second)
		}
		t.Logf("a login completed again %v after the IdP came back", time.Since(back).Round(100*time.Millisecond))
	})
}

// auditSink is an audit webhook backend on a fixed port that can be
// stopped (its port then refuses connections) and started again.
type auditSink struct {
	t    *testing.T
	addr string
	tls  *tls.Config

	mu     sync.Mutex
	srv    *http.Server
	events map[string]int // audit ID → ResponseComplete events received
}

func newAuditSink(t *testing.T, pki *framework.PKI) *auditSink {
	kp := pki.IssueServing("127.0.0.1")
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	s := &auditSink{t: t, addr: fmt.Sprintf("127.0.0.1:%d", framework.FreePort(t)), tls: &tls.Config{Certificates: []tls.Certificate{cert}}, events: map[string]int{}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *auditSink) url() string { return "https://" + s.addr + "/audit" }

func (s *auditSink) start() {
	ln, err := tls.Listen("tcp", s.addr, s.tls)
	if err != nil {
		s.t.Fatalf("audit sink: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var list struct {
			Items []auditEvent `json:"items"`
		}
		if err := json.NewDecoder(req.Body).Decode(&list); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, ev := range list.Items {
			if ev.Stage == "ResponseComplete" {
				s.events[ev.AuditID]++
			}
		}
		s.mu.Unlock()
	})}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (s *auditSink) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (s *auditSink) received(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[id]
}

// reviewWithAuditID posts a TokenReview as kube-apiserver would and returns
// the HTTP status and the request's audit ID.
func reviewWithAuditID(t *testing.T, hc *http.Client, p *framework.Portcullis, tok string) (int, string) {
	t.Helper()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok + `"}}`
	resp, err := hc.Post(p.URL+"/tokenreview/"+drillCluster, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("TokenReview: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Audit-Id")
}

// TestDrill_AuditWebhookDown stops the audit webhook's backend while
// Portcullis serves TokenReviews, in each mode of k8s.io/apiserver's audit
// webhook backend (docs/operations.md, "Audit"):
//
//   - blocking: requests are still served; each event that cannot be
//     delivered is written to Portcullis's log ("Impacted events", with its
//     audit ID) and counted in apiserver_audit_error_total: none is lost
//     silently. Events of requests after the backend is back are delivered.
//   - blocking-strict: a request whose RequestReceived event cannot be
//     delivered is refused (500), so nothing is served unaudited.
//   - batch: requests are served; events are delivered asynchronously,
//     and those that cannot be are logged the same way.
func TestDrill_AuditWebhookDown(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	client := pki.IssueClient("kube-apiserver-webhook-client")
	cert, err := client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"blocking", "blocking-strict", "batch"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			port := framework.FreePort(t)
			cfg := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
clusters:
- name: %s
  access: {allUsers: true}
webhook:
  clientCAFile: %s
`, port, filepath.Join(dir, "state.db"), drillCluster, pki.ClientCA.CertFile)
			sess := seedDrillSession(t, dir, cfg)
			sink := newAuditSink(t, pki)
			policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
			if mode != "blocking-strict" {
				policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
			}
			policyFile := filepath.Join(dir, "audit-policy.yaml")
			webhookFile := filepath.Join(dir, "audit-webhook.kubeconfig")
			must(t, os.WriteFile(policyFile, []byte(policy), 0o600))
			must(t, os.WriteFile(webhookFile, []byte(framework.WebhookKubeconfig(sink.url(), pki.CA.CertPEM, nil)), 0o600))
			// Each event is tried 5 times, with backoff from the initial one
			// (x1.5 each time): 200ms keeps a blocked request to about 2s;
			// in batch mode 2s makes the tries span about 16s.
			backoff := "200ms"
			if mode == "batch" {
				backoff = "2s"
			}
			p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: cfg, Port: port, Name: "portcullis-" + mode, ExtraArgs: []string{
				"--audit-policy-file=" + policyFile,
				"--audit-webhook-config-file=" + webhookFile,
				"--audit-webhook-mode=" + mode,
				"--audit-webhook-initial-backoff=" + backoff,
				"--audit-webhook-batch-max-wait=200ms",
				// The metrics scraper (drillMetrics) has a client certificate.
				"--client-ca-file=" + pki.ClientCA.CertFile,
			}})
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(p.CACertPEM())
			hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
			defer hc.CloseIdleConnections()
			reviews := func(n int) (codes map[int]int, ids []string) {
				codes = map[int]int{}
				for range n {
					code, id := reviewWithAuditID(t, hc, p, sess.clusterToken)
					codes[code]++
					if id == "" {
						t.Fatalf("HTTP %d without an Audit-Id", code)
					}
					ids = append(ids, id)
				}
				return codes, ids
			}
			delivered := func(ids []string) int {
				n := 0
				for _, id := range ids {
					if sink.received(id) > 0 {
						n++
					}
				}
				return n
			}
			waitDelivered := func(ids []string) {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second)
				for delivered(ids) < len(ids) && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				if n := delivered(ids); n != len(ids) {
					t.Errorf("%d of %d events delivered while the backend is up", n, len(ids))
				}
			}

			start0 := time.Now()
			codes, up := reviews(10)
			if codes[http.StatusOK] != 10 {
				t.Fatalf("before the outage: %v", codes)
			}
			waitDelivered(up)
			t.Logf("%s, backend up: 10 answers and their events delivered in %v", mode, time.Since(start0).Round(time.Millisecond))
			errorsBefore := drillMetrics(t, pki, p)[`apiserver_audit_error_total{plugin="webhook"}`]

			sink.stop()
			start := time.Now()
			codes, down := reviews(10)
			t.Logf("%s, backend down: answers %v in %v", mode, codes, time.Since(start).Round(time.Millisecond))
			switch mode {
			case "blocking-strict":
				if codes[http.StatusInternalServerError] != 10 {
					t.Errorf("blocking-strict served requests it could not audit: %v", codes)
				}
			default:
				if codes[http.StatusOK] != 10 {
					t.Errorf("%s: requests were refused because the audit backend is down: %v", mode, codes)
				}
			}
			if mode == "batch" {
				// An outage shorter than the tries: every event arrives late.
				time.Sleep(3 * time.Second)
				sink.start()
				waitDelivered(down)
				t.Logf("batch: %d of %d events of a 3-second outage delivered late", delivered(down), len(down))
				sink.stop()
				codes, down = reviews(10)
				if codes[http.StatusOK] != 10 {
					t.Errorf("batch: requests were refused because the audit backend is down: %v", codes)
				}
				// This outage outlasts the tries (about 16s with a 2s backoff).
			}
			// Every event of the outage is delivered or logged with its ID.
			var missing []string
			deadline := time.Now().Add(30 * time.Second)
			for {
				missing = missing[:0]
				log := p.Process.Log()
				for _, id := range down {
					if sink.received(id) == 0 && !strings.Contains(log, id) {
						missing = append(missing, id)
					}
				}
				if len(missing) == 0 || time.Now().After(deadline.Add(30*time.Second)) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if len(missing) > 0 {
				t.Errorf("%s: %d events of the outage were neither delivered nor logged (silently dropped), e.g. %s", mode, len(missing), missing[0])
			}
			if !strings.Contains(p.Process.Log(), "Error in audit plugin 'webhook") {
				t.Errorf("%s: nothing in Portcullis's log says the audit webhook failed", mode)
			}

			sink.start()
			// Scraped once the backend is back: in blocking-strict mode the
			// scrape is refused too while it is down.
			if got := drillMetrics(t, pki, p)[`apiserver_audit_error_total{plugin="webhook"}`]; got <= errorsBefore {
				t.Errorf("%s: apiserver_audit_error_total{plugin=\"webhook\"} did not grow (%v → %v)", mode, errorsBefore, got)
			}
			start = time.Now()
			codes, after := reviews(10)
			if codes[http.StatusOK] != 10 {
				t.Errorf("once the backend is back: %v", codes)
			}
			waitDelivered(after)
			t.Logf("%s, backend back: 10 answers and their events delivered in %v", mode, time.Since(start).Round(time.Millisecond))
			t.Logf("%s: %d of %d events of the (last) outage delivered late, the rest logged", mode, delivered(down), len(down))
		})
	}
}

// quantile q (0 < q ≤ 1) of latencies, nearest rank.
func quantile(d []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(i, 0)]
}

// TestDrill_SlowClientsDoNotDelayOthers holds 1,000 idle TLS connections
// and 100 slow-header (slowloris) clients against Portcullis, and measures
// the p99 latency of another client's TokenReviews, each on a new TLS
// connection, before, while and after they are held. The held connections
// must not delay it, and the server must drop them itself: k8s.io/apiserver
// serves with ReadHeaderTimeout 32s (a request's headers, and a new
// connection's first request, must arrive within it) and IdleTimeout 90s.
func TestDrill_SlowClientsDoNotDelayOthers(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	dir := t.TempDir()
	port := framework.FreePort(t)
	cfg := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
clusters:
- name: %s
  access: {allUsers: true}
webhook:
  clientCAFile: %s
`, port, filepath.Join(dir, "state.db"), drillCluster, pki.ClientCA.CertFile)
	sess := seedDrillSession(t, dir, cfg)
	p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: cfg, Port: port})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CACertPEM())
	kp := pki.IssueClient("kube-apiserver-webhook-client")
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	// A new connection per request: the held connections must not slow
	// down accepting and handshaking either.
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	measure := func(what string) time.Duration {
		var lat []time.Duration
		for range 100 {
			start := time.Now()
			code, _ := reviewWithAuditID(t, hc, p, sess.clusterToken)
			lat = append(lat, time.Since(start))
			if code != http.StatusOK {
				t.Fatalf("%s: TokenReview answered %d", what, code)
			}
		}
		q := quantile(lat, 0.99)
		t.Logf("%s: p99 %v (median %v) over %d TokenReviews on new connections", what, q.Round(time.Millisecond), quantile(lat, 0.5).Round(time.Millisecond), len(lat))
		return q
	}
	before := measure("before")

	// The slow clients, each watched for when the server drops it.
	type held struct {
		conn   *tls.Conn
		opened time.Time
		closed chan time.Duration
	}
	var conns []*held
	watch := func(c *tls.Conn) *held {
		h := &held{conn: c, opened: time.Now(), closed: make(chan time.Duration, 1)}
		go func() {
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					h.closed <- time.Since(h.opened)
					return
				}
			}
		}()
		conns = append(conns, h)
		return h
	}
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatalf("opening a connection (%d open): %v", len(conns), err)
		}
		return c
	}
	t.Cleanup(func() {
		for _, h := range conns {
			_ = h.conn.Close()
		}
	})
	for range 1000 {
		watch(dial()) // handshaken, then silent
	}
	stopTrickle := make(chan struct{})
	defer close(stopTrickle)
	for i := range 100 {
		c := dial()
		if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
			t.Fatal(err)
		}
		h := watch(c)
		go func() { // a header line every second, never the end of the headers
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for j := 0; ; j++ {
				select {
				case <-stopTrickle:
					return
				case <-h.closed:
					h.closed <- time.Since(h.opened) // put it back for the count below
					return
				case <-tick.C:
					if _, err := fmt.Fprintf(c, "X-Slow-%d-%d: x\r\n", i, j); err != nil {
						return
					}
				}
			}
		}()
	}
	heldAt := time.Now()
	during := measure("1,000 idle TLS connections and 100 slowloris clients held")
	after := time.Duration(0)

	// The server drops them all, by its read-header timeout (32s).
	var lifetimes []time.Duration
	for _, h := range conns {
		select {
		case d := <-h.closed:
			lifetimes = append(lifetimes, d)
		case <-time.After(time.Until(heldAt.Add(60 * time.Second))):
		}
	}
	if len(lifetimes) != len(conns) {
		t.Errorf("%d of %d slow connections are still open 60s after they were opened: the server does not drop them", len(conns)-len(lifetimes), len(conns))
	} else {
		slices.Sort(lifetimes)
		t.Logf("the server dropped every slow connection after %v to %v", lifetimes[0].Round(100*time.Millisecond), lifetimes[len(lifetimes)-1].Round(100*time.Millisecond))
		if lifetimes[0] < 25*time.Second {
			t.Errorf("a slow connection was dropped after only %v", lifetimes[0])
		}
	}
	after = measure("after")
	baseline := max(before, after)
	if during > 4*baseline+300*time.Millisecond {
		t.Errorf("the held connections delayed another client: p99 %v while held, %v before and %v after", during, before, after)
	}
}

// TestDrill_UpstreamHangs freezes the kube-apiserver of a proxied cluster
// (SIGSTOP: its connections stay open, nothing answers) under a request
// through Portcullis, then thaws it. The client gets a Status within a
// bounded time, not a hang, and requests succeed again once it answers.
func TestDrill_UpstreamHangs(t *testing.T) {
	t.Parallel()
	s := startProxyStack(t, proxyStackOptions{clusters: []string{"c1"}})
	tok := s.tokens["alice@c1"]
	hc := s.portcullis.HTTPClient()
	hc.Timeout = 5 * time.Minute
	defer hc.CloseIdleConnections()
	get := func() (int, []byte, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, s.portcullis.URL+"/clusters/c1/api/v1/namespaces/default/configmaps", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET through Portcullis: %v (after %v)", err, time.Since(start))
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, time.Since(start)
	}
	if code, body, _ := get(); code != http.StatusOK {
		t.Fatalf("before: HTTP %d %s", code, body)
	}
	pgid := s.c1.Process.Pid()
	must(t, syscall.Kill(-pgid, syscall.SIGSTOP))
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(-pgid, syscall.SIGCONT)
		}
	}
	defer thaw()
	code, body, took := get()
	t.Logf("while the upstream is frozen: HTTP %d after %v: %s", code, took.Round(100*time.Millisecond), truncateString(string(body), 300))
	var st metav1.Status
	if code == http.StatusOK || json.Unmarshal(body, &st) != nil || st.Kind != "Status" || int(st.Code) != code {
		t.Errorf("a request to a frozen upstream: HTTP %d %s; want a Status", code, truncateString(string(body), 300))
	}
	if took > 90*time.Second {
		t.Errorf("a request to a frozen upstream took %v", took)
	}
	thaw()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body, took := get()
		if code == http.StatusOK {
			t.Logf("served again %v after the upstream was thawed", took.Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not served 60s after the upstream was thawed: HTTP %d %s", code, truncateString(string(body), 300))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
