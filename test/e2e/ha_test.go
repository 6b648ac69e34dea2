package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/pkg/store"
	kstore "portcullis.dev/portcullis/pkg/store/kubernetes"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/test/e2e/framework"
)

const (
	haWebhookCluster = "web"
	haProxyCluster   = "prox"
	haReplicas       = 3
)

// haStack is three Portcullis replicas sharing their state through the
// Kubernetes API of one kube-apiserver (the "state" cluster), behind a
// round-robin front that plays their Service, in front of a second
// kube-apiserver (the "target" cluster) that asks them about tokens
// (webhook mode) and that they proxy to (proxy mode).
type haStack struct {
	pki        *framework.PKI
	state      *framework.APIServer
	target     *framework.APIServer
	dex        *framework.Dex
	front      *framework.Front
	replicas   []*framework.Portcullis
	configPath string
	namespace  string
	stores     *storeNamespaces
	dir        string
	review     *http.Client // TokenReview caller: the webhook client certificate
	auditLog   string
}

func haConfig(issuer, namespace, storeKubeconfig string, dex *framework.Dex, secretFile string, target *framework.APIServer, upstreamToken, clientCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: %s
store:
  type: kubernetes
  kubernetes:
    namespace: %s
    kubeconfig: %s
tokens:
  # Short, so that the test sees the chores replica rotate under load.
  keyRotationPeriod: 30s
identityProviders:
- name: dex
  displayName: Dex
  issuer:
    url: %s
  certificateAuthorityFile: %s
  clientID: %s
  clientSecretFile: %s
  acceptIDTokens: true
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
- name: %s
  access:
    groups: [devs]
  upstream:
    server: %s
    certificateAuthorityFile: %s
    tokenFile: %s
webhook:
  clientCAFile: %s
`, issuer, namespace, storeKubeconfig, dex.IssuerURL, dex.CAFile, dex.ClientID, secretFile,
		haWebhookCluster, haProxyCluster, target.URL, target.CAFile, upstreamToken, clientCA)
}

func startHAStack(t *testing.T) *haStack {
	t.Helper()
	ctx := context.Background()
	s := &haStack{pki: framework.NewPKI(t), dir: framework.WorkDir(t)}
	s.state = framework.StartAPIServer(t, framework.APIServerOptions{PKI: s.pki})
	s.stores = &storeNamespaces{api: s.state}
	s.namespace = s.stores.new(t)
	s.stores.mu.Lock()
	storeToken := s.stores.cfg[s.namespace].BearerToken
	s.stores.mu.Unlock()
	storeKubeconfig := s.state.KubeconfigFor(storeToken)

	s.front = framework.StartFront(t)
	s.dex = framework.StartDex(t, framework.DexOptions{PKI: s.pki, RedirectURIs: []string{s.front.URL + "/callback"}})
	secretFile := filepath.Join(s.dir, "dex-client-secret")
	must(t, os.WriteFile(secretFile, []byte(s.dex.ClientSecret), 0o600))

	client := s.pki.IssueClient("kube-apiserver-webhook-client")
	caPEM, err := os.ReadFile(s.pki.CA.CertFile)
	must(t, err)
	s.target = framework.StartAPIServer(t, framework.APIServerOptions{
		PKI:               s.pki,
		WebhookKubeconfig: framework.WebhookKubeconfig(s.front.URL+"/tokenreview/"+haWebhookCluster, caPEM, &client),
		WebhookVersion:    "v1",
		// Every kubectl call asks Portcullis: no answer served from
		// kube-apiserver's own cache hides a replica's failure.
		WebhookCacheTTL: "0s",
	})
	// "view" aggregates its rules, which needs kube-controller-manager:
	// a role of its own instead.
	_, err = s.target.Clientset().RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "configmap-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = s.target.Clientset().RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "devs-configmap-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "configmap-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "devs"}},
	}, metav1.CreateOptions{})
	must(t, err)
	upstreamToken := filepath.Join(s.dir, "upstream-token")
	must(t, os.WriteFile(upstreamToken, []byte(s.target.AdminToken), 0o600))

	serving := s.pki.IssueServing("127.0.0.1", "localhost")
	cfg := haConfig(s.front.URL, s.namespace, storeKubeconfig, s.dex, secretFile, s.target, upstreamToken, s.pki.ClientCA.CertFile)
	s.auditLog = filepath.Join(s.dir, "audit.log")
	policy := filepath.Join(s.dir, "audit-policy.yaml")
	must(t, os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600))
	var addrs []string
	for i := range haReplicas {
		name := fmt.Sprintf("replica-%c", 'a'+i)
		r := framework.StartPortcullis(t, framework.PortcullisOptions{
			Name:       name,
			ConfigYAML: cfg,
			Env:        []string{"POD_NAME=" + name},
			ExtraArgs: []string{
				"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile,
				// /readyz fails at once on SIGTERM; the server goes on
				// answering while the front notices.
				"--shutdown-delay-duration=1s",
			},
		})
		s.replicas = append(s.replicas, r)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", r.Port))
	}
	s.configPath = s.replicas[0].ConfigPath
	s.front.SetBackends(addrs...)

	cert, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	must(t, err)
	s.review = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: framework.CertPool(s.pki.CA), Certificates: []tls.Certificate{cert},
	}}}
	return s
}

// reviewAt asks one replica (base URL) about tok, as kube-apiserver would.
func (s *haStack) reviewAt(base, tok string) (authenticated bool, err error) {
	body := fmt.Sprintf(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":%q}}`, tok)
	resp, err := s.review.Post(base+"/tokenreview/"+haWebhookCluster, "application/json", strings.NewReader(body))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var tr struct {
		Status struct {
			Authenticated bool   `json:"authenticated"`
			Error         string `json:"error"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &tr); err != nil {
		return false, err
	}
	return tr.Status.Authenticated, nil
}

// minter mints tokens with the state store's keys from the test process,
// which then acts as one more replica.
func (s *haStack) minter(t *testing.T) (*token.Minter, *kstore.Store) {
	t.Helper()
	st := s.stores.mustOpen(t, s.namespace)
	km, err := token.NewKeyManager(st, token.KeyOptions{RotationPeriod: time.Hour, MaxTokenLifetime: time.Hour})
	must(t, err)
	must(t, km.Reload(context.Background()))
	m, err := token.NewMinter(km, s.front.URL, nil)
	must(t, err)
	return m, st
}

// loop runs f over and over on workers goroutines until stop is closed, and
// returns how many calls there were and the failures.
func loop(workers int, stop <-chan struct{}, f func() error) func() (int, []string) {
	var n atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n.Add(1)
				if err := f(); err != nil {
					mu.Lock()
					failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	return func() (int, []string) {
		wg.Wait()
		return int(n.Load()), failures
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func TestHA_ThreeReplicasOnTheKubernetesStore(t *testing.T) {
	t.Parallel()
	s := startHAStack(t)
	ctx := context.Background()
	m, st := s.minter(t)
	mint := func(sid string, ttl time.Duration) string {
		raw, _, err := m.Mint(ctx, token.Claims{Subject: "alice@example.com", Username: "alice@example.com", Groups: []string{"devs"},
			Audience: []string{haWebhookCluster, haProxyCluster}, Expiry: time.Now().Add(ttl), SessionID: sid})
		must(t, err)
		return raw
	}

	t.Run("every replica publishes the same keys and discovery", func(t *testing.T) {
		var first []byte
		for _, path := range []string{"/openid/v1/jwks", "/.well-known/openid-configuration"} {
			first = nil
			for _, r := range s.replicas {
				resp, err := s.pki.HTTPClient().Get(r.URL + path)
				must(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if first == nil {
					first = b
				} else if !bytes.Equal(first, b) {
					t.Errorf("%s differs between replicas:\n%s\n%s", path, first, b)
				}
			}
		}
	})

	t.Run("a revocation is refused by every replica within a second", func(t *testing.T) {
		const rounds = 100
		var lat []time.Duration
		for i := range rounds {
			sid := fmt.Sprintf("ha-session-%d", i)
			tok := mint(sid, 10*time.Minute)
			for _, r := range s.replicas {
				ok, err := s.reviewAt(r.URL, tok)
				if err != nil || !ok {
					t.Fatalf("round %d: %s does not accept a fresh token: %v, %v", i, r.Process.Name, ok, err)
				}
			}
			start := time.Now()
			must(t, st.Revoke(ctx, store.Revocation{ID: sid, Reason: "test", RevokedAt: start, ExpiresAt: start.Add(time.Hour)}))
			pending := slices.Clone(s.replicas)
			for len(pending) > 0 {
				if time.Since(start) > 5*time.Second {
					t.Fatalf("round %d: %d replicas still accept the revoked session after 5s", i, len(pending))
				}
				pending = slices.DeleteFunc(pending, func(r *framework.Portcullis) bool {
					ok, err := s.reviewAt(r.URL, tok)
					return err == nil && !ok
				})
			}
			lat = append(lat, time.Since(start))
		}
		p50, p99, worst := percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 1)
		t.Logf("revocation refused by all %d replicas: p50 %v, p99 %v, max %v over %d revocations", haReplicas, p50, p99, worst, rounds)
		if p99 > time.Second {
			t.Errorf("p99 %v: a revocation must be refused everywhere within 1s", p99)
		}
	})

	t.Run("mint works while the replicas run and is audited", func(t *testing.T) {
		policy := filepath.Join(s.dir, "audit-policy.yaml")
		outb, err := exec.Command(framework.PortcullisServerBinary(t), "mint", "--config", s.configPath,
			"--user", "breakglass@example.com", "--group", "devs", "--cluster", haWebhookCluster, "--ttl", "5m", "--reason", "INC-7: HA drill",
			"--audit-policy-file", policy, "--audit-log-path", s.auditLog).CombinedOutput()
		out := string(outb)
		if err != nil {
			t.Fatalf("mint: %v\n%s", err, out)
		}
		tok := strings.TrimSpace(out)
		for _, r := range s.replicas {
			if ok, err := s.reviewAt(r.URL, tok); err != nil || !ok {
				t.Errorf("%s refuses the minted token: %v, %v", r.Process.Name, ok, err)
			}
		}
		b, err := os.ReadFile(s.auditLog)
		must(t, err)
		if !strings.Contains(string(b), "INC-7: HA drill") {
			t.Errorf("the audit log has no event for the mint:\n%s", b)
		}
	})

	webhookToken := mint("ha-webhook-session", 30*time.Minute)
	proxyKubeconfig := filepath.Join(s.dir, "proxy.kubeconfig")
	must(t, framework.WriteKubeconfig(proxyKubeconfig, s.front.URL+"/clusters/"+haProxyCluster, s.pki.CA.CertFile, &clientcmdapi.AuthInfo{Token: webhookToken}))
	webhookKubeconfig := s.target.KubeconfigFor(webhookToken)
	kubectlLoad := func(stop <-chan struct{}) func() (int, []string) {
		return loop(2, stop, func() error {
			for _, kc := range []string{webhookKubeconfig, proxyKubeconfig} {
				out, stderr, err := framework.Kubectl(t, kc, "get", "configmaps", "-n", "default", "-o", "name")
				if err != nil {
					return fmt.Errorf("kubectl (%s): %v: %s %s", filepath.Base(kc), err, out, stderr)
				}
			}
			return nil
		})
	}

	t.Run("kubectl sees no failure while every replica is restarted in turn", func(t *testing.T) {
		stop := make(chan struct{})
		wait := kubectlLoad(stop)
		time.Sleep(time.Second)
		for _, r := range s.replicas {
			r.Restart()
			time.Sleep(500 * time.Millisecond)
		}
		close(stop)
		n, failures := wait()
		t.Logf("%d kubectl rounds (webhook and proxy) across a rolling restart of %d replicas, %d failed", n, haReplicas, len(failures))
		if len(failures) > 0 {
			t.Errorf("failures:\n%s", strings.Join(failures, "\n"))
		}
	})

	t.Run("kubectl sees no failure when a replica is killed", func(t *testing.T) {
		stop := make(chan struct{})
		wait := kubectlLoad(stop)
		time.Sleep(time.Second)
		victim := s.replicas[1]
		victim.Process.Kill()
		time.Sleep(3 * time.Second)
		close(stop)
		n, failures := wait()
		victim.Restart()
		t.Logf("%d kubectl rounds (webhook and proxy) with %s killed (SIGKILL), %d failed", n, victim.Process.Name, len(failures))
		if len(failures) > 0 {
			t.Errorf("failures:\n%s", strings.Join(failures, "\n"))
		}
	})

	t.Run("a key rotation under load fails no verification", func(t *testing.T) {
		idTok, err := s.dex.IDToken(ctx, "alice@example.com", "alice-password", s.dex.ClientID, s.dex.ClientSecret, []string{"openid", "email"})
		must(t, err)
		kids := map[string]bool{}
		var mu sync.Mutex
		stop := make(chan struct{})
		var next, throttled, verified atomic.Int64
		wait := loop(2, stop, func() error {
			i := int(next.Add(1))
			minting, checking := s.replicas[i%haReplicas], s.replicas[(i+1)%haReplicas]
			tok, err := exchangeAt(minting.URL, s.pki, idTok)
			if err != nil && strings.Contains(err.Error(), "HTTP 429") {
				// The exchange's per-client rate limit: not a failure to
				// verify; slow down.
				throttled.Add(1)
				time.Sleep(250 * time.Millisecond)
				return nil
			}
			if err != nil {
				return fmt.Errorf("exchange at %s: %v", minting.Process.Name, err)
			}
			verified.Add(1)
			mu.Lock()
			kids[kidOf(tok)] = true
			mu.Unlock()
			ok, err := s.reviewAt(checking.URL, tok)
			if err != nil || !ok {
				return fmt.Errorf("a token minted by %s (kid %s) is refused by %s: %v, %v", minting.Process.Name, kidOf(tok), checking.Process.Name, ok, err)
			}
			return nil
		})
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := len(kids)
			mu.Unlock()
			if n >= 3 {
				break
			}
			time.Sleep(time.Second)
		}
		close(stop)
		_, failures := wait()
		t.Logf("%d exchanges verified on another replica while keys rotated (%d signing keys seen), %d failed, %d throttled by the exchange's rate limit", verified.Load(), len(kids), len(failures), throttled.Load())
		if len(kids) < 2 {
			t.Errorf("only %d signing key seen: no rotation happened under load", len(kids))
		}
		if len(failures) > 0 {
			t.Errorf("failures:\n%s", strings.Join(failures[:min(len(failures), 20)], "\n"))
		}
	})

	// A browser that opens a new connection for every request: through the
	// round-robin front, each step of a login lands on the next replica.
	hoppingBrowser := func(t *testing.T) *framework.Browser {
		t.Helper()
		b, err := framework.NewBrowser(s.pki.CA.CertFile)
		must(t, err)
		b.Client.Transport.(*http.Transport).DisableKeepAlives = true
		return b
	}

	t.Run("a browser login hops across replicas at every step", func(t *testing.T) {
		bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		before := s.front.Connections()
		page, err := hoppingBrowser(t).DexLogin(bctx, nil, s.front.URL+"/login/dex", "alice@example.com", "alice-password")
		must(t, err)
		if page.Status != http.StatusOK || page.URL.Path != "/portal/" || !strings.Contains(string(page.Body), "alice@example.com") {
			t.Fatalf("the login ended on %s (%d): %.400s", page.URL, page.Status, page.Body)
		}
		if n := s.front.Connections() - before; n < haReplicas {
			t.Errorf("the login made %d connections through the front, want one per step (at least %d)", n, haReplicas)
		}
	})

	t.Run("a device login is issued by one replica, approved on a second and polled on a third", func(t *testing.T) {
		bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		a, b, c := s.replicas[0], s.replicas[1], s.replicas[2]
		hc := s.pki.HTTPClient()
		resp, err := hc.PostForm(a.URL+"/device/code", url.Values{"cluster": {haWebhookCluster}})
		must(t, err)
		var dc struct {
			DeviceCode string `json:"device_code"`
			UserCode   string `json:"user_code"`
		}
		must(t, json.NewDecoder(resp.Body).Decode(&dc))
		resp.Body.Close()
		if dc.DeviceCode == "" {
			t.Fatalf("no device code from %s", a.Process.Name)
		}
		poll := func() (int, map[string]any) {
			resp, err := hc.PostForm(c.URL+"/device/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dc.DeviceCode}})
			must(t, err)
			defer resp.Body.Close()
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			return resp.StatusCode, m
		}
		if _, m := poll(); m["error"] != "authorization_pending" {
			t.Fatalf("%s before approval: %v, want authorization_pending", c.Process.Name, m)
		}
		br := hoppingBrowser(t)
		page, err := br.Get(bctx, b.URL+"/device?user_code="+url.QueryEscape(dc.UserCode))
		must(t, err)
		csrf, ok := framework.FormValue(page.Body, "csrf")
		if !ok {
			t.Fatalf("no CSRF field on %s's device page: %s", b.Process.Name, page.Body)
		}
		page, err = br.PostForm(bctx, b.URL+"/device", url.Values{"csrf": {csrf}, "user_code": {dc.UserCode}, "idp": {"dex"}})
		must(t, err)
		page, err = br.DexLogin(bctx, page, "", "alice@example.com", "alice-password")
		must(t, err)
		if !strings.Contains(string(page.Body), "Device logged in") {
			t.Fatalf("after Dex: %d %.400s", page.Status, page.Body)
		}
		var code int
		var m map[string]any
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, m = poll()
			if code == http.StatusOK || m["error"] != "authorization_pending" && m["error"] != "slow_down" || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if code != http.StatusOK {
			t.Fatalf("%s after approval on %s: %d %v", c.Process.Name, b.Process.Name, code, m)
		}
	})

	t.Run("a logout is refused by every replica within a second", func(t *testing.T) {
		self, err := os.Executable()
		must(t, err)
		cache := t.TempDir()
		cli := func(args ...string) string {
			cmd := exec.Command(framework.PortcullisCLIBinary(t), args...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
				"PORTCULLIS_CACHE_DIR=" + cache, "PORTCULLIS_BROWSER=" + self,
				browserHelperEnv + "=1", browserCAsEnv + "=" + s.pki.CA.CertFile,
				browserUserEnv + "=alice@example.com:alice-password", browserLogEnv + "=" + filepath.Join(s.dir, "browser.log")}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("portcullis %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		cli("login", "--server", s.front.URL, "--cluster", haWebhookCluster, "--certificate-authority", s.pki.CA.CertFile)
		files, _ := filepath.Glob(filepath.Join(cache, "portcullis", "*.json"))
		if len(files) != 1 {
			t.Fatalf("cache files: %v", files)
		}
		b, err := os.ReadFile(files[0])
		must(t, err)
		var entry struct {
			Tokens map[string]struct {
				Token string `json:"token"`
			} `json:"tokens"`
		}
		must(t, json.Unmarshal(b, &entry))
		tok := entry.Tokens[haWebhookCluster].Token
		if tok == "" {
			t.Fatalf("no cluster token for %s in the cache: %s", haWebhookCluster, b)
		}
		for _, r := range s.replicas {
			if ok, err := s.reviewAt(r.URL, tok); err != nil || !ok {
				t.Fatalf("%s refuses the logged-in user's token: %v, %v", r.Process.Name, ok, err)
			}
		}
		cli("logout", "--server", s.front.URL, "--certificate-authority", s.pki.CA.CertFile)
		start := time.Now()
		pending := slices.Clone(s.replicas)
		for len(pending) > 0 {
			if time.Since(start) > time.Second {
				t.Fatalf("%d replicas still accept the token 1s after the logout returned", len(pending))
			}
			pending = slices.DeleteFunc(pending, func(r *framework.Portcullis) bool {
				ok, err := s.reviewAt(r.URL, tok)
				return err == nil && !ok
			})
		}
		t.Logf("every replica refused the token %v after the logout returned", time.Since(start).Round(time.Millisecond))
	})

	t.Run("while the state API is down tokens keep verifying, logins get a clear 503, and all recovers", func(t *testing.T) {
		tok := mint("ha-outage-session", 30*time.Minute)
		hc := s.pki.HTTPClient()
		s.state.Process.Kill()
		downSince := time.Now()
		for time.Since(downSince) < 30*time.Second {
			for _, r := range s.replicas {
				if ok, err := s.reviewAt(r.URL, tok); err != nil || !ok {
					t.Fatalf("%s refuses a valid token while the state API is down: %v, %v", r.Process.Name, ok, err)
				}
			}
			resp, err := hc.PostForm(s.replicas[0].URL+"/device/code", url.Values{})
			must(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "state store is unreachable") {
				t.Fatalf("a login while the state API is down: %d %s, want 503 saying the state store is unreachable", resp.StatusCode, b)
			}
			for _, r := range s.replicas {
				resp, err := hc.Get(r.URL + "/readyz")
				must(t, err)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s is not ready while only its state API is down: taking every replica out would stop token reviews too", r.Process.Name)
				}
			}
			time.Sleep(2 * time.Second)
		}
		if err := s.state.Process.Restart(); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		deadline := back.Add(60 * time.Second)
		for {
			resp, err := hc.PostForm(s.replicas[0].URL+"/device/code", url.Values{})
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("logins still fail 60s after the state API came back")
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("logins work again %v after the state API was restarted, without restarting a replica", time.Since(back).Round(100*time.Millisecond))
	})

}

// exchangeAt exchanges an IdP ID token for a cluster token at one replica
// (TokenCredentialRequest).
func exchangeAt(base string, pki *framework.PKI, idToken string) (string, error) {
	resp, err := pki.HTTPClient().Post(base+"/apis/login.portcullis.dev/v1alpha1/tokencredentialrequests", "application/json",
		strings.NewReader(tcrJSONBody(haWebhookCluster, idToken)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tcr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &tcr); err != nil || resp.StatusCode/100 != 2 || tcr.Status.Token == "" {
		return "", fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, b)
	}
	return tcr.Status.Token, nil
}

// kidOf reads the key ID from a JWT's header (not verified: for reporting).
func kidOf(tok string) string {
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "?"
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &hdr)
	return hdr.Kid
}
