package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

func singleConfig(port int, storeYAML, clientCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
%s
clusters:
- name: %s
  access:
    groups: [devs]
webhook:
  clientCAFile: %s
`, port, storeYAML, haWebhookCluster, clientCA)
}

// A break-glass mint against a running server on the embedded store goes
// through the server (which audits it), and copy-store then moves that
// server's state to the kubernetes store with the token still valid.
func TestBreakGlassMintThroughARunningBoltServerThenMoveToKubernetes(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	dir := framework.WorkDir(t)
	statePath := filepath.Join(dir, "state.db")
	auditLog := filepath.Join(dir, "server-audit.log")
	policy := filepath.Join(dir, "audit-policy.yaml")
	must(t, os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600))
	port := framework.FreePort(t)
	serving := pki.IssueServing("127.0.0.1", "localhost")
	tlsArgs := []string{"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile}
	boltCfg := singleConfig(port, "  type: bolt\n  path: "+statePath, pki.ClientCA.CertFile)
	srv := framework.StartPortcullis(t, framework.PortcullisOptions{
		Name: "bolt-server", ConfigYAML: boltCfg, Port: port,
		ExtraArgs: append(tlsArgs, "--audit-policy-file="+policy, "--audit-log-path="+auditLog),
	})
	client := pki.IssueClient("kube-apiserver-webhook-client")
	cert, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	must(t, err)
	hs := &haStack{review: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: framework.CertPool(pki.CA), Certificates: []tls.Certificate{cert},
	}}}}

	// No audit flags: the running server audits.
	out, err := exec.Command(framework.PortcullisServerBinary(t), "mint", "--config", srv.ConfigPath,
		"--user", "oncall@example.com", "--group", "devs", "--cluster", haWebhookCluster, "--ttl", "10m", "--reason", "INC-9: IdP down").CombinedOutput()
	if err != nil {
		t.Fatalf("mint against the running server: %v\n%s", err, out)
	}
	tok := strings.TrimSpace(string(out))
	if ok, err := hs.reviewAt(srv.URL, tok); err != nil || !ok {
		t.Fatalf("the server refuses the token it minted: %v, %v", ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(auditLog)
		if strings.Contains(string(b), "INC-9: IdP down") && strings.Contains(string(b), "portcullis-server mint") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's audit log has no event for the mint:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Move to the kubernetes store, as docs/operations.md says.
	must(t, srv.Stop())
	api := framework.StartAPIServer(t, framework.APIServerOptions{PKI: pki})
	sn := &storeNamespaces{api: api}
	ns := sn.new(t)
	sn.mu.Lock()
	storeToken := sn.cfg[ns].BearerToken
	sn.mu.Unlock()
	port2 := framework.FreePort(t)
	kubeCfg := singleConfig(port2, fmt.Sprintf("  type: kubernetes\n  kubernetes:\n    namespace: %s\n    kubeconfig: %s", ns, api.KubeconfigFor(storeToken)), pki.ClientCA.CertFile)
	kubeCfg = strings.Replace(kubeCfg, fmt.Sprintf("https://127.0.0.1:%d", port2), fmt.Sprintf("https://127.0.0.1:%d", port), 1) // same issuer
	cfgPath := filepath.Join(dir, "kubernetes-config.yaml")
	must(t, os.WriteFile(cfgPath, []byte(kubeCfg), 0o600))
	for range 2 { // idempotent
		out, err = exec.Command(framework.PortcullisServerBinary(t), "copy-store", "--from-bolt", statePath, "--config", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("copy-store: %v\n%s", err, out)
		}
		t.Logf("copy-store: %s", strings.TrimSpace(string(out)))
	}
	moved := framework.StartPortcullis(t, framework.PortcullisOptions{Name: "kubernetes-server", ConfigYAML: kubeCfg, Port: port2, ExtraArgs: tlsArgs})
	if ok, err := hs.reviewAt(moved.URL, tok); err != nil || !ok {
		t.Fatalf("after the move the token minted before it is refused: %v, %v", ok, err)
	}
}
