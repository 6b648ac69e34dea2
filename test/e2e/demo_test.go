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

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestDemo is `make demo`: a local control plane (etcd, kube-apiserver in
// webhook mode), Dex and Portcullis, left running until Ctrl-C, with what to
// type printed. It is built only with -tags demo.
func TestDemo(t *testing.T) {
	s := startWebhookStack(t)
	api := framework.StartAPIServer(t, framework.APIServerOptions{
		PKI: s.pki, WebhookKubeconfig: s.webhookKubeconfig(t), WebhookVersion: "v1", WebhookCacheTTL: "1s",
	})
	admin := api.AdminKubeconfig()
	for _, args := range [][]string{
		{"create", "clusterrole", "demo-reader", "--verb=get,list,watch", "--resource=namespaces,configmaps,pods"},
		{"create", "clusterrolebinding", "devs-read", "--clusterrole=demo-reader", "--group=devs"},
		{"create", "clusterrolebinding", "ops-read", "--clusterrole=demo-reader", "--group=ops"},
	} {
		if _, stderr, err := framework.Kubectl(t, admin, args...); err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, stderr)
		}
	}
	idToken, err := s.dex.IDToken(context.Background(), "alice@example.com", "alice-password", s.dex.ClientID, s.dex.ClientSecret, []string{"openid", "email", "profile"})
	if err != nil {
		t.Fatal(err)
	}
	dir := framework.WorkDir(t)
	kubeconfig := filepath.Join(dir, "demo.kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["demo"] = &clientcmdapi.Cluster{Server: api.URL, CertificateAuthority: api.CAFile}
	for name, tok := range map[string]string{"carol-minted": s.minted["carol"], "alice-dex": idToken} {
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: "demo", AuthInfo: name}
	}
	kc.CurrentContext = "alice-dex"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	fmt.Printf(`
==================== Portcullis demo ====================
kube-apiserver   %s  (webhook mode: it asks Portcullis about every token)
Portcullis       %s
Dex (the IdP)    %s   users alice@example.com / alice-password, bob@example.com / bob-password
Logs and config  %s

Try:
  export KUBECONFIG=%s
  kubectl auth whoami                          # alice@example.com, group devs from the operator's mapping
  kubectl get ns                               # allowed: RBAC binds group devs
  kubectl --context carol-minted auth whoami   # carol, a token minted offline by 'portcullis-server mint'
  curl --cacert %s %s/.well-known/openid-configuration
  tail -f %s                                   # Portcullis's audit log: every review, no tokens

Press Ctrl-C to stop everything.
==========================================================
`, api.URL, s.portcullis.URL, s.dex.IssuerURL, dir, kubeconfig, s.portcullis.CACertFile(), s.portcullis.URL, s.auditLog)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
