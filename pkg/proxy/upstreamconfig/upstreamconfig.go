// Package upstreamconfig reads the client-go configuration of a proxied
// cluster's API server when Portcullis's configuration names a kubeconfig
// (clusters[].upstream.kubeconfig) or asks for the in-cluster service account
// (clusters[].upstream.inCluster). The configuration's validation and the
// proxy both use it, so a file that validates is one the proxy can use.
//
// It refuses what the proxy must not or cannot honour: skipping the
// verification of the API server's certificate, a kubeconfig user that
// impersonates (the proxy impersonates each of its users itself), an HTTP
// proxy, and the legacy auth-provider plugins client-go no longer builds in.
// It never runs an exec plugin (that happens at the first request) and never
// returns a credential in an error.
package upstreamconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/transport"
	certutil "k8s.io/client-go/util/cert"
)

// Error is a kubeconfig the proxy cannot use. Field is the field of
// upstream.kubeconfig at fault: "path" (the file or its content) or
// "context".
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Msg }

func pathErr(format string, args ...any) error {
	return &Error{Field: "path", Msg: fmt.Sprintf(format, args...)}
}

// FromKubeconfig returns the client-go configuration of context (the
// file's current context when empty) of the kubeconfig at path, with its
// relative file names resolved against the file's directory. The transport
// configuration is built once (CA and client certificate files are read,
// an exec plugin is set up but not run), so broken files fail here.
func FromKubeconfig(path, context string) (*rest.Config, error) {
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, pathErr("cannot be loaded as a kubeconfig: %v", err)
	}
	if err := clientcmd.ResolveLocalPaths(raw); err != nil {
		return nil, pathErr("cannot resolve the file names it holds: %v", err)
	}
	name := context
	if name == "" {
		name = raw.CurrentContext
		if name == "" {
			return nil, &Error{Field: "context", Msg: "the kubeconfig has no current-context: " + choose("name the context to use", sets.KeySet(raw.Contexts))}
		}
	}
	kctx, ok := raw.Contexts[name]
	if !ok {
		return nil, &Error{Field: "context", Msg: fmt.Sprintf("the kubeconfig has no context %q: %s", name, choose("name one it has", sets.KeySet(raw.Contexts)))}
	}
	cluster, ok := raw.Clusters[kctx.Cluster]
	if !ok {
		return nil, pathErr("context %q names cluster %q, which the kubeconfig does not have: add it or fix the context", name, kctx.Cluster)
	}
	user, ok := raw.AuthInfos[kctx.AuthInfo]
	if !ok {
		return nil, pathErr("context %q names user %q, which the kubeconfig does not have: add it or fix the context", name, kctx.AuthInfo)
	}
	if err := refuseUnsupported(kctx, cluster, user); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, pathErr("context %q cannot be used: %v", name, err)
	}
	if err := checkServer(cfg.Host); err != nil {
		return nil, pathErr("context %q: cluster %q: server %s", name, kctx.Cluster, err)
	}
	if !hasCredential(cfg) {
		return nil, pathErr("context %q: user %q has no credential (token, tokenFile, client certificate or exec plugin): the proxy must authenticate to the API server as an identity allowed to impersonate (see docs/proxy.md)", name, kctx.AuthInfo)
	}
	if err := CheckTransport(cfg); err != nil {
		return nil, pathErr("context %q: %v", name, err)
	}
	return cfg, nil
}

// refuseUnsupported refuses kubeconfig settings the proxy will not honour,
// naming the entry and the setting.
func refuseUnsupported(kctx *clientcmdapi.Context, cluster *clientcmdapi.Cluster, user *clientcmdapi.AuthInfo) error {
	switch {
	case cluster.InsecureSkipTLSVerify:
		return pathErr("cluster %q sets insecure-skip-tls-verify: Portcullis always verifies the upstream API server's certificate; remove it and give certificate-authority or certificate-authority-data", kctx.Cluster)
	case cluster.ProxyURL != "":
		return pathErr("cluster %q sets proxy-url: the proxy connects to the API server directly; remove it", kctx.Cluster)
	case user.Impersonate != "" || user.ImpersonateUID != "" || len(user.ImpersonateGroups) > 0 || len(user.ImpersonateUserExtra) > 0:
		return pathErr("user %q impersonates (as, as-uid, as-groups or as-user-extra): the proxy impersonates each of its users itself, as the credential's own identity; remove them", kctx.AuthInfo)
	case user.Exec != nil && user.Exec.InteractiveMode == clientcmdapi.AlwaysExecInteractiveMode:
		return pathErr("user %q runs its exec plugin with interactiveMode: Always, but Portcullis has no terminal: set interactiveMode: Never (and give the plugin credentials it can use alone)", kctx.AuthInfo)
	case user.AuthProvider != nil:
		return pathErr("user %q uses auth-provider %q, which client-go no longer builds in: use its exec credential plugin instead (for example gke-gcloud-auth-plugin or kubelogin)", kctx.AuthInfo, user.AuthProvider.Name)
	}
	return nil
}

