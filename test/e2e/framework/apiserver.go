package framework

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// StaticToken is a line of kube-apiserver's --token-auth-file.
type StaticToken struct {
	Token  string
	User   string
	UID    string
	Groups []string
}

// APIServerOptions configures StartAPIServer. The zero value runs an
// RBAC-authorizing kube-apiserver with an admin token (group system:masters)
// on a fresh etcd and PKI.
type APIServerOptions struct {
	// PKI to use; a new one when nil. Share it to have other components
	// (Dex, Portcullis, test kubelets) trusted by the same CA.
	PKI *PKI
	// Etcd to use; a new one when nil.
	Etcd *Etcd

	// WebhookKubeconfig, when set, is the content of the file passed as
	// --authentication-token-webhook-config-file. Its clusters[].cluster.server
	// is POSTed to exactly as written (path included).
	WebhookKubeconfig string
	// WebhookVersion is --authentication-token-webhook-version: "v1" or
	// "v1beta1" (kube-apiserver's default when empty).
	WebhookVersion string
	// WebhookCacheTTL is --authentication-token-webhook-cache-ttl, e.g.
	// "10s"; "0s" disables the cache; empty keeps the default (2m).
	WebhookCacheTTL string

	// AuthenticationConfig, when set, is the content of the
	// --authentication-config file (AuthenticationConfiguration).
	AuthenticationConfig string

	// AuditPolicy, when set, is the content of --audit-policy-file; events go
	// to APIServer.AuditLogPath as JSON lines.
	AuditPolicy string
	// AuditWebhookKubeconfig, when set (with AuditPolicy), is the content of
	// --audit-webhook-config-file (batch mode; override with ExtraFlags).
	AuditWebhookKubeconfig string

	// Tokens are extra --token-auth-file entries besides the admin token.
	Tokens []StaticToken

	// ExtraFlags are appended last, so they override the flags above.
	ExtraFlags []string
}

// APIServer is a running kube-apiserver.
type APIServer struct {
	URL          string // https://127.0.0.1:<port>
	Port         int
	CAFile       string // the CA of its serving certificate
	AdminToken   string // user "admin", groups system:masters
	AuditLogPath string // set when APIServerOptions.AuditPolicy is
	PKI          *PKI
	Etcd         *Etcd
	Process      *Process

	t               testing.TB
	mu              sync.Mutex
	kubeconfigs     map[string]string
	adminClientset  kubernetes.Interface
	kubeconfigIndex int
}

