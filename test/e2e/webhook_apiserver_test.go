package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestWebhookMode_APIServerMakesTheDownloadedKubeconfigComplete: once a
// webhook-mode cluster's configuration names its API server
// (clusters[].apiServer, applied by a configuration reload), the portal's
// kubeconfig download works as-is with kubectl (the portcullis CLI on PATH
// logs in through Dex), and `portcullis kubeconfig` needs no --api-server.
func TestWebhookMode_APIServerMakesTheDownloadedKubeconfigComplete(t *testing.T) {
	s := startLoginStack(t, true)
	client := s.portcullis.HTTPClient()

	// Before: no kubeconfig to download for c1.
	if resp, err := client.Get(s.portcullis.URL + "/portal/kubeconfig?cluster=" + loginCluster); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("kubeconfig download without apiServer: %d, want 404", resp.StatusCode)
		}
	}

	config, err := os.ReadFile(s.portcullis.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	withAPIServer := strings.Replace(string(config), "- name: "+loginCluster+"\n",
		"- name: "+loginCluster+"\n  apiServer:\n    url: "+s.api.URL+"\n    certificateAuthorityFile: "+s.api.CAFile+"\n", 1)
	if withAPIServer == string(config) {
		t.Fatalf("cannot find cluster %s in:\n%s", loginCluster, config)
	}
	if err := os.WriteFile(s.portcullis.ConfigPath, []byte(withAPIServer), 0o600); err != nil {
		t.Fatal(err)
	}

	// The reload (every 2 s) puts the API server into the clusters API.
	var info *portalapi.ClusterInfo
	waitFor(t, 15*time.Second, "the clusters API to name c1's API server", func() bool {
		resp, err := client.Get(s.portcullis.URL + portalapi.PathClusters)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var cr portalapi.ClustersResponse
		if json.NewDecoder(resp.Body).Decode(&cr) != nil {
			return false
		}
		for i := range cr.Clusters {
			if cr.Clusters[i].Name == loginCluster && cr.Clusters[i].Server != "" {
				info = &cr.Clusters[i]
				return true
			}
		}
		return false
	})
	caPEM, err := os.ReadFile(s.api.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode != "webhook" || info.Server != s.api.URL || string(info.CertificateAuthorityData) != string(caPEM) {
		t.Fatalf("clusters API: %+v", info)
	}

	resp, err := client.Get(s.portcullis.URL + "/portal/kubeconfig?cluster=" + loginCluster)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("kubeconfig download: %d %s", resp.StatusCode, body)
	}
	downloaded := filepath.Join(s.dir, "downloaded.kubeconfig")
	if err := os.WriteFile(downloaded, body, 0o600); err != nil {
		t.Fatal(err)
	}

	// kubectl with the file as downloaded; the portcullis CLI it runs is on
	// PATH, as the kubeconfig expects.
	cliDir := filepath.Dir(framework.PortcullisCLIBinary(t))
	if _, err := os.Stat(filepath.Join(cliDir, "portcullis")); err != nil {
		t.Fatalf("the CLI binary is not named portcullis: %v", err)
	}
	cache := s.newCacheDir(t)
	_, pty := framework.OpenPTY(t)
	env := append(s.env(t, cache, "alice@example.com:alice-password"), "PATH="+cliDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: downloaded, Env: env, Stdin: pty},
		"auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
	if err != nil || !strings.HasPrefix(out, "alice@example.com ") || !strings.Contains(out, "devs") {
		t.Fatalf("kubectl with the downloaded kubeconfig: %q %v\n%s", out, err, stderr)
	}
	if n := s.browserLogins(t); n != 1 {
		t.Errorf("%d browser logins, want 1", n)
	}

	// `portcullis kubeconfig` takes the API server from Portcullis too.
	written := filepath.Join(s.dir, "cli-written.kubeconfig")
	if out, err := s.cli(t, cache, nil, "kubeconfig", "--server", s.portcullis.URL, "--cluster", loginCluster,
		"--certificate-authority", s.portcullis.CACertFile(), "--kubeconfig", written); err != nil {
		t.Fatalf("portcullis kubeconfig without --api-server: %v\n%s", err, out)
	}
	out, stderr, err = framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: written, Env: s.env(t, cache, "alice@example.com:alice-password")}, "get", "ns", "default", "-o", "name")
	if err != nil || strings.TrimSpace(out) != "namespace/default" {
		t.Fatalf("kubectl with the kubeconfig portcullis kubeconfig wrote: %q %v\n%s", out, err, stderr)
	}
}
