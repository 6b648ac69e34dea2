package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/store"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is a portal + fake IdP and the CLI's dependencies pointed at them.
type harness struct {
	env      *portaltest.Env
	cacheDir string
	env2     map[string]string
	// clk is the CLI's clock: the time the harness was made, until a
	// test moves it.
	clk *testingclock.FakeClock
	// logins counts browser openings (each is one login).
	logins atomic.Int64
	// browserFails makes the browser refuse to open.
	browserFails atomic.Bool
}

func newHarness(t *testing.T, opts portaltest.Options) *harness {
	h := &harness{clk: testingclock.NewFakeClock(time.Now()), env: portaltest.New(t, opts), cacheDir: filepath.Join(t.TempDir(), "cache"), env2: map[string]string{}}
	h.env2["PORTCULLIS_CACHE_DIR"] = h.cacheDir
	// Kubeconfig files are chosen as kubectl does, from the process's
	// $KUBECONFIG: not the developer's.
	t.Setenv("KUBECONFIG", "")
	return h
}

// tokenDir is where the cache files are: portcullis's own subdirectory.
func (h *harness) tokenDir() string { return filepath.Join(h.cacheDir, cacheSubdir) }

func (h *harness) deps(t *testing.T) (*Deps, *syncBuffer, *syncBuffer) {
	out, errb := &syncBuffer{}, &syncBuffer{}
	home := t.TempDir()
	d := &Deps{
		Stdout: out, Stderr: errb,
		Getenv:    func(k string) string { return h.env2[k] },
		Clock:     h.clk,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.env.Pool()}},
		OpenBrowser: func(u string) error {
			if h.browserFails.Load() {
				return fmt.Errorf("no browser here")
			}
			h.logins.Add(1)
			go h.browse(t, u)
			return nil
		},
		StdinIsTerminal: func() bool { return false },
		UserCacheDir:    func() (string, error) { return h.cacheDir, nil },
		Executable:      func() (string, error) { return "/usr/local/bin/portcullis", nil },
		UserHomeDir:     func() (string, error) { return home, nil },
	}
	return d, out, errb
}

// browse plays the person's browser: the portal, the IdP, back to the
// portal, then the CLI's loopback listener.
func (h *harness) browse(t *testing.T, u string) {
	resp, err := h.env.Browser().Get(u)
	if err != nil {
		t.Errorf("browser: %v", err)
		return
	}
	resp.Body.Close()
}

func (h *harness) run(t *testing.T, d *Deps, args ...string) error {
	t.Helper()
	cmd := NewRootCommand(d)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return cmd.ExecuteContext(ctx)
}

type execCredential struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Status     struct {
		Token               string    `json:"token"`
		ExpirationTimestamp time.Time `json:"expirationTimestamp"`
	} `json:"status"`
}

func execInfo(interactive bool) string {
	return fmt.Sprintf(`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":%v}}`, interactive)
}

func (h *harness) execCredential(t *testing.T, interactive bool) (execCredential, string, error) {
	t.Helper()
	d, out, errb := h.deps(t)
	h.env2["KUBERNETES_EXEC_INFO"] = execInfo(interactive)
	defer delete(h.env2, "KUBERNETES_EXEC_INFO")
	err := h.run(t, d, "exec-credential", "--server", h.env.URL, "--cluster", "c1")
	var ec execCredential
	if err == nil {
		if jerr := json.Unmarshal([]byte(out.String()), &ec); jerr != nil {
			t.Fatalf("exec-credential printed %q: %v", out.String(), jerr)
		}
	}
	return ec, errb.String(), err
}

func TestExecCredential_NonInteractiveNeverLogsInAndSaysWhatToRun(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	_, _, err := h.execCredential(t, false)
	if err == nil {
		t.Fatal("exec-credential without a session succeeded non-interactively")
	}
	want := "portcullis login --server=" + h.env.URL + " --cluster=c1"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not running interactively") {
		t.Errorf("error %q does not say to run %q", err, want)
	}
	if n := h.logins.Load(); n != 0 {
		t.Errorf("%d logins started", n)
	}
}

