package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/pkg/proxy/upstreamconfig"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// The upstream kubeconfig's exec credential plugin in these tests is this
// test binary with execPluginEnv set, as cloud plugins (aws eks get-token,
// gke-gcloud-auth-plugin) are: it asks the cluster for a short-lived token
// (a TokenRequest for the proxy's service account, bound to a Secret it
// creates), deletes the Secrets of the tokens it handed out before (so
// those tokens stop working, as an expired cloud token does), and prints an
// ExecCredential whose expirationTimestamp is execPluginLifetimeEnv from
// now, so client-go runs it again once that has passed. It writes each
// token to <dir>/token-<n> (n counts its runs) for the test to check.
const (
	execPluginEnv         = "PORTCULLIS_E2E_EXEC_PLUGIN"
	execPluginAdminEnv    = "PORTCULLIS_E2E_EXEC_PLUGIN_ADMIN_KUBECONFIG"
	execPluginDirEnv      = "PORTCULLIS_E2E_EXEC_PLUGIN_DIR"
	execPluginLifetimeEnv = "PORTCULLIS_E2E_EXEC_PLUGIN_LIFETIME"
)

func init() {
	if os.Getenv(execPluginEnv) != "1" {
		return
	}
	if err := runExecPlugin(); err != nil {
		fmt.Fprintf(os.Stderr, "exec plugin: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runExecPlugin() error {
	dir := os.Getenv(execPluginDirEnv)
	lifetime, err := time.ParseDuration(os.Getenv(execPluginLifetimeEnv))
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv(execPluginAdminEnv))
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	n := len(execPluginTokens(dir)) + 1
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	secret, err := cs.CoreV1().Secrets("portcullis").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("exec-plugin-%d", n), Labels: map[string]string{"portcullis-e2e": "exec-plugin"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	expiry := int64(600) // the shortest a TokenRequest gives
	tr, err := cs.CoreV1().ServiceAccounts("portcullis").CreateToken(ctx, "portcullis-proxy", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &expiry,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("token-%d", n)), []byte(tr.Status.Token), 0o600); err != nil {
		return err
	}
	for i := 1; i < n; i++ {
		err := cs.CoreV1().Secrets("portcullis").Delete(ctx, fmt.Sprintf("exec-plugin-%d", i), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"apiVersion": "client.authentication.k8s.io/v1",
		"kind":       "ExecCredential",
		"status": map[string]any{
			"token":               tr.Status.Token,
			"expirationTimestamp": time.Now().Add(lifetime).UTC().Format(time.RFC3339),
		},
	})
}

// execPluginTokens are the tokens the plugin handed out, in order.
func execPluginTokens(dir string) []string {
	matches, _ := filepath.Glob(filepath.Join(dir, "token-*"))
	sort.Slice(matches, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(matches[i]), "token-"))
		b, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(matches[j]), "token-"))
		return a < b
	})
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// tokenWorks reports whether kube-apiserver itself accepts a bearer token.
func tokenWorks(t *testing.T, api *framework.APIServer, token string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, api.URL+"/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := api.PKI.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusUnauthorized
}

