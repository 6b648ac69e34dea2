package upstreamconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/testkit"
)

func TestInClusterReadsTheServiceAccountDirectory(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "cluster CA")
	for name, data := range map[string][]byte{"token": []byte("pod-token"), "ca.crt": ca.CertPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(ServiceAccountDirEnv, dir)
	t.Setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	cfg, err := InCluster()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://[fd00::1]:443" || cfg.BearerTokenFile != filepath.Join(dir, "token") || cfg.CAFile != filepath.Join(dir, "ca.crt") {
		t.Errorf("config: host %s, token file %s, CA %s", cfg.Host, cfg.BearerTokenFile, cfg.CAFile)
	}

	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := InCluster(); err == nil || !strings.Contains(err.Error(), "no readable CA") {
		t.Errorf("without a CA: %v", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := InCluster(); err == nil || !strings.Contains(err.Error(), "not running in a Kubernetes pod") {
		t.Errorf("outside a pod: %v", err)
	}
}

func TestFilesListsWhatTheKubeconfigNames(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "cluster CA")
	client := ca.IssueClient("portcullis")
	kc := filepath.Join(dir, "kubeconfig")
	data := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://k.example.com', certificate-authority: " + ca.CertFile +
		"}\nusers:\n- name: u\n  user: {client-certificate: " + client.CertFile + ", client-key: " + client.KeyFile +
		"}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
	if err := os.WriteFile(kc, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := FromKubeconfig(kc, "")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(Files(kc, cfg), " ")
	if want := strings.Join([]string{kc, ca.CertFile, client.CertFile, client.KeyFile}, " "); got != want {
		t.Errorf("files %s\nwant  %s", got, want)
	}
}
