//go:build demo

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestDemo is `make demo`: a local control plane (etcd, kube-apiserver in
// webhook mode), Dex and Portcullis with its login portal, left running until
// Ctrl-C, with a kubeconfig that uses the portcullis CLI as kubectl's exec
// plugin. It logs alice in once through Dex (playing the browser, as the
// tests do), so kubectl works at once; the printed commands show the rest.
// It is built only with -tags demo.
func TestDemo(t *testing.T) {
	s := startLoginStack(t, true)
	cacheDir := filepath.Join(s.dir, "cli-cache")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := s.kubectl(t, cacheDir, true, "get", "ns")
	if err != nil {
		t.Fatalf("the demo's first kubectl (logging alice in through Dex) failed: %v\n%s\n%s", err, out, stderr)
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
  kubectl get ns                     # runs 'portcullis exec-credential': alice, group devs (mapped by email)
  portcullis whoami --server %s --certificate-authority %s
  portcullis logout --server %s --certificate-authority %s   # kubectl now fails and says to log in again
  portcullis login --server %s --cluster %s --device --certificate-authority %s
                                     # headless login: open the printed URL in a browser, log in at Dex

Press Ctrl-C to stop everything.
==========================================================
`, s.api.URL, s.portcullis.URL, s.portcullis.URL, s.dex.IssuerURL, s.dir,
		cliDir, s.kubeconfig, cacheDir, s.portcullis.URL, s.portcullis.CACertFile(), s.portcullis.URL, s.portcullis.CACertFile(), s.portcullis.URL, loginCluster, s.portcullis.CACertFile())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