func TestExecCredential_LogsInOnceThenCachesAndRefreshesSilently(t *testing.T) {
	h := newHarness(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.Clusters[0].TokenLifetime = nil
	}})
	ec, _, err := h.execCredential(t, true)
	if err != nil {
		t.Fatal(err)
	}
	if ec.APIVersion != "client.authentication.k8s.io/v1" || ec.Kind != "ExecCredential" || ec.Status.Token == "" || ec.Status.ExpirationTimestamp.IsZero() {
		t.Fatalf("exec credential = %+v", ec)
	}
	claims, err := h.env.Verifier.Verify(context.Background(), ec.Status.Token, []string{"c1"})
	if err != nil || claims.Username != "alice@example.com" {
		t.Fatalf("token: %v %+v", err, claims)
	}
	// Files: dir 0700, entry 0600.
	if fi, err := os.Stat(h.tokenDir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache dir: %v %v", fi.Mode(), err)
	}
	matches, _ := filepath.Glob(filepath.Join(h.tokenDir(), "*.json"))
	if len(matches) != 1 {
		t.Fatalf("cache files: %v", matches)
	}
	if fi, _ := os.Stat(matches[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v", fi.Mode())
	}

	// Again: from the cache, no login, no refresh.
	refreshes := h.env.IdP.RefreshRequests.Load()
	ec2, _, err := h.execCredential(t, false)
	if err != nil || ec2.Status.Token != ec.Status.Token {
		t.Fatalf("second call: %v (same token: %v)", err, ec2.Status.Token == ec.Status.Token)
	}
	if h.env.IdP.RefreshRequests.Load() != refreshes || h.logins.Load() != 1 {
		t.Errorf("a cached token caused a refresh or a login")
	}

	// Less than a minute left: refreshed silently, even non-interactively.
	later := ec.Status.ExpirationTimestamp.Add(-30 * time.Second)
	h.clk.SetTime(later)
	ec3, _, err := h.execCredential(t, false)
	if err != nil {
		t.Fatal(err)
	}
	if ec3.Status.Token == ec.Status.Token || h.logins.Load() != 1 || h.env.IdP.RefreshRequests.Load() != refreshes+1 {
		t.Errorf("no silent refresh: new token %v, logins %d, IdP refreshes %d", ec3.Status.Token != ec.Status.Token, h.logins.Load(), h.env.IdP.RefreshRequests.Load()-refreshes)
	}
}

func TestExecCredential_ConcurrentProcessesLogInOnce(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	var wg sync.WaitGroup
	tokens := make([]string, 10)
	errs := make([]error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, out, _ := h.deps(t)
			d.Getenv = func(k string) string {
				if k == "KUBERNETES_EXEC_INFO" {
					return execInfo(true)
				}
				return h.env2[k]
			}
			cmd := NewRootCommand(d)
			cmd.SetArgs([]string{"exec-credential", "--server", h.env.URL, "--cluster", "c1", "--cache-dir", h.cacheDir})
			errs[i] = cmd.Execute()
			var ec execCredential
			_ = json.Unmarshal([]byte(out.String()), &ec)
			tokens[i] = ec.Status.Token
		}()
	}
	wg.Wait()
	for i := range 10 {
		if errs[i] != nil || tokens[i] == "" || tokens[i] != tokens[0] {
			t.Errorf("process %d: %v (same token: %v)", i, errs[i], tokens[i] == tokens[0])
		}
	}
	if n := h.logins.Load(); n != 1 {
		t.Errorf("%d logins for 10 concurrent processes, want 1", n)
	}
}

func TestLoginWhoamiLogout(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	d, out, _ := h.deps(t)
	if err := h.run(t, d, "login", "--server", h.env.URL); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Logged in to "+h.env.URL+" as alice@example.com") || !strings.Contains(out.String(), "Clusters you may use: c1") {
		t.Errorf("login output: %s", out)
	}
	d, out, _ = h.deps(t)
	if err := h.run(t, d, "whoami", "--server", h.env.URL); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice@example.com", "devs", "session active", "Token for c1:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("whoami lacks %q:\n%s", want, out)
		}
	}
	var entry cacheEntry
	matches, _ := filepath.Glob(filepath.Join(h.tokenDir(), "*.json"))
	b, _ := os.ReadFile(matches[0])
	_ = json.Unmarshal(b, &entry)
	tok := entry.Tokens["c1"].Token

	d, out, _ = h.deps(t)
	if err := h.run(t, d, "logout", "--server", h.env.URL); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Logged out") {
		t.Errorf("logout output: %s", out)
	}
	if _, err := h.env.Verifier.Verify(context.Background(), tok, []string{"c1"}); err == nil {
		t.Errorf("the token still verifies after logout")
	}
	if m, _ := filepath.Glob(filepath.Join(h.tokenDir(), "*.json")); len(m) != 0 {
		t.Errorf("cache left after logout: %v", m)
	}
	_, _, err := h.execCredential(t, false)
	if err == nil || !strings.Contains(err.Error(), "portcullis login") {
		t.Errorf("exec-credential after logout: %v", err)
	}
}