// StartAPIServer starts kube-apiserver with the flags of TEST-INFRA.md and
// waits until /readyz answers 200 and the default namespace exists.
func StartAPIServer(t testing.TB, opts APIServerOptions) *APIServer {
	t.Helper()
	bin := ToolBinary(t, "kube-apiserver")
	if opts.PKI == nil {
		opts.PKI = NewPKI(t)
	}
	if opts.Etcd == nil {
		opts.Etcd = StartEtcd(t)
	}
	p := opts.PKI
	port := FreePort(t)
	a := &APIServer{
		URL:         "https://" + hostPort(port),
		Port:        port,
		CAFile:      p.CA.CertFile,
		AdminToken:  randomHex(t, 16),
		PKI:         p,
		Etcd:        opts.Etcd,
		t:           t,
		kubeconfigs: map[string]string{},
	}

	var tokens strings.Builder
	all := append([]StaticToken{{Token: a.AdminToken, User: "admin", UID: "admin-uid", Groups: []string{"system:masters"}}}, opts.Tokens...)
	for _, tok := range all {
		fmt.Fprintf(&tokens, "%s,%s,%s,%q\n", tok.Token, tok.User, tok.UID, strings.Join(tok.Groups, ","))
	}
	tokenFile := writeFile(t, "kube-apiserver/tokens.csv", []byte(tokens.String()), 0o600)

	args := []string{
		"--etcd-servers=" + opts.Etcd.URL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + p.APIServer.CertFile,
		"--tls-private-key-file=" + p.APIServer.KeyFile,
		"--client-ca-file=" + p.ClientCA.CertFile,
		"--authorization-mode=RBAC",
		"--token-auth-file=" + tokenFile,
		"--service-account-key-file=" + p.SAPublicKeyFile,
		"--service-account-signing-key-file=" + p.SAKeyFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--requestheader-client-ca-file=" + p.FrontProxyCA.CertFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-uid-headers=X-Remote-Uid",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.FrontProxyClient.CertFile,
		"--proxy-client-key-file=" + p.FrontProxyClient.KeyFile,
		"--enable-aggregator-routing=false",
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority=" + p.CA.CertFile,
		"--kubelet-client-certificate=" + p.KubeletClient.CertFile,
		"--kubelet-client-key=" + p.KubeletClient.KeyFile,
	}
	if opts.WebhookKubeconfig != "" {
		f := writeFile(t, "kube-apiserver/authn-webhook.kubeconfig", []byte(opts.WebhookKubeconfig), 0o600)
		args = append(args, "--authentication-token-webhook-config-file="+f)
		if opts.WebhookVersion != "" {
			args = append(args, "--authentication-token-webhook-version="+opts.WebhookVersion)
		}
		if opts.WebhookCacheTTL != "" {
			args = append(args, "--authentication-token-webhook-cache-ttl="+opts.WebhookCacheTTL)
		}
	} else if opts.WebhookVersion != "" || opts.WebhookCacheTTL != "" {
		t.Fatal("APIServerOptions: WebhookVersion/WebhookCacheTTL need WebhookKubeconfig")
	}
	if opts.AuthenticationConfig != "" {
		f := writeFile(t, "kube-apiserver/authentication-config.yaml", []byte(opts.AuthenticationConfig), 0o600)
		args = append(args, "--authentication-config="+f)
	}
	if opts.AuditPolicy != "" {
		f := writeFile(t, "kube-apiserver/audit-policy.yaml", []byte(opts.AuditPolicy), 0o600)
		a.AuditLogPath = WorkDir(t) + "/kube-apiserver/audit.log"
		args = append(args, "--audit-policy-file="+f, "--audit-log-path="+a.AuditLogPath, "--audit-log-format=json")
		if opts.AuditWebhookKubeconfig != "" {
			wf := writeFile(t, "kube-apiserver/audit-webhook.kubeconfig", []byte(opts.AuditWebhookKubeconfig), 0o600)
			args = append(args, "--audit-webhook-config-file="+wf)
		}
	} else if opts.AuditWebhookKubeconfig != "" {
		t.Fatal("APIServerOptions: AuditWebhookKubeconfig needs AuditPolicy")
	}
	args = append(args, opts.ExtraFlags...)

	a.Process = StartProcess(t, ProcessSpec{
		Name:        "kube-apiserver",
		Path:        bin,
		Args:        args,
		StopTimeout: 10 * time.Second,
	})

	hc := p.HTTPClient()
	err := a.Process.WaitUntil(context.Background(), 90*time.Second, "ready", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/readyz", nil)
		// Before RBAC's bootstrap roles exist, anonymous /readyz is forbidden.
		req.Header.Set("Authorization", "Bearer "+a.AdminToken)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("GET /readyz: %s: %s", resp.Status, tail(string(body), 5))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cs := a.Clientset()
	err = a.Process.WaitUntil(context.Background(), 30*time.Second, "default namespace exists", func(ctx context.Context) error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// RESTConfig returns a client-go configuration using token (the admin token
// when empty).
func (a *APIServer) RESTConfig(token string) *rest.Config {
	if token == "" {
		token = a.AdminToken
	}
	return &rest.Config{
		Host:            a.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: a.CAFile},
		QPS:             50,
		Burst:           100,
		Timeout:         30 * time.Second,
	}
}

// Clientset returns a client-go clientset authenticated as admin.
func (a *APIServer) Clientset() kubernetes.Interface {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.adminClientset == nil {
		cs, err := kubernetes.NewForConfig(a.RESTConfig(""))
		if err != nil {
			a.t.Fatalf("creating the admin clientset: %v", err)
		}
		a.adminClientset = cs
	}
	return a.adminClientset
}

// AdminKubeconfig returns the path of a kubeconfig file using the admin token.
func (a *APIServer) AdminKubeconfig() string { return a.KubeconfigFor(a.AdminToken) }

// KubeconfigFor returns the path of a kubeconfig file (in the work directory)
// that talks to this kube-apiserver with the bearer token.
func (a *APIServer) KubeconfigFor(token string) string {
	return a.kubeconfig("token:"+token, &clientcmdapi.AuthInfo{Token: token})
}

// KubeconfigForCert returns the path of a kubeconfig file that authenticates
// with a client certificate, e.g. one from PKI.IssueClient.
func (a *APIServer) KubeconfigForCert(kp KeyPair) string {
	return a.kubeconfig("cert:"+kp.CertFile, &clientcmdapi.AuthInfo{ClientCertificate: kp.CertFile, ClientKey: kp.KeyFile})
}

func (a *APIServer) kubeconfig(key string, user *clientcmdapi.AuthInfo) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.kubeconfigs[key]; ok {
		return p
	}
	a.kubeconfigIndex++
	// Named after this kube-apiserver's port: a test may run several.
	path := fmt.Sprintf("%s/kubeconfigs/apiserver-%s-%d.kubeconfig", WorkDir(a.t), a.URL[strings.LastIndex(a.URL, ":")+1:], a.kubeconfigIndex)
	if err := WriteKubeconfig(path, a.URL, a.CAFile, user); err != nil {
		a.t.Fatalf("writing %s: %v", path, err)
	}
	a.kubeconfigs[key] = path
	return path
}

// WriteKubeconfig writes a kubeconfig with one cluster (server, CA file), one
// user and one current context.
func WriteKubeconfig(path, server, caFile string, user *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["e2e"] = user
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e", Namespace: "default"}
	cfg.CurrentContext = "e2e"
	return clientcmd.WriteToFile(*cfg, path)
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// WebhookKubeconfig returns the content of a kubeconfig file for
// kube-apiserver's webhooks (token authentication, audit): one cluster whose
// server is url (POSTed to exactly as written, path included), trusting
// caPEM, and optionally a client certificate the webhook can require.
func WebhookKubeconfig(url string, caPEM []byte, client *KeyPair) string {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["webhook"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: caPEM}
	user := &clientcmdapi.AuthInfo{}
	if client != nil {
		user.ClientCertificateData = client.CertPEM
		user.ClientKeyData = client.KeyPEM
	}
	cfg.AuthInfos["kube-apiserver"] = user
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "webhook", AuthInfo: "kube-apiserver"}
	cfg.CurrentContext = "webhook"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		panic(err) // only fails on unserialisable input, which this is not
	}
	return string(b)
}
