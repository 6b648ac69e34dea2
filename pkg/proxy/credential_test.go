package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/internal/testkit"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/proxy/upstreamconfig"
)

// newUpstreamEnv is newTestEnv with cluster c1's upstream given by
// upstream (called with the fake upstream's URL and CA file), and, when
// clientCAs is set, a fake upstream that asks for client certificates.
func newUpstreamEnv(t *testing.T, clientCAs *x509.CertPool, upstream func(server, ca string) *v1alpha1.Upstream) *testEnv {
	t.Helper()
	up := &fakeUpstream{t: t}
	up.server = httptest.NewUnstartedServer(http.HandlerFunc(up.serve))
	up.server.EnableHTTP2 = true
	if clientCAs != nil {
		up.server.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs}
	}
	up.server.StartTLS()
	t.Cleanup(up.server.Close)
	env := &testEnv{up: up, ca: writeCA(t, up.server), clock: testingclock.NewFakeClock(time.Now())}
	p, err := New([]v1alpha1.Cluster{{Name: "c1", Upstream: upstream(up.server.URL, env.ca)}}, Options{Clock: env.clock, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	env.proxy = p
	env.front = httptest.NewUnstartedServer(fakeChain(p))
	env.front.EnableHTTP2 = true
	env.front.StartTLS()
	t.Cleanup(env.front.Close)
	return env
}

// writeKubeconfig writes a kubeconfig for server (CA file ca) whose user is
// userYAML (indented under "user:").
func writeKubeconfig(t *testing.T, path, server, ca, userYAML string) string {
	t.Helper()
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: up
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: portcullis
  user:
%s
contexts:
- name: up
  context: {cluster: up, user: portcullis}
current-context: up
`, server, ca, userYAML)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// execPlugin writes a credential plugin (a shell script) that counts its
// runs in a file and prints the token exec-<run>.
func execPlugin(t *testing.T) (script, counter string) {
	t.Helper()
	dir := t.TempDir()
	counter = filepath.Join(dir, "runs")
	script = filepath.Join(dir, "plugin.sh")
	body := fmt.Sprintf(`#!/bin/sh
n=$(( $(cat %[1]s 2>/dev/null || echo 0) + 1 ))
echo $n > %[1]s
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-%%s"}}' $n
`, counter)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return script, counter
}

func execUserYAML(script string) string {
	return fmt.Sprintf(`    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: %s
      interactiveMode: Never`, script)
}

func pluginRuns(t *testing.T, counter string) int {
	t.Helper()
	b, err := os.ReadFile(counter)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func TestKubeconfigExecPluginCredentialIsCachedAndRenewedAfterA401(t *testing.T) {
	script, counter := execPlugin(t)
	var kubeconfig string
	env := newUpstreamEnv(t, nil, func(server, ca string) *v1alpha1.Upstream {
		kubeconfig = writeKubeconfig(t, filepath.Join(t.TempDir(), "kubeconfig"), server, ca, execUserYAML(script))
		return &v1alpha1.Upstream{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: kubeconfig}}
	})
	for i := 0; i < 3; i++ {
		resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api/v1/pods", bearer("alice-token"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	got := env.up.last().Header
	if got.Get("Authorization") != "Bearer exec-1" || got.Get("Impersonate-User") != "alice@example.com" {
		t.Fatalf("upstream got Authorization %q, Impersonate-User %q; want the plugin's token and alice", got.Get("Authorization"), got.Get("Impersonate-User"))
	}
	if n := pluginRuns(t, counter); n != 1 {
		t.Fatalf("the plugin ran %d times for three requests; its credential should be cached", n)
	}

	// The upstream stops accepting exec-1: that request fails (as a 503,
	// not a 401), the plugin runs again, and the next request uses exec-2.
	env.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer exec-1" {
			http.Error(w, "expired", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{}`)
	})
	resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api/v1/pods", bearer("alice-token"))
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	resp, body = env.do(t, env.front.Client(), "GET", "/clusters/c1/api/v1/pods", bearer("alice-token"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the 401, status %d: %s", resp.StatusCode, body)
	}
	if got := env.up.last().Header.Get("Authorization"); got != "Bearer exec-2" {
		t.Fatalf("after the 401 the upstream got Authorization %q, want the plugin's second token", got)
	}
	if n := pluginRuns(t, counter); n != 2 {
		t.Fatalf("the plugin ran %d times, want 2", n)
	}
}