func TestLogin_PrintsTheURLWhenNoBrowserOpens(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	h.browserFails.Store(true)
	d, _, errb := h.deps(t)
	done := make(chan error, 1)
	go func() { done <- h.run(t, d, "login", "--server", h.env.URL, "--cluster", "c1") }()
	re := regexp.MustCompile(`https://\S+/login\?\S+`)
	deadline := time.Now().Add(10 * time.Second)
	var u string
	for u == "" && time.Now().Before(deadline) {
		u = re.FindString(errb.String())
		time.Sleep(20 * time.Millisecond)
	}
	if u == "" || !strings.Contains(errb.String(), "Could not open a browser") {
		t.Fatalf("no URL printed: %s", errb)
	}
	h.browse(t, u)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLogin_DeviceFlow(t *testing.T) {
	h := newHarness(t, portaltest.Options{DeviceInterval: time.Second})
	d, out, errb := h.deps(t)
	done := make(chan error, 1)
	go func() { done <- h.run(t, d, "login", "--server", h.env.URL, "--cluster", "c1", "--device") }()
	re := regexp.MustCompile(`https://\S+/device\?user_code=\S+`)
	deadline := time.Now().Add(10 * time.Second)
	var u string
	for u == "" && time.Now().Before(deadline) {
		u = strings.TrimSuffix(re.FindString(errb.String()), ")")
		time.Sleep(20 * time.Millisecond)
	}
	if u == "" {
		t.Fatalf("no device URL printed: %s", errb)
	}
	// The person, on another device.
	b := h.env.Browser()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no form: %s", page)
	}
	code, _ := url.Parse(u)
	resp, err = b.PostForm(h.env.URL+"/device", url.Values{"csrf": {string(m[1])}, "user_code": {code.Query().Get("user_code")}, "idp": {"fake"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("device login: %s", resp.Status)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "as alice@example.com") {
		t.Errorf("output: %s", out)
	}
}

func TestErrors_AreClear(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	t.Run("an unreachable server is named with what to check", func(t *testing.T) {
		d, _, _ := h.deps(t)
		d.Transport = nil
		err := h.run(t, d, "login", "--server", "https://127.0.0.1:1", "--no-browser")
		if err == nil || !strings.Contains(err.Error(), "cannot reach Portcullis at https://127.0.0.1:1") {
			t.Errorf("error: %v", err)
		}
	})
	t.Run("an untrusted certificate asks for --certificate-authority", func(t *testing.T) {
		d, _, _ := h.deps(t)
		d.Transport = nil
		err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c1", "--kubeconfig", filepath.Join(t.TempDir(), "kc"))
		if err == nil || !strings.Contains(err.Error(), "certificate mismatch") || !strings.Contains(err.Error(), "--certificate-authority") {
			t.Errorf("error: %v", err)
		}
	})
	t.Run("a policy denial names the cluster", func(t *testing.T) {
		d, _, _ := h.deps(t)
		d.Getenv = func(k string) string {
			if k == "KUBERNETES_EXEC_INFO" {
				return execInfo(true)
			}
			return h.env2[k]
		}
		err := h.run(t, d, "exec-credential", "--server", h.env.URL, "--cluster", "c2")
		if err == nil || !strings.Contains(err.Error(), "denied") || !strings.Contains(err.Error(), "c2") {
			t.Errorf("error: %v", err)
		}
	})
	t.Run("an ended session asks for a new login", func(t *testing.T) {
		d, _, _ := h.deps(t)
		if err := h.run(t, d, "login", "--server", h.env.URL, "--cluster", "c1"); err != nil {
			t.Fatal(err)
		}
		for _, s := range mustSessions(t, h) {
			_ = h.env.Sessions.End(context.Background(), s, "test", "admin")
		}
		later := time.Now().Add(time.Hour)
		h.clk.SetTime(later)
		defer h.clk.SetTime(time.Now())
		_, _, err := h.execCredential(t, false)
		if err == nil || !strings.Contains(err.Error(), "session at "+h.env.URL+" has ended") || !strings.Contains(err.Error(), "portcullis login") {
			t.Errorf("error: %v", err)
		}
	})
	t.Run("an http server URL is refused", func(t *testing.T) {
		d, _, _ := h.deps(t)
		if err := h.run(t, d, "login", "--server", "http://example.com"); err == nil || !strings.Contains(err.Error(), "must be https") {
			t.Errorf("error: %v", err)
		}
	})
}

func TestKubeconfig_MergesWithoutClobbering(t *testing.T) {
	h := newHarness(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.Clusters[1].Upstream = &v1alpha1.Upstream{Server: "https://upstream.example"}
	}})
	path := filepath.Join(t.TempDir(), "config")
	existing := clientcmdapi.NewConfig()
	existing.Clusters["other"] = &clientcmdapi.Cluster{Server: "https://other.example"}
	existing.AuthInfos["other"] = &clientcmdapi.AuthInfo{Token: "other-token"}
	existing.Contexts["other"] = &clientcmdapi.Context{Cluster: "other", AuthInfo: "other"}
	existing.Clusters["taken"] = &clientcmdapi.Cluster{Server: "https://taken.example"}
	existing.CurrentContext = "other"
	if err := clientcmd.WriteToFile(*existing, path); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, h.env.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	d, _, _ := h.deps(t)
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c1", "--kubeconfig", path); err == nil || !strings.Contains(err.Error(), "--api-server") {
		t.Fatalf("webhook cluster without --api-server: %v", err)
	}
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c1", "--kubeconfig", path, "--api-server", "https://kube.example:6443", "--api-server-ca", caFile, "--certificate-authority", caFile); err != nil {
		t.Fatal(err)
	}
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c2", "--kubeconfig", path, "--certificate-authority", caFile); err != nil {
		t.Fatal(err)
	}
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c2", "--name", "taken", "--kubeconfig", path); err == nil || !strings.Contains(err.Error(), "cluster taken") {
		t.Errorf("clobbering a foreign entry: %v", err)
	}
	// Running it again replaces our own entries.
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c2", "--kubeconfig", path, "--certificate-authority", caFile); err != nil {
		t.Errorf("rewriting our own entry: %v", err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "other" || cfg.AuthInfos["other"].Token != "other-token" || cfg.Clusters["taken"].Server != "https://taken.example" {
		t.Errorf("other entries changed: %+v", cfg)
	}
	if c := cfg.Clusters["c1"]; c == nil || c.Server != "https://kube.example:6443" || len(c.CertificateAuthorityData) == 0 {
		t.Errorf("c1 = %+v", c)
	}
	if c := cfg.Clusters["c2"]; c == nil || c.Server != h.env.URL+"/clusters/c2" || !bytes.Equal(c.CertificateAuthorityData, h.env.CAPEM) {
		t.Errorf("c2 = %+v", c)
	}
	u := cfg.AuthInfos["c1"]
	if u == nil || u.Exec == nil || u.Exec.Command != "/usr/local/bin/portcullis" || !u.Exec.ProvideClusterInfo || u.Exec.InteractiveMode != clientcmdapi.IfAvailableExecInteractiveMode {
		t.Fatalf("user c1 = %+v", u)
	}
	wantArgs := []string{"exec-credential", "--server=" + h.env.URL, "--cluster=c1", "--certificate-authority=" + caFile}
	if strings.Join(u.Exec.Args, " ") != strings.Join(wantArgs, " ") {
		t.Errorf("args = %v, want %v", u.Exec.Args, wantArgs)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v", fi.Mode())
	}

	// whoami finds the server from the context.
	d2, out, _ := h.deps(t)
	if err := h.run(t, d2, "whoami", "--kubeconfig", path, "--context", "c1"); err == nil || !strings.Contains(err.Error(), "not logged in") {
		t.Errorf("whoami without a session: %v", err)
	}
	if !strings.Contains(out.String(), "Session:            none (run: portcullis login --server="+h.env.URL+" --cluster=c1 --certificate-authority="+caFile) {
		t.Errorf("whoami from the context: %s", out)
	}
}

func mustSessions(t *testing.T, h *harness) []storeSession {
	t.Helper()
	l, err := h.env.Store.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type storeSession = store.Session
