package v1alpha1

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeUpstreamKubeconfig writes a kubeconfig with context "up" (current)
// and "other", cluster "up" (CA ca) and user "portcullis"; clusterExtra
// and user are YAML lines indented under them.
func writeUpstreamKubeconfig(t *testing.T, dir, name, ca, clusterExtra, user string) string {
	t.Helper()
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: up
  cluster:
    server: https://prod.example.com:6443
    certificate-authority: %s
%s
users:
- name: portcullis
  user:
%s
contexts:
- name: up
  context: {cluster: up, user: portcullis}
- name: other
  context: {cluster: up, user: portcullis}
current-context: up
`, ca, clusterExtra, user)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateUpstreamCredentials(t *testing.T) {
	f := newFiles(t)
	dir := t.TempDir()
	execUser := "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      args: [eks, get-token, --cluster-name, prod]\n      interactiveMode: Never"
	good := writeUpstreamKubeconfig(t, dir, "good", f.ca, "", execUser)
	noCurrent := filepath.Join(dir, "no-current")
	b, _ := os.ReadFile(good)
	if err := os.WriteFile(noCurrent, []byte(strings.Replace(string(b), "current-context: up\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := func(path, ctx string) *Upstream {
		return &Upstream{Kubeconfig: &UpstreamKubeconfig{Path: path, Context: ctx}}
	}
	type C = PortcullisConfiguration
	tests := []struct {
		name   string
		mutate func(c *C)
		want   []want
	}{
		{"a kubeconfig with an exec plugin is valid", func(c *C) { c.Clusters[1].Upstream = kc(good, "") }, nil},
		{"a kubeconfig context may be named", func(c *C) { c.Clusters[1].Upstream = kc(good, "other") }, nil},
		{"inCluster is valid on its own", func(c *C) { c.Clusters[1].Upstream = &Upstream{InCluster: true} }, nil},
		{"a client certificate is a credential", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "cert", f.ca, "", fmt.Sprintf("    client-certificate: %s\n    client-key: %s", f.ca, f.key)), "")
		}, nil},
		{"a token file relative to the kubeconfig is a credential", func(c *C) {
			if err := os.WriteFile(filepath.Join(dir, "token-file"), []byte("t"), 0o600); err != nil {
				t.Fatal(err)
			}
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "tok", f.ca, "", "    tokenFile: token-file"), "")
		}, nil},
		{"a missing token file is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "notok", f.ca, "", "    tokenFile: no-token-file"), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", "no-token-file: no such file or directory"}}},

		{"no credential at all is refused", func(c *C) { c.Clusters[1].Upstream = &Upstream{} }, []want{{"clusters[1].upstream.tokenFile", "set exactly one of tokenFile (a bearer token file, with server), kubeconfig (path and optional context) or inCluster: true"}}},
		{"tokenFile and kubeconfig together are refused", func(c *C) { c.Clusters[1].Upstream.Kubeconfig = &UpstreamKubeconfig{Path: good} }, []want{
			{"clusters[1].upstream.kubeconfig", "set only one credential: tokenFile is set too"},
		}},
		{"kubeconfig and inCluster together are refused", func(c *C) {
			c.Clusters[1].Upstream = &Upstream{Kubeconfig: &UpstreamKubeconfig{Path: good}, InCluster: true}
		}, []want{
			{"clusters[1].upstream.inCluster", "set only one credential: kubeconfig is set too"},
		}},
		{"server and CA come from the kubeconfig", func(c *C) {
			c.Clusters[1].Upstream = kc(good, "")
			c.Clusters[1].Upstream.Server, c.Clusters[1].Upstream.CertificateAuthorityFile = "https://x.example.com", f.ca
		}, []want{
			{"clusters[1].upstream.server", "comes from the kubeconfig's cluster here: remove it"},
			{"clusters[1].upstream.certificateAuthorityFile", "comes from the kubeconfig's cluster here: remove it"},
		}},
		{"server comes from the pod in cluster", func(c *C) { c.Clusters[1].Upstream = &Upstream{InCluster: true, Server: "https://x.example.com"} }, []want{
			{"clusters[1].upstream.server", "comes from the pod's service account"},
		}},
		{"a kubeconfig needs a path", func(c *C) { c.Clusters[1].Upstream = kc("", "") }, []want{{"clusters[1].upstream.kubeconfig.path", "Required value: give the kubeconfig file"}}},
		{"a missing kubeconfig is reported with its path", func(c *C) { c.Clusters[1].Upstream = kc(filepath.Join(dir, "nope"), "") }, []want{{"clusters[1].upstream.kubeconfig.path", "nope\": cannot be read (no such file or directory)"}}},
		{"a file that is not a kubeconfig is refused", func(c *C) { c.Clusters[1].Upstream = kc(f.key, "") }, []want{{"clusters[1].upstream.kubeconfig.path", "cannot be loaded as a kubeconfig"}}},
		{"an unknown context is refused, naming those there are", func(c *C) { c.Clusters[1].Upstream = kc(good, "prod") }, []want{{"clusters[1].upstream.kubeconfig.context", `the kubeconfig has no context "prod": name one it has: other, up`}}},
		{"without a current context, a context must be named", func(c *C) { c.Clusters[1].Upstream = kc(noCurrent, "") }, []want{{"clusters[1].upstream.kubeconfig.context", "the kubeconfig has no current-context: name the context to use: other, up"}}},
		{"skipping TLS verification is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "insecure", "", "    insecure-skip-tls-verify: true", execUser), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", `cluster "up" sets insecure-skip-tls-verify: Portcullis always verifies`}}},
		{"a proxy URL is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "proxy", f.ca, "    proxy-url: http://squid:3128", execUser), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", `cluster "up" sets proxy-url`}}},
		{"a user that impersonates is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "as", f.ca, "", "    token: t\n    as: admin"), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", `user "portcullis" impersonates (as, as-uid, as-groups or as-user-extra): the proxy impersonates each of its users itself`}}},
		{"an exec plugin that needs a terminal is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "always", f.ca, "", strings.Replace(execUser, "Never", "Always", 1)), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", "interactiveMode: Always, but Portcullis has no terminal: set interactiveMode: Never"}}},
		{"a legacy auth provider is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "gcp", f.ca, "", "    auth-provider: {name: gcp}"), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", `uses auth-provider "gcp", which client-go no longer builds in: use its exec credential plugin`}}},
		{"a user without a credential is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "anon", f.ca, "", "    {}"), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", `user "portcullis" has no credential`}}},
		{"an unreadable client certificate is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "badcert", f.ca, "", "    client-certificate: missing.crt\n    client-key: missing.key"), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", "missing.crt"}}},
		{"a CA that is not a certificate is refused", func(c *C) {
			c.Clusters[1].Upstream = kc(writeUpstreamKubeconfig(t, dir, "badca", f.key, "", "    token: t"), "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", "root certificates"}}},
		{"an http server is refused", func(c *C) {
			p := writeUpstreamKubeconfig(t, dir, "http", f.ca, "", "    token: t")
			b, _ := os.ReadFile(p)
			_ = os.WriteFile(p, []byte(strings.Replace(string(b), "https://prod", "http://prod", 1)), 0o600)
			c.Clusters[1].Upstream = kc(p, "")
		}, []want{{"clusters[1].upstream.kubeconfig.path", `server "http://prod.example.com:6443" must be an https:// URL`}}},

		// apiServer
		{"a webhook cluster may give its API server", func(c *C) {
			c.Clusters[0].APIServer = &APIServer{URL: "https://dev.example.com:6443", CertificateAuthorityFile: f.ca}
		}, nil},
		{"an API server URL is https", func(c *C) { c.Clusters[0].APIServer = &APIServer{URL: "http://dev.example.com"} }, []want{{"clusters[0].apiServer.url", "must be an https:// URL"}}},
		{"an API server needs a URL", func(c *C) { c.Clusters[0].APIServer = &APIServer{} }, []want{{"clusters[0].apiServer.url", "Required value"}}},
		{"an API server CA must be a certificate", func(c *C) {
			c.Clusters[0].APIServer = &APIServer{URL: "https://dev.example.com", CertificateAuthorityFile: f.key}
		}, []want{{"clusters[0].apiServer.certificateAuthorityFile", "holds no PEM certificate"}}},
		{"a proxied cluster has no apiServer", func(c *C) { c.Clusters[1].APIServer = &APIServer{URL: "https://prod.example.com"} }, []want{{"clusters[1].apiServer", "is for clusters in webhook mode: this cluster has an upstream, so kubectl reaches it through the proxy at <issuerURL>/clusters/prod"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid(f)
			tt.mutate(c)
			checkErrors(t, Validate(c), tt.want...)
		})
	}
}