// TestProxyMode_ManagedClusterCredentials fronts one real kube-apiserver
// under three cluster names, one per upstream credential a managed
// cluster's operator holds: a kubeconfig whose user is an exec credential
// plugin, a kubeconfig with a client certificate, and the in-cluster
// service account (files provided by the test).
func TestProxyMode_ManagedClusterCredentials(t *testing.T) {
	pki := framework.NewPKI(t)
	api := framework.StartAPIServer(t, framework.APIServerOptions{PKI: pki})
	admin := api.AdminKubeconfig()
	manifest := filepath.Join(framework.RepoRoot(t), "artifacts", "rbac", "proxy-clusterrole.yaml")
	if out, stderr, err := framework.Kubectl(t, admin, "apply", "-f", manifest); err != nil {
		t.Fatalf("applying %s: %v\n%s%s", manifest, err, out, stderr)
	}
	if out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: admin, Stdin: strings.NewReader(clusterRBAC)}, "apply", "-f", "-"); err != nil {
		t.Fatalf("applying the users' RBAC: %v\n%s%s", err, out, stderr)
	}
	// The client certificate's user gets the proxy's ClusterRole, as an
	// operator binds the identity their kubeconfig holds.
	if out, stderr, err := framework.Kubectl(t, admin, "create", "clusterrolebinding", "portcullis-proxy-cert", "--clusterrole=portcullis:proxy", "--user=portcullis-proxy-cert"); err != nil {
		t.Fatalf("binding the certificate's user: %v\n%s%s", err, out, stderr)
	}
	agent := framework.StartNodeAgent(t, api, "managed-node")
	agent.CreatePod("default", "p")

	dir := framework.WorkDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pluginDir := filepath.Join(dir, "exec-plugin")
	if err := os.MkdirAll(pluginDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const lifetime = 6 * time.Second
	execKubeconfig := filepath.Join(dir, "upstream-exec.kubeconfig")
	if err := framework.WriteKubeconfig(execKubeconfig, api.URL, api.CAFile, &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion:      "client.authentication.k8s.io/v1",
		Command:         self,
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		Env: []clientcmdapi.ExecEnvVar{
			{Name: execPluginEnv, Value: "1"},
			{Name: execPluginAdminEnv, Value: admin},
			{Name: execPluginDirEnv, Value: pluginDir},
			{Name: execPluginLifetimeEnv, Value: lifetime.String()},
		},
	}}); err != nil {
		t.Fatal(err)
	}
	cert := pki.IssueClient("portcullis-proxy-cert")
	certKubeconfig := filepath.Join(dir, "upstream-cert.kubeconfig")
	if err := framework.WriteKubeconfig(certKubeconfig, api.URL, api.CAFile, &clientcmdapi.AuthInfo{ClientCertificate: cert.CertFile, ClientKey: cert.KeyFile}); err != nil {
		t.Fatal(err)
	}

	// The pod's service-account directory, as the kubelet projects it: a
	// token bound to an object (here a Secret, so the test can end it) and
	// the cluster's CA.
	saDir := filepath.Join(dir, "serviceaccount")
	if err := os.MkdirAll(saDir, 0o700); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(api.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(saDir, "ca.crt"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(saDir, "namespace"), []byte("portcullis"), 0o600); err != nil {
		t.Fatal(err)
	}
	projectToken := func(secret string) string {
		t.Helper()
		if _, stderr, err := framework.Kubectl(t, admin, "create", "secret", "generic", secret, "-n", "portcullis"); err != nil {
			t.Fatalf("creating secret %s: %v: %s", secret, err, stderr)
		}
		tok, stderr, err := framework.Kubectl(t, admin, "create", "token", "portcullis-proxy", "-n", "portcullis", "--duration", "1h", "--bound-object-kind", "Secret", "--bound-object-name", secret)
		if err != nil {
			t.Fatalf("kubectl create token: %v: %s", err, stderr)
		}
		tok = strings.TrimSpace(tok)
		if err := os.WriteFile(filepath.Join(saDir, "token"), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	firstPodToken := projectToken("pod-token-1")

	port := framework.FreePort(t)
	config := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
clusters:
- name: exec
  access: {allUsers: true}
  upstream:
    kubeconfig: {path: %s}
- name: cert
  access: {allUsers: true}
  upstream:
    kubeconfig: {path: %s, context: e2e}
- name: incluster
  access: {allUsers: true}
  upstream:
    inCluster: true
`, port, filepath.Join(dir, "state.db"), execKubeconfig, certKubeconfig)
	configPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// Minted before the server starts: the embedded store is single-process.
	tokens := map[string]string{}
	for _, c := range []string{"exec", "cert", "incluster"} {
		tokens[c] = proxyMint(t, configPath, "--user", "alice", "--group", "devs", "--cluster", c, "--ttl", "1h", "--reason", "managed e2e")
	}
	p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: config, Port: port, Env: []string{
		"KUBERNETES_SERVICE_HOST=127.0.0.1",
		"KUBERNETES_SERVICE_PORT=" + strconv.Itoa(api.Port),
		upstreamconfig.ServiceAccountDirEnv + "=" + saDir,
	}})
	kubeconfigs := map[string]string{}
	for c, tok := range tokens {
		kubeconfigs[c] = filepath.Join(dir, "alice-"+c+".kubeconfig")
		if err := framework.WriteKubeconfig(kubeconfigs[c], p.URL+"/clusters/"+c, p.CACertFile(), &clientcmdapi.AuthInfo{Token: tok}); err != nil {
			t.Fatal(err)
		}
	}

	whoami := func(t *testing.T, cluster string) {
		t.Helper()
		out, stderr, err := framework.Kubectl(t, kubeconfigs[cluster], "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
		if err != nil || !strings.HasPrefix(out, "alice ") || !strings.Contains(out, "devs") {
			t.Fatalf("%s: kubectl auth whoami through the proxy: %q %v\n%s", cluster, out, err, stderr)
		}
		// kubectl --as: the proxy asks the cluster (a SubjectAccessReview
		// sent with the same credential) whether alice may be bob.
		out, stderr, err = framework.Kubectl(t, kubeconfigs[cluster], "--as=bob", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if err != nil || out != "bob" {
			t.Fatalf("%s: kubectl --as=bob auth whoami through the proxy: %q %v\n%s", cluster, out, err, stderr)
		}
	}
	configMaps := func(t *testing.T, cluster, name string) {
		t.Helper()
		if _, stderr, err := framework.Kubectl(t, kubeconfigs[cluster], "create", "configmap", name, "-n", "default", "--from-literal=k=v"); err != nil {
			t.Fatalf("%s: creating a config map as alice: %v\n%s", cluster, err, stderr)
		}
		if out, stderr, err := framework.Kubectl(t, kubeconfigs[cluster], "get", "configmap", name, "-n", "default", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
			t.Fatalf("%s: reading it back: %q %v\n%s", cluster, out, err, stderr)
		}
	}

	t.Run("a kubeconfig with a client certificate", func(t *testing.T) {
		whoami(t, "cert")
		configMaps(t, "cert", "via-cert")
		if out, stderr, err := framework.Kubectl(t, kubeconfigs["cert"], "exec", "p", "--", "echo", "over", "a", "certificate"); err != nil || strings.TrimSpace(out) != "over a certificate" {
			t.Fatalf("exec: %q %v\n%s", out, err, stderr)
		}
	})

	t.Run("in-cluster: the pod's service account, with a rotated token", func(t *testing.T) {
		whoami(t, "incluster")
		configMaps(t, "incluster", "via-incluster")
		if out, stderr, err := framework.Kubectl(t, kubeconfigs["incluster"], "exec", "p", "--", "echo", "in", "cluster"); err != nil || strings.TrimSpace(out) != "in cluster" {
			t.Fatalf("exec: %q %v\n%s", out, err, stderr)
		}
		// The kubelet rotates the projected token; the old one stops
		// working (its Secret goes, as a pod's does).
		projectToken("pod-token-2")
		if _, stderr, err := framework.Kubectl(t, admin, "delete", "secret", "pod-token-1", "-n", "portcullis"); err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		waitFor(t, 30*time.Second, "the first pod token to stop working", func() bool { return !tokenWorks(t, api, firstPodToken) })
		// Within the token file's recheck interval (2 s) the proxy uses
		// the new one.
		waitFor(t, 10*time.Second, "kubectl through the proxy with the rotated token", func() bool {
			_, _, err := framework.Kubectl(t, kubeconfigs["incluster"], "get", "configmap", "via-incluster", "-n", "default")
			return err == nil
		})
	})

	t.Run("a kubeconfig with an exec plugin whose credential expires, with streams open across the renewal", func(t *testing.T) {
		start := time.Now()
		whoami(t, "exec")
		configMaps(t, "exec", "via-exec")
		if n := len(execPluginTokens(pluginDir)); n != 1 {
			t.Fatalf("the plugin ran %d times for the first requests, want once (client-go caches its credential)", n)
		}
		// Streams opened with the first credential.
		logs := framework.StartKubectl(t, framework.KubectlOptions{Kubeconfig: kubeconfigs["exec"]}, "logs", "-f", "p")
		defer logs.Stop()
		logs.WaitLine(t, 20*time.Second, func(l string) bool { return l == "log line 3" })
		watch := framework.StartKubectl(t, framework.KubectlOptions{Kubeconfig: kubeconfigs["exec"]}, "get", "configmaps", "-n", "default", "--watch", "--output-watch-events", "-o", "name")
		defer watch.Stop()
		watch.WaitLine(t, 20*time.Second, func(l string) bool { return strings.Contains(l, "configmap/via-exec") })
		attach := framework.StartKubectl(t, framework.KubectlOptions{Kubeconfig: kubeconfigs["exec"]}, "attach", "-i", "p")
		defer attach.Stop()
		attach.WaitLine(t, 20*time.Second, func(l string) bool { return strings.HasPrefix(l, "attached to") })
		fmt.Fprintln(attach.Stdin, "before the renewal")
		attach.WaitLine(t, 5*time.Second, func(l string) bool { return l == "before the renewal" })

		// Once the credential's expirationTimestamp has passed, the next
		// request runs the plugin again, which ends the first token.
		time.Sleep(time.Until(start.Add(lifetime + time.Second)))
		configMaps(t, "exec", "via-exec-renewed")
		tokens := execPluginTokens(pluginDir)
		if len(tokens) < 2 {
			t.Fatalf("the plugin ran %d times; client-go should have run it again after its credential expired", len(tokens))
		}
		waitFor(t, 30*time.Second, "the plugin's first token to stop working", func() bool { return !tokenWorks(t, api, tokens[0]) })
		t.Logf("the plugin ran %d times in %v", len(tokens), time.Since(start).Round(time.Millisecond))

		// New requests, ordinary and upgraded, use the renewed credential.
		whoami(t, "exec")
		if out, stderr, err := framework.Kubectl(t, kubeconfigs["exec"], "exec", "p", "--", "echo", "after", "renewal"); err != nil || strings.TrimSpace(out) != "after renewal" {
			t.Fatalf("exec after the renewal: %q %v\n%s", out, err, stderr)
		}
		// The streams opened with the first credential keep going.
		last := 0
		for drained := false; !drained; {
			select {
			case l := <-logs.Lines:
				if n, err := strconv.Atoi(strings.TrimPrefix(l, "log line ")); err == nil {
					last = n
				}
			default:
				drained = true
			}
		}
		logs.WaitLine(t, 10*time.Second, func(l string) bool {
			n, err := strconv.Atoi(strings.TrimPrefix(l, "log line "))
			return err == nil && n >= last+3
		})
		if _, stderr, err := framework.Kubectl(t, kubeconfigs["exec"], "create", "configmap", "seen-by-the-old-watch", "-n", "default"); err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		watch.WaitLine(t, 10*time.Second, func(l string) bool { return strings.Contains(l, "configmap/seen-by-the-old-watch") })
		fmt.Fprintln(attach.Stdin, "after the renewal")
		attach.WaitLine(t, 5*time.Second, func(l string) bool { return l == "after the renewal" })

		pf := framework.StartKubectl(t, framework.KubectlOptions{Kubeconfig: kubeconfigs["exec"]}, "port-forward", "pod/p", ":8080")
		defer pf.Stop()
		fwd := pf.WaitLine(t, 20*time.Second, func(l string) bool { return strings.HasPrefix(l, "Forwarding from 127.0.0.1:") })
		m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(fwd)
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+m[1], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(conn, "ping through port-forward\n")
		if got, err := bufio.NewReader(conn).ReadString('\n'); err != nil || got != "ping through port-forward\n" {
			t.Fatalf("port-forward after the renewal: %q %v; stderr: %s", got, err, pf.Stderr())
		}
	})
}
