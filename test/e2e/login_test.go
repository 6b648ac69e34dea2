package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/test/e2e/framework"
)

const loginCluster = "c1"

// loginStack is Dex, Portcullis (with its portal), a kube-apiserver that
// asks Portcullis's TokenReview webhook, and a kubeconfig written by
// `portcullis kubeconfig`.
type loginStack struct {
	pki        *framework.PKI
	dex        *framework.Dex
	portcullis *framework.Portcullis
	api        *framework.APIServer
	kubeconfig string
	browserLog string
	dir        string
}

func loginConfig(port int, dir string, dex *framework.Dex, secretFile, clientCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
identityProviders:
- name: dex
  displayName: Dex
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
# Dex's static users have no groups claim: map them by email.
- match:
    emails: [alice@example.com]
  groups: [devs]
clusters:
- name: %s
  tokenLifetime: 15s
  access:
    groups: [devs]
  # alice, the one user this stack admits, may approve her own access
  # requests (on the portal's approvers' page).
  justInTime:
    requestableGroups: [sre-admin]
    maxDuration: 10m
    approvers:
      users: [alice@example.com]
    allowSelfApproval: true
webhook:
  clientCAFile: %s
portal:
  refreshReuseGrace: 10s
`, port, filepath.Join(dir, "state.db"), dex.IssuerURL, dex.CAFile, dex.ClientID, secretFile, loginCluster, clientCA)
}

func startLoginStack(t *testing.T, withAPIServer bool) *loginStack {
	t.Helper()
	s := &loginStack{pki: framework.NewPKI(t), dir: framework.WorkDir(t)}
	port := framework.FreePort(t)
	issuer := fmt.Sprintf("https://127.0.0.1:%d", port)
	s.dex = framework.StartDex(t, framework.DexOptions{PKI: s.pki, RedirectURIs: []string{issuer + "/callback"}})
	secretFile := filepath.Join(s.dir, "dex-client-secret")
	if err := os.WriteFile(secretFile, []byte(s.dex.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	s.portcullis = framework.StartPortcullis(t, framework.PortcullisOptions{
		ConfigYAML: loginConfig(port, s.dir, s.dex, secretFile, s.pki.ClientCA.CertFile),
		Port:       port,
	})
	s.browserLog = filepath.Join(s.dir, "browser.log")
	if !withAPIServer {
		return s
	}

	client := s.pki.IssueClient("kube-apiserver-webhook-client")
	webhookKubeconfig, err := exec.Command(framework.PortcullisServerBinary(t), "webhook-kubeconfig",
		"--config", s.portcullis.ConfigPath, "--cluster", loginCluster, "--cert-dir", s.portcullis.CertDir,
		"--client-certificate", client.CertFile, "--client-key", client.KeyFile).Output()
	if err != nil {
		t.Fatalf("webhook-kubeconfig: %v", err)
	}
	s.api = framework.StartAPIServer(t, framework.APIServerOptions{
		PKI:               s.pki,
		WebhookKubeconfig: string(webhookKubeconfig),
		WebhookVersion:    "v1",
		WebhookCacheTTL:   "1s",
	})
	// RBAC knows nothing of alice: only of the group Portcullis maps her into.
	_, err = s.api.Clientset().RbacV1().ClusterRoleBindings().Create(context.Background(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "devs-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "devs"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Namespaces are cluster-scoped: "view" does not list them.
	_, err = s.api.Clientset().RbacV1().ClusterRoles().Create(context.Background(), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "namespace-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.api.Clientset().RbacV1().ClusterRoleBindings().Create(context.Background(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "devs-namespace-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "namespace-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "devs"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// As a user would: `portcullis kubeconfig`.
	s.kubeconfig = filepath.Join(s.dir, "user.kubeconfig")
	out, err := s.cli(t, s.newCacheDir(t), nil, "kubeconfig", "--server", issuer, "--cluster", loginCluster,
		"--certificate-authority", s.portcullis.CACertFile(),
		"--api-server", s.api.URL, "--api-server-ca", s.api.CAFile, "--kubeconfig", s.kubeconfig)
	if err != nil {
		t.Fatalf("portcullis kubeconfig: %v\n%s", err, out)
	}
	return s
}

func (s *loginStack) newCacheDir(t *testing.T) string {
	d, err := os.MkdirTemp(s.dir, "cache-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// env is the environment of kubectl (and so of the plugin and the browser
// helper it starts).
func (s *loginStack) env(t *testing.T, cacheDir, user string) []string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		"PORTCULLIS_CACHE_DIR=" + cacheDir,
		"PORTCULLIS_BROWSER=" + self,
		browserHelperEnv + "=1",
		browserCAsEnv + "=" + s.pki.CA.CertFile + "," + s.portcullis.CACertFile(),
		browserUserEnv + "=" + user,
		browserLogEnv + "=" + s.browserLog,
	}
}

// kubectl runs kubectl with the user's kubeconfig; interactive gives it a
// terminal as stdin (so it lets the plugin log in).
func (s *loginStack) kubectl(t *testing.T, cacheDir string, interactive bool, args ...string) (string, string, error) {
	t.Helper()
	opts := framework.KubectlOptions{Kubeconfig: s.kubeconfig, Env: s.env(t, cacheDir, "alice@example.com:alice-password")}
	if interactive {
		_, follower := framework.OpenPTY(t)
		opts.Stdin = follower
	}
	return framework.KubectlWith(t, opts, args...)
}

// cli runs the portcullis CLI.
func (s *loginStack) cli(t *testing.T, cacheDir string, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(framework.PortcullisCLIBinary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, s.env(t, cacheDir, "alice@example.com:alice-password")...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// browserLogins counts the logins the browser helper completed.
func (s *loginStack) browserLogins(t *testing.T) int {
	b, err := os.ReadFile(s.browserLog)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "login ")
}

// metric returns a sample of Portcullis's /metrics (0 when absent).
func (s *loginStack) metric(t *testing.T, name string) float64 {
	t.Helper()
	// The webhook's client CA vouches for the scraper (metricsClient).
	sc := bufio.NewScanner(bytes.NewReader(scrapeMetrics(t, s.portcullis, s.pki)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}

const (
	loopbackLogins = `portcullis_portal_logins_total{flow="loopback",outcome="success"}`
	refreshesOK    = `portcullis_portal_refreshes_total{outcome="success"}`
)

// cachedExpiry is the expiry of the cached token for the cluster.
func cachedExpiry(t *testing.T, cacheDir string) time.Time {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(cacheDir, "portcullis", "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files in %s: %v", cacheDir, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"token": "`) {
		if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
			t.Errorf("cache file %s has mode %v", files[0], fi.Mode())
		}
	}
	var entry struct {
		Tokens map[string]struct {
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(b, &entry); err != nil {
		t.Fatal(err)
	}
	return entry.Tokens[loginCluster].ExpiresAt
}

func cachedToken(t *testing.T, cacheDir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(cacheDir, "portcullis", "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	var entry struct {
		Tokens map[string]struct {
			Token string `json:"token"`
		} `json:"tokens"`
	}
	_ = json.Unmarshal(b, &entry)
	return entry.Tokens[loginCluster].Token
}

func TestLogin_KubectlThroughDexWithThePlugin(t *testing.T) {
	t.Parallel()
	s := startLoginStack(t, true)
	cache := s.newCacheDir(t)

	t.Run("kubectl logs in through Dex on first use and gets the mapped groups", func(t *testing.T) {
		out, stderr, err := s.kubectl(t, cache, true, "get", "ns")
		if err != nil {
			t.Fatalf("kubectl get ns: %v\n%s", err, stderr)
		}
		if !strings.Contains(out, "default") {
			t.Errorf("kubectl get ns: %s", out)
		}
		if n := s.browserLogins(t); n != 1 {
			t.Errorf("%d browser logins, want 1", n)
		}
		w, stderr, err := whoamiJSON(t, s.kubeconfigWithEnv(t, cache))
		if err != nil {
			t.Fatalf("kubectl auth whoami: %v\n%s", err, stderr)
		}
		if w.Status.UserInfo.Username != "alice@example.com" || !hasAll(w.Status.UserInfo.Groups, "devs", "system:authenticated") {
			t.Errorf("whoami = %+v", w.Status.UserInfo)
		}
		if idp := w.Status.UserInfo.Extra["portcullis.dev/idp"]; len(idp) != 1 || idp[0] != "dex" {
			t.Errorf("extra = %v", w.Status.UserInfo.Extra)
		}
		out, err = s.cli(t, cache, nil, "whoami", "--kubeconfig", s.kubeconfig)
		if err != nil || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "Cluster c1 says:  alice@example.com, groups devs") {
			t.Errorf("portcullis whoami: %v\n%s", err, out)
		}
	})

	t.Run("after the token expires the next kubectl refreshes silently", func(t *testing.T) {
		logins, refreshes := s.metric(t, loopbackLogins), s.metric(t, refreshesOK)
		exp := cachedExpiry(t, cache)
		if d := time.Until(exp); d > 0 {
			time.Sleep(d + 100*time.Millisecond) // the token's own lifetime: nothing to poll
		}
		_, stderr, err := s.kubectl(t, cache, false, "get", "ns")
		if err != nil {
			t.Fatalf("kubectl after expiry (non-interactive): %v\n%s", err, stderr)
		}
		if got := s.metric(t, loopbackLogins); got != logins {
			t.Errorf("logins went from %v to %v", logins, got)
		}
		if got := s.metric(t, refreshesOK); got != refreshes+1 {
			t.Errorf("refreshes went from %v to %v, want one more", refreshes, got)
		}
		if !cachedExpiry(t, cache).After(exp) {
			t.Errorf("the cached token was not replaced")
		}
	})

	t.Run("after logout kubectl is refused at once and says what to run", func(t *testing.T) {
		token := cachedToken(t, cache)
		out, err := s.cli(t, cache, nil, "logout", "--kubeconfig", s.kubeconfig)
		if err != nil || !strings.Contains(out, "Logged out") {
			t.Fatalf("portcullis logout: %v\n%s", err, out)
		}
		loggedOut := time.Now()
		_, stderr, err := s.kubectl(t, cache, false, "get", "ns")
		took := time.Since(loggedOut)
		if err == nil {
			t.Fatal("kubectl still works after logout")
		}
		if !strings.Contains(stderr, "portcullis login --server=") || !strings.Contains(stderr, "not running interactively") {
			t.Errorf("the refusal does not say what to run:\n%s", stderr)
		}
		// No timing assertion (the machine may be loaded): the very first
		// kubectl call after logout is refused, and so is the very first
		// TokenReview of the revoked token at Portcullis.
		t.Logf("kubectl refused %v after logout", took.Round(10*time.Millisecond))
		if authenticated := s.reviewAtPortcullis(t, token); authenticated {
			t.Errorf("Portcullis's TokenReview still authenticates the revoked token right after logout")
		}
		// The revoked token itself: Portcullis refuses it at once, and
		// kube-apiserver once its own caches let go (its 10s cache of
		// successful authentications, plus --authentication-token-webhook-cache-ttl).
		raw := s.api.KubeconfigFor(token)
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, _, err := framework.Kubectl(t, raw, "get", "ns")
			if err != nil {
				t.Logf("the revoked token was refused by kube-apiserver %v after logout", time.Since(loggedOut).Round(100*time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("kube-apiserver still accepts the revoked token 20s after logout")
			}
			time.Sleep(250 * time.Millisecond)
		}
		// Interactive: the plugin logs in again.
		before := s.browserLogins(t)
		if _, stderr, err := s.kubectl(t, cache, true, "get", "ns"); err != nil {
			t.Fatalf("interactive kubectl after logout: %v\n%s", err, stderr)
		}
		if n := s.browserLogins(t); n != before+1 {
			t.Errorf("browser logins %d, want %d", n, before+1)
		}
	})

	t.Run("ten kubectl processes started together with an empty cache log in once", func(t *testing.T) {
		empty := s.newCacheDir(t)
		loginsBefore, browserBefore := s.metric(t, loopbackLogins), s.browserLogins(t)
		var wg sync.WaitGroup
		errs := make([]error, 10)
		stderrs := make([]string, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, stderrs[i], errs[i] = s.kubectl(t, empty, true, "get", "ns")
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("kubectl #%d: %v\n%s", i, err, stderrs[i])
			}
		}
		if got := s.metric(t, loopbackLogins) - loginsBefore; got != 1 {
			t.Errorf("Portcullis counted %v logins, want 1", got)
		}
		if got := s.browserLogins(t) - browserBefore; got != 1 {
			t.Errorf("the browser was opened %d times, want 1", got)
		}
	})

	t.Run("the device flow logs in a headless machine", func(t *testing.T) {
		headless := s.newCacheDir(t)
		cmd := exec.Command(framework.PortcullisCLIBinary(t), "login", "--device", "--server", s.portcullis.URL,
			"--cluster", loginCluster, "--certificate-authority", s.portcullis.CACertFile())
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PORTCULLIS_CACHE_DIR=" + headless}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stdout strings.Builder
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		var printed strings.Builder
		verifyURL := ""
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`https://\S+/device\?user_code=[A-Z-]+`)
		for verifyURL == "" && sc.Scan() {
			printed.WriteString(sc.Text() + "\n")
			verifyURL = re.FindString(sc.Text())
		}
		if verifyURL == "" {
			t.Fatalf("no verification URL printed:\n%s", printed.String())
		}
		go func() { _, _ = io.Copy(io.Discard, stderr) }()

		// The person, on another device.
		b, err := framework.NewBrowser(s.pki.CA.CertFile, s.portcullis.CACertFile())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		page, err := b.Get(ctx, verifyURL)
		if err != nil || page.Status != http.StatusOK {
			t.Fatalf("device page: %v %v", err, page)
		}
		csrf, ok := framework.FormValue(page.Body, "csrf")
		if !ok {
			t.Fatalf("no CSRF field on the device page: %s", page.Body)
		}
		u, _ := url.Parse(verifyURL)
		page, err = b.PostForm(ctx, s.portcullis.URL+"/device", url.Values{"csrf": {csrf}, "user_code": {u.Query().Get("user_code")}, "idp": {"dex"}})
		if err != nil {
			t.Fatal(err)
		}
		page, err = b.DexLogin(ctx, page, "", "alice@example.com", "alice-password")
		if err != nil {
			t.Fatal(err)
		}
		if page.Status != http.StatusOK || !strings.Contains(string(page.Body), "Device logged in") {
			t.Fatalf("after Dex: %d %s", page.Status, page.Body)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("portcullis login --device: %v\n%s", err, stdout.String())
		}
		if !strings.Contains(stdout.String(), "Logged in to "+s.portcullis.URL+" as alice@example.com") {
			t.Errorf("login output: %s", stdout.String())
		}
		if _, stderr, err := s.kubectl(t, headless, false, "get", "ns"); err != nil {
			t.Errorf("kubectl with the device login's session: %v\n%s", err, stderr)
		}
	})
}

