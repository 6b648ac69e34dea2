package portal_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/portalapi"
)

func TestWebhookClusterWithAPIServerGetsACompleteKubeconfig(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "kube-ca.crt")
	const caPEM = "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG...\n-----END CERTIFICATE-----\n"
	if err := os.WriteFile(caFile, []byte(caPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	e := portaltest.New(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.Clusters[0].APIServer = &v1alpha1.APIServer{URL: "https://kube.example.com:6443", CertificateAuthorityFile: caFile}
	}})

	// The clusters API, which `portcullis kubeconfig` reads, names the API
	// server and its CA.
	p := get(t, e.Client(), e.URL+portalapi.PathClusters)
	if p.status != http.StatusOK {
		t.Fatalf("clusters: %d %s", p.status, p.body)
	}
	var resp portalapi.ClustersResponse
	if err := json.Unmarshal([]byte(p.body), &resp); err != nil {
		t.Fatal(err)
	}
	var c1, c2 *portalapi.ClusterInfo
	for i := range resp.Clusters {
		switch resp.Clusters[i].Name {
		case "c1":
			c1 = &resp.Clusters[i]
		case "c2":
			c2 = &resp.Clusters[i]
		}
	}
	if c1 == nil || c1.Mode != "webhook" || c1.Server != "https://kube.example.com:6443" || string(c1.CertificateAuthorityData) != caPEM {
		t.Errorf("c1 = %+v", c1)
	}
	if c2 == nil || c2.Server != "" || c2.CertificateAuthorityData != nil {
		t.Errorf("c2 (no apiServer) = %+v", c2)
	}

	// The download works without a session and holds the server and CA.
	kc := get(t, e.Client(), e.URL+"/portal/kubeconfig?cluster=c1")
	if kc.status != http.StatusOK {
		t.Fatalf("kubeconfig: %d %s", kc.status, kc.body)
	}
	cfg, err := clientcmd.Load([]byte(kc.body))
	if err != nil {
		t.Fatal(err)
	}
	cl := cfg.Clusters["c1"]
	if cl == nil || cl.Server != "https://kube.example.com:6443" || string(cl.CertificateAuthorityData) != caPEM {
		t.Fatalf("cluster entry %+v", cl)
	}
	if u := cfg.AuthInfos["c1"]; u == nil || u.Exec == nil || u.Token != "" {
		t.Fatalf("user entry %+v: want the exec plugin and no credential", u)
	}
	if kc := get(t, e.Client(), e.URL+"/portal/kubeconfig?cluster=c2"); kc.status != http.StatusNotFound || !strings.Contains(kc.body, "--api-server") {
		t.Errorf("c2 without apiServer: %d, want 404 with the command to run", kc.status)
	}
}