func checkServer(host string) error {
	u, err := url.Parse(host)
	switch {
	case err != nil:
		return errors.New("is not a URL")
	case u.Scheme != "https":
		return fmt.Errorf("%q must be an https:// URL", u.Redacted())
	case u.Hostname() == "":
		return fmt.Errorf("%q names no host", u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%q must not carry user info: remove it", u.Redacted())
	}
	return nil
}

func hasCredential(cfg *rest.Config) bool {
	return cfg.BearerToken != "" || cfg.BearerTokenFile != "" || cfg.ExecProvider != nil ||
		cfg.Username != "" || len(cfg.CertData) > 0 || cfg.CertFile != ""
}

// CheckTransport builds cfg's transport configuration and TLS
// configuration once, so unreadable CA or client certificate files and
// broken exec settings fail early.
func CheckTransport(cfg *rest.Config) error {
	tc, err := cfg.TransportConfig()
	if err != nil {
		return err
	}
	if _, err := transport.TLSConfigFor(tc); err != nil {
		return err
	}
	return nil
}

func choose(msg string, names sets.Set[string]) string {
	if names.Len() == 0 {
		return msg + " (it has no contexts)"
	}
	return msg + ": " + strings.Join(sets.List(names), ", ")
}

// Files are the files a kubeconfig-based configuration reads: the
// kubeconfig itself and the CA, client certificate, key and token files it
// names. The proxy re-reads the configuration when one of them changes.
func Files(kubeconfigPath string, cfg *rest.Config) []string {
	files := []string{kubeconfigPath}
	for _, f := range []string{cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.BearerTokenFile} {
		if f != "" && !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	return files
}

// ServiceAccountDirEnv, when set in Portcullis's environment, is a
// directory read instead of /var/run/secrets/kubernetes.io/serviceaccount
// for upstream.inCluster. It exists for the end-to-end tests, which cannot
// write to the real path; nothing else should set it.
const ServiceAccountDirEnv = "PORTCULLIS_TEST_SERVICE_ACCOUNT_DIR"

// InCluster is client-go's in-cluster configuration (rest.InClusterConfig):
// the API server from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT,
// the pod's service-account token file and the cluster's CA. Unlike
// client-go, a missing CA is an error: the proxy would not trust the API
// server without it.
func InCluster() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if dir := os.Getenv(ServiceAccountDirEnv); dir != "" {
		cfg, err = inClusterFrom(dir)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, errors.New("not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set): run it in the cluster, or use upstream.kubeconfig or upstream.tokenFile")
		}
		return nil, fmt.Errorf("reading the pod's service account: %w", err)
	}
	if cfg.CAFile == "" {
		return nil, fmt.Errorf("the pod's service account has no readable CA (ca.crt): mount the service account with its CA (automountServiceAccountToken or a projected volume with the kube-root-ca.crt ConfigMap)")
	}
	return cfg, nil
}

// inClusterFrom is rest.InClusterConfig reading the service-account files
// from dir.
func inClusterFrom(dir string) (*rest.Config, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, rest.ErrNotInCluster
	}
	tokenFile := filepath.Join(dir, "token")
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, err
	}
	cfg := &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		BearerToken:     string(token),
		BearerTokenFile: tokenFile,
	}
	if caFile := filepath.Join(dir, "ca.crt"); fileHasCerts(caFile) {
		cfg.CAFile = caFile
	}
	return cfg, nil
}

func fileHasCerts(path string) bool {
	_, err := certutil.NewPool(path)
	return err == nil
}
