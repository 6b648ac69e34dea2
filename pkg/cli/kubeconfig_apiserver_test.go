package cli

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

func TestKubeconfig_WebhookClusterTakesTheAPIServerPortcullisKnows(t *testing.T) {
	kubeCA := filepath.Join(t.TempDir(), "kube-ca.crt")
	const kubeCAPEM = "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG...\n-----END CERTIFICATE-----\n"
	if err := os.WriteFile(kubeCA, []byte(kubeCAPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.Clusters[0].APIServer = &v1alpha1.APIServer{URL: "https://kube.example.com:6443", CertificateAuthorityFile: kubeCA}
	}})
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, h.env.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config")
	d, _, _ := h.deps(t)
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c1", "--kubeconfig", path, "--certificate-authority", caFile); err != nil {
		t.Fatalf("kubeconfig of a webhook cluster whose API server Portcullis knows, without --api-server: %v", err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Clusters["c1"]; c == nil || c.Server != "https://kube.example.com:6443" || string(c.CertificateAuthorityData) != kubeCAPEM {
		t.Fatalf("c1 = %+v", c)
	}
	// --api-server still wins.
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c1", "--kubeconfig", path, "--certificate-authority", caFile, "--api-server", "https://other.example.com"); err != nil {
		t.Fatal(err)
	}
	if cfg, err = clientcmd.LoadFromFile(path); err != nil {
		t.Fatal(err)
	}
	if c := cfg.Clusters["c1"]; c == nil || c.Server != "https://other.example.com" {
		t.Fatalf("with --api-server, c1 = %+v", c)
	}
}
