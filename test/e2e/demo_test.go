//go:build demo

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestDemo is `make demo`: a local control plane (etcd, kube-apiserver in
// webhook mode), Dex and Portcullis with its login portal, left running until
// Ctrl-C, with a kubeconfig that uses the portcullis CLI as kubectl's exec
// plugin. It logs alice in once through Dex (playing the browser, as the
// tests do), so kubectl works at once; the printed commands show the rest.
// It is built only with -tags demo.
//
// Ctrl-C (SIGINT) or SIGTERM is how the demo ends, not a failure: the test
// returns and its cleanups stop every component. The signals are caught from
// the start, so an interrupt during set-up ends it at the next step, also
// without a failure.
func TestDemo(t *testing.T) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	interrupted := func() bool {
		if ctx.Err() != nil {
			t.Log("interrupted during set-up: stopping everything")
			return true
		}
		return false
	}
	s := startLoginStack(t, true)
	if interrupted() {
		return
	}
	cacheDir := filepath.Join(s.dir, "cli-cache")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := s.kubectl(t, cacheDir, true, "get", "ns")
	if err != nil {
		t.Fatalf("the demo's first kubectl (logging alice in through Dex) failed: %v\n%s\n%s", err, out, stderr)
	}
	if interrupted() {
		return
	}
	// Proxy mode too: the same kube-apiserver, reached through Portcullis's
	// impersonating proxy as cluster "c1-proxy", added by a live config
	// reload with the proxy's service account and least-privilege RBAC.
	admin := s.api.AdminKubeconfig()
	rbac, err := os.ReadFile(filepath.Join(framework.RepoRoot(t), "artifacts/rbac/proxy-clusterrole.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: admin, Stdin: strings.NewReader(string(rbac))}, "apply", "-f", "-"); err != nil {
		t.Fatalf("applying the proxy's RBAC: %v: %s", err, stderr)
	}
	saToken, stderr, err := framework.Kubectl(t, admin, "create", "token", "portcullis-proxy", "-n", "portcullis", "--duration", "24h")
	if err != nil {
		t.Fatalf("kubectl create token: %v: %s", err, stderr)
	}
	tokenFile := filepath.Join(s.dir, "proxy-sa.token")
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(saToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(s.portcullis.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	withProxy := strings.Replace(string(cfg), "clusters:\n", fmt.Sprintf(`clusters:
- name: c1-proxy
  access:
    groups: [devs]
  upstream:
    server: %s
    certificateAuthorityFile: %s
    tokenFile: %s
`, s.api.URL, s.api.CAFile, tokenFile), 1)
	if err := os.WriteFile(s.portcullis.ConfigPath, []byte(withProxy), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.portcullis.Process.WaitUntil(context.Background(), 30*time.Second, "the proxy cluster to be loaded", func(context.Context) error {
		if !strings.Contains(s.portcullis.Process.Log(), "Configuration reloaded") {
			return fmt.Errorf("not yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := s.cli(t, cacheDir, nil, "kubeconfig", "--server", s.portcullis.URL, "--cluster", "c1-proxy",
		"--certificate-authority", s.portcullis.CACertFile(), "--kubeconfig", s.kubeconfig); err != nil {
		t.Fatalf("portcullis kubeconfig for the proxied cluster: %v\n%s", err, out)
	}
	if out, stderr, err := s.kubectl(t, cacheDir, true, "--context", "c1-proxy", "get", "ns"); err != nil {
		t.Fatalf("kubectl through the proxy: %v\n%s\n%s", err, out, stderr)
	}
	if interrupted() {
		return
	}
	cliDir := filepath.Dir(framework.PortcullisCLIBinary(t))
	fmt.Printf(`
==================== Portcullis demo ====================
kube-apiserver   %s  (webhook mode: it asks Portcullis about every token)
Portcullis       %s  (login portal: %s/login)
Dex (the IdP)    %s   users alice@example.com / alice-password, bob@example.com / bob-password
Logs and config  %s

alice is already logged in (the demo played her browser once). Try:

  export PATH=%s:$PATH KUBECONFIG=%s PORTCULLIS_CACHE_DIR=%s
  kubectl get ns                     # webhook mode, via 'portcullis exec-credential': alice, group devs (mapped by email)
  kubectl --context c1-proxy auth whoami   # proxy mode: the same cluster through Portcullis's impersonating proxy
  portcullis whoami --server %s --certificate-authority %s
  portcullis logout --server %s --certificate-authority %s   # kubectl now fails and says to log in again
  portcullis login --server %s --cluster %s --device --certificate-authority %s
                                     # headless login: open the printed URL in a browser, log in at Dex

Press Ctrl-C to stop everything.
==========================================================
`, s.api.URL, s.portcullis.URL, s.portcullis.URL, s.dex.IssuerURL, s.dir,
		cliDir, s.kubeconfig, cacheDir, s.portcullis.URL, s.portcullis.CACertFile(), s.portcullis.URL, s.portcullis.CACertFile(), s.portcullis.URL, loginCluster, s.portcullis.CACertFile())
	<-ctx.Done()
	fmt.Println("\nStopping the demo (Ctrl-C): kube-apiserver, etcd, Dex and Portcullis...")
}