// kubeconfigWithEnv returns the user's kubeconfig path; whoamiJSON runs
// kubectl without extra environment, so the plugin's cache dir is set in
// the kubeconfig's exec env for it.
func (s *loginStack) kubeconfigWithEnv(t *testing.T, cacheDir string) string {
	t.Helper()
	b, err := os.ReadFile(s.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	withEnv := strings.Replace(string(b), "      provideClusterInfo: true\n",
		"      provideClusterInfo: true\n      env:\n      - name: PORTCULLIS_CACHE_DIR\n        value: "+cacheDir+"\n", 1)
	if withEnv == string(b) {
		t.Fatalf("cannot find the exec entry in:\n%s", b)
	}
	p := filepath.Join(s.dir, "user-env-"+filepath.Base(cacheDir)+".kubeconfig")
	if err := os.WriteFile(p, []byte(withEnv), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLogin_PortalRefusesAUserThePolicyDoesNotAdmit(t *testing.T) {
	t.Parallel()
	s := startLoginStack(t, false)
	b, err := framework.NewBrowser(s.pki.CA.CertFile, s.portcullis.CACertFile())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// bob has no mapping: no groups, so no cluster admits him.
	page, err := b.DexLogin(ctx, nil, s.portcullis.URL+"/login", "bob@example.com", "bob-password")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusForbidden || !strings.Contains(string(page.Body), "Access denied") || !strings.Contains(string(page.Body), "bob@example.com") {
		t.Errorf("bob's login: %d %s", page.Status, page.Body)
	}
	// alice gets the login-complete page in the browser.
	b2, _ := framework.NewBrowser(s.pki.CA.CertFile, s.portcullis.CACertFile())
	page, err = b2.DexLogin(ctx, nil, s.portcullis.URL+"/login", "alice@example.com", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || !strings.Contains(string(page.Body), "Login complete") || !strings.Contains(string(page.Body), "devs") {
		t.Errorf("alice's login: %d %s", page.Status, page.Body)
	}
	// A replayed callback is a clear 400, not a 500.
	resp, err := b2.Client.Get(s.portcullis.URL + "/callback?state=replayed&code=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("forged callback: %s", resp.Status)
	}
}

// reviewAtPortcullis posts a TokenReview to Portcullis as kube-apiserver
// would (with a webhook client certificate) and says whether it authenticated.
func (s *loginStack) reviewAtPortcullis(t *testing.T, token string) bool {
	t.Helper()
	client := s.pki.IssueClient("kube-apiserver-webhook-client")
	cert, err := client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.portcullis.CACertPEM())
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	defer hc.CloseIdleConnections()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `"}}`
	resp, err := hc.Post(s.portcullis.URL+"/tokenreview/"+loginCluster, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("TokenReview at Portcullis: %v", err)
	}
	defer resp.Body.Close()
	var review struct {
		Status struct {
			Authenticated bool `json:"authenticated"`
		} `json:"status"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&review) != nil {
		t.Fatalf("TokenReview at Portcullis: %s", resp.Status)
	}
	return review.Status.Authenticated
}