func TestKubeconfigExecPluginCredentialOnUpgrades(t *testing.T) {
	script, _ := execPlugin(t)
	env := newUpstreamEnv(t, nil, func(server, ca string) *v1alpha1.Upstream {
		kc := writeKubeconfig(t, filepath.Join(t.TempDir(), "kubeconfig"), server, ca, execUserYAML(script))
		return &v1alpha1.Upstream{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: kc}}
	})
	env.up.setHandler(upgradeEcho)
	pool := x509.NewCertPool()
	pool.AddCert(env.front.Certificate())
	conn, err := tls.Dial("tcp", env.front.Listener.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "POST /clusters/c1/api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\n"+
		"Host: portcullis\r\nAuthorization: Bearer alice-token\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	fmt.Fprint(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	got := env.up.last().Header
	if got.Get("Authorization") != "Bearer exec-1" || got.Get("Impersonate-User") != "alice@example.com" {
		t.Fatalf("the upgrade reached the upstream with Authorization %q, Impersonate-User %q", got.Get("Authorization"), got.Get("Impersonate-User"))
	}
}

func TestKubeconfigClientCertificateIsTheWholeCredential(t *testing.T) {
	ca := testkit.NewCA(t, "upstream client CA")
	client := ca.IssueClient("portcullis-proxy")
	var mu sync.Mutex
	var cn []string
	var kc, server, serverCA string
	env := newUpstreamEnv(t, ca.Pool(), func(s, caFile string) *v1alpha1.Upstream {
		server, serverCA = s, caFile
		kc = writeKubeconfig(t, filepath.Join(t.TempDir(), "kubeconfig"), server, caFile,
			fmt.Sprintf("    client-certificate: %s\n    client-key: %s", client.CertFile, client.KeyFile))
		return &v1alpha1.Upstream{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: kc}}
	})
	env.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if len(r.TLS.PeerCertificates) > 0 {
			cn = append(cn, r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		fmt.Fprint(w, `{}`)
	})
	resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	mu.Lock()
	if len(cn) != 1 || cn[0] != "portcullis-proxy" {
		t.Fatalf("the upstream saw client certificates %v, want portcullis-proxy", cn)
	}
	mu.Unlock()
	h := env.up.last().Header
	if _, ok := h["Authorization"]; ok {
		t.Errorf("the upstream got an Authorization header %q; the client certificate is the whole credential (and alice's token must never be sent)", h.Get("Authorization"))
	}
	if h.Get("Impersonate-User") != "alice@example.com" {
		t.Errorf("Impersonate-User %q", h.Get("Impersonate-User"))
	}

	// A new certificate in the kubeconfig is presented on the next
	// connection, and the idle ones made with the old one are dropped.
	renewed := ca.IssueClient("portcullis-proxy-renewed")
	writeKubeconfig(t, kc, server, serverCA, fmt.Sprintf("    client-certificate: %s\n    client-key: %s", renewed.CertFile, renewed.KeyFile))
	env.clock.Step(3 * time.Second)
	for i := 0; i < 2; i++ {
		// The first request finds the change; the second goes out on a
		// new connection.
		if resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token")); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if last := cn[len(cn)-1]; last != "portcullis-proxy-renewed" {
		t.Fatalf("after the kubeconfig changed the upstream saw %v", cn)
	}
}

func TestKubeconfigAndItsFilesAreRereadWhenTheyChange(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	writeFile(t, token, "file-token-1", time.Now().Add(-time.Hour))
	var kubeconfig, server, ca string
	env := newUpstreamEnv(t, nil, func(s, c string) *v1alpha1.Upstream {
		server, ca = s, c
		kubeconfig = writeKubeconfig(t, filepath.Join(dir, "kubeconfig"), s, c, "    tokenFile: token")
		return &v1alpha1.Upstream{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: kubeconfig}}
	})
	authorization := func() string {
		t.Helper()
		resp, body := env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		return env.up.last().Header.Get("Authorization")
	}
	if got := authorization(); got != "Bearer file-token-1" {
		t.Fatalf("Authorization %q, want the kubeconfig's token file (relative to the kubeconfig)", got)
	}

	writeFile(t, token, "file-token-2", time.Now())
	env.clock.Step(3 * time.Second)
	if got := authorization(); got != "Bearer file-token-2" {
		t.Fatalf("after the token file changed, Authorization %q", got)
	}

	// A broken kubeconfig is not taken; the last good one stays.
	if err := os.WriteFile(kubeconfig, []byte("clusters: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	env.clock.Step(3 * time.Second)
	if got := authorization(); got != "Bearer file-token-2" {
		t.Fatalf("with a broken kubeconfig, Authorization %q, want the last good credential", got)
	}

	writeKubeconfig(t, kubeconfig, server, ca, "    token: inline-token")
	env.clock.Step(3 * time.Second)
	if got := authorization(); got != "Bearer inline-token" {
		t.Fatalf("after the kubeconfig changed, Authorization %q", got)
	}
}

func TestInClusterUsesThePodsServiceAccount(t *testing.T) {
	dir := t.TempDir()
	env := newUpstreamEnv(t, nil, func(server, ca string) *v1alpha1.Upstream {
		u, err := url.Parse(server)
		if err != nil {
			t.Fatal(err)
		}
		caPEM, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "ca.crt"), string(caPEM), time.Now())
		writeFile(t, filepath.Join(dir, "token"), "pod-token-1", time.Now().Add(-time.Hour))
		t.Setenv("KUBERNETES_SERVICE_HOST", u.Hostname())
		t.Setenv("KUBERNETES_SERVICE_PORT", u.Port())
		t.Setenv(upstreamconfig.ServiceAccountDirEnv, dir)
		return &v1alpha1.Upstream{InCluster: true}
	})
	env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	if got := env.up.last().Header.Get("Authorization"); got != "Bearer pod-token-1" {
		t.Fatalf("Authorization %q, want the pod's token", got)
	}
	// The kubelet rotates the projected token.
	writeFile(t, filepath.Join(dir, "token"), "pod-token-2", time.Now())
	env.clock.Step(3 * time.Second)
	env.do(t, env.front.Client(), "GET", "/clusters/c1/api", bearer("alice-token"))
	if got := env.up.last().Header.Get("Authorization"); got != "Bearer pod-token-2" {
		t.Fatalf("after rotation, Authorization %q", got)
	}
}

func TestInClusterOutsideAPodIsAClearError(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := New([]v1alpha1.Cluster{{Name: "c1", Upstream: &v1alpha1.Upstream{InCluster: true}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), `cluster "c1": upstream.inCluster: not running in a Kubernetes pod`) {
		t.Fatalf("error %v", err)
	}
}

func TestUpstreamSameAsComparesTheKubeconfig(t *testing.T) {
	u := &upstream{spec: v1alpha1.Upstream{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: "/a", Context: "x"}}}
	if !u.sameAs(&v1alpha1.Upstream{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: "/a", Context: "x"}}) {
		t.Error("an equal kubeconfig (another pointer) is not the same upstream")
	}
	for _, other := range []*v1alpha1.Upstream{
		{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: "/a", Context: "y"}},
		{Kubeconfig: &v1alpha1.UpstreamKubeconfig{Path: "/b", Context: "x"}},
		{InCluster: true},
		nil,
	} {
		if u.sameAs(other) {
			t.Errorf("%+v is taken for the same upstream", other)
		}
	}
}
