package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// proxyStack is Portcullis in proxy mode in front of two real
// kube-apiservers (c1, c2) configured with no webhook at all: they only
// trust Portcullis's service-account token and its Impersonate-* headers.
type proxyStack struct {
	pki        *framework.PKI
	c1, c2     *framework.APIServer
	portcullis *framework.Portcullis
	agent      *framework.NodeAgent
	auditLog   string // Portcullis's own audit log
	// auditSink receives Portcullis's audit webhook backend's events.
	auditSink  *auditReceiver
	tokens     map[string]string
	kubeconfig map[string]string // "<user>@<cluster>" → kubeconfig path
	admin      map[string]string // cluster → admin kubeconfig path (direct)
	tokenFile  map[string]string // cluster → upstream.tokenFile
	dex        *framework.Dex
}

const proxySA = "system:serviceaccount:portcullis:portcullis-proxy"

// clusterRBAC is what the clusters' administrators grant Portcullis users:
// group devs may edit config maps and use pods (exec, attach,
// port-forward, logs) in default, and impersonate the user bob; group
// viewers and the user bob may read config maps.
const clusterRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dev, namespace: default}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: ["*"]}
- {apiGroups: [""], resources: [pods], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [pods/log], verbs: [get]}
- {apiGroups: [""], resources: [pods/exec, pods/attach, pods/portforward], verbs: [get, create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs-dev, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: viewer, namespace: default}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewers, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: viewers}
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-bob}
rules:
- {apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [bob]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: devs-impersonate-bob}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-bob}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}]
`

// proxyStackOptions shape startProxyStack.
type proxyStackOptions struct {
	// clusters are the clusters (one kube-apiserver each) behind
	// Portcullis; default c1 and c2.
	clusters []string
	// audit turns on the audit logs of Portcullis and of c1's kube-apiserver.
	audit bool
	// directTokens are static tokens c1's kube-apiserver accepts itself
	// (for comparisons with direct access).
	directTokens []framework.StaticToken
	// users are minted before Portcullis starts, "<user>@<cluster>" →
	// mint arguments; default alice (devs) on every cluster, carol
	// (viewers) and dave (nobody) on c1.
	users map[string][]string
	// extraArgs are more portcullis-server flags.
	extraArgs []string
	// rbac are the manifests in artifacts/rbac applied in every cluster;
	// default proxy-clusterrole.yaml.
	rbac []string
	// dex adds a Dex identity provider whose ID tokens Portcullis accepts
	// as bearer tokens, mapping alice@example.com to group devs.
	dex bool
	// c1Aliases are more clusters in Portcullis's configuration whose
	// upstream is c1's kube-apiserver, with c1's credential: each is an
	// upstream of its own in the proxy (its own transport and
	// connections), without another kube-apiserver.
	c1Aliases []string
}

func startProxyStack(t testing.TB, o proxyStackOptions) *proxyStack {
	t.Helper()
	if o.clusters == nil {
		o.clusters = []string{"c1", "c2"}
	}
	if o.users == nil {
		o.users = map[string][]string{
			"carol@c1": {"--user", "carol", "--group", "viewers"},
			"dave@c1":  {"--user", "dave", "--group", "nobody"},
		}
		for _, c := range o.clusters {
			o.users["alice@"+c] = []string{"--user", "alice", "--group", "devs"}
		}
	}
	s := &proxyStack{pki: framework.NewPKI(t), tokens: map[string]string{}, kubeconfig: map[string]string{}, admin: map[string]string{}, tokenFile: map[string]string{}}
	apis := map[string]*framework.APIServer{}
	for _, name := range o.clusters {
		opts := framework.APIServerOptions{PKI: s.pki}
		if name == "c1" {
			opts.Tokens = o.directTokens
			if o.audit {
				opts.AuditPolicy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
			}
		}
		apis[name] = framework.StartAPIServer(t, opts)
	}
	s.c1, s.c2 = apis["c1"], apis["c2"]

	dir := t.TempDir()
	var clusters strings.Builder
	for _, name := range o.clusters {
		api := apis[name]
		// One admin kubeconfig per cluster, by name: APIServer.AdminKubeconfig
		// numbers its files per kube-apiserver, so two in one test would
		// write the same path.
		admin := filepath.Join(framework.WorkDir(t), "kubeconfigs", "admin-"+name+".kubeconfig")
		if err := framework.WriteKubeconfig(admin, api.URL, api.CAFile, &clientcmdapi.AuthInfo{Token: api.AdminToken}); err != nil {
			t.Fatal(err)
		}
		s.admin[name] = admin
		// The manifests operators apply, as they apply them.
		if len(o.rbac) == 0 {
			o.rbac = []string{"proxy-clusterrole.yaml"}
		}
		for _, file := range o.rbac {
			manifest := filepath.Join(framework.RepoRoot(t), "artifacts", "rbac", file)
			if out, stderr, err := framework.Kubectl(t, admin, "apply", "-f", manifest); err != nil {
				t.Fatalf("%s: applying %s: %v\n%s%s", name, manifest, err, out, stderr)
			}
		}
		tok, stderr, err := framework.Kubectl(t, admin, "create", "token", "portcullis-proxy", "-n", "portcullis", "--duration", "2h")
		if err != nil {
			t.Fatalf("%s: kubectl create token: %v: %s", name, err, stderr)
		}
		tokenFile := filepath.Join(dir, name+"-token")
		if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(tok)), 0o600); err != nil {
			t.Fatal(err)
		}
		s.tokenFile[name] = tokenFile
		// Users' RBAC in the cluster, bound to the groups Portcullis asserts.
		// (The built-in edit/view roles stay empty without the controller
		// manager's aggregation, so the test brings its own.)
		if out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: admin, Stdin: strings.NewReader(clusterRBAC)}, "apply", "-f", "-"); err != nil {
			t.Fatalf("%s: applying the users' RBAC: %v\n%s%s", name, err, out, stderr)
		}
		names := []string{name}
		if name == "c1" {
			names = append(names, o.c1Aliases...)
		}
		for _, n := range names {
			fmt.Fprintf(&clusters, `- name: %s
  access: {allUsers: true}
  upstream:
    server: %s
    certificateAuthorityFile: %s
    tokenFile: %s
`, n, api.URL, api.CAFile, tokenFile)
		}
	}

	port := framework.FreePort(t)
	configPath := filepath.Join(dir, "config.yaml")
	var idps string
	if o.dex {
		s.dex = framework.StartDex(t, framework.DexOptions{PKI: s.pki, PasswordGrant: true})
		idps = dexIdentityProvider(s.dex)
	}
	config := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
%sclusters:
%s`, port, filepath.Join(dir, "state.db"), idps, clusters.String())
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// Mint before the server starts: the embedded store is single-process.
	for key, args := range o.users {
		cluster := key[strings.Index(key, "@")+1:]
		s.tokens[key] = proxyMint(t, configPath, append(args, "--cluster", cluster, "--ttl", "1h", "--reason", "proxy e2e")...)
	}

	var extra []string
	if o.audit {
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s.auditLog = filepath.Join(dir, "portcullis-audit.log")
		s.auditSink = startAuditReceiver(t, s.pki)
		webhookConfig := filepath.Join(dir, "audit-webhook.kubeconfig")
		if err := os.WriteFile(webhookConfig, []byte(framework.WebhookKubeconfig(s.auditSink.url, s.pki.CA.CertPEM, nil)), 0o600); err != nil {
			t.Fatal(err)
		}
		extra = []string{"--audit-policy-file=" + policy, "--audit-log-path=" + s.auditLog, "--audit-log-format=json",
			"--audit-webhook-config-file=" + webhookConfig, "--audit-webhook-mode=blocking"}
	}
	// The scraper of /metrics (scrapeMetrics) has a client certificate.
	extra = append(extra, "--client-ca-file="+s.pki.ClientCA.CertFile)
	extra = append(extra, o.extraArgs...)
	s.portcullis = framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: config, Port: port, ExtraArgs: extra})
	for key, tok := range s.tokens {
		cluster := key[strings.Index(key, "@")+1:]
		path := filepath.Join(framework.WorkDir(t), "kubeconfigs", "proxy-"+strings.ReplaceAll(key, "@", "-at-")+".kubeconfig")
		if err := framework.WriteKubeconfig(path, s.portcullis.URL+"/clusters/"+cluster, s.portcullis.CACertFile(), &clientcmdapi.AuthInfo{Token: tok}); err != nil {
			t.Fatal(err)
		}
		s.kubeconfig[key] = path
	}
	return s
}

// proxyMint runs `portcullis-server mint` against a configuration whose
// store no running server holds, and returns the token.
func proxyMint(t testing.TB, configPath string, args ...string) string {
	t.Helper()
	tok, err := mint(t, configPath, args...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// kubectl runs kubectl through Portcullis as key ("alice@c1").
func (s *proxyStack) kubectl(t *testing.T, key string, args ...string) (string, string, error) {
	t.Helper()
	return framework.Kubectl(t, s.kubeconfig[key], args...)
}

// raw sends one HTTP request to Portcullis.
func (s *proxyStack) raw(t *testing.T, method, path, token string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.portcullis.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = append(req.Header[k], v...) // raw spelling, as a client could send it
	}
	// HTTP/1.1, so headers go out exactly as written (HTTP/2 refuses
	// Connection headers).
	hc := s.portcullis.HTTPClient()
	tr := hc.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	defer tr.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type auditEvent struct {
	AuditID          string            `json:"auditID"`
	Verb             string            `json:"verb"`
	RequestURI       string            `json:"requestURI"`
	SourceIPs        []string          `json:"sourceIPs"`
	Annotations      map[string]string `json:"annotations"`
	User             auditUser         `json:"user"`
	ImpersonatedUser *auditUser        `json:"impersonatedUser"`
	ResponseStatus   struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Stage string `json:"stage"`
}

type auditUser struct {
	Username string              `json:"username"`
	Groups   []string            `json:"groups"`
	Extra    map[string][]string `json:"extra"`
}

// findAuditEvent waits for the ResponseComplete event with auditID in path.
func findAuditEvent(t *testing.T, path, auditID string) auditEvent {
	t.Helper()
	var found *auditEvent
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		f, err := os.Open(path)
		if err != nil {
			return false, nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev auditEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.AuditID == auditID && ev.Stage == "ResponseComplete" {
				found = &ev
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no ResponseComplete audit event %s in %s", auditID, path)
	}
	return *found
}

const selfSubjectReview = `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`

func TestProxyMode(t *testing.T) {
	t.Parallel()
	s := startProxyStack(t, proxyStackOptions{audit: true})
	s.agent = framework.StartNodeAgent(t, s.c1, "proxy-e2e-node")
	s.agent.CreatePod("default", "p")

	t.Run("kubectl auth whoami shows the Portcullis user and groups", func(t *testing.T) {
		w, stderr, err := whoamiJSON(t, s.kubeconfig["alice@c1"])
		if err != nil {
			t.Fatalf("whoami: %v: %s", err, stderr)
		}
		u := w.Status.UserInfo
		if u.Username != "alice" || !hasAll(u.Groups, "devs", "system:authenticated") {
			t.Fatalf("whoami = %+v, want alice in devs", u)
		}
		for k := range u.Extra {
			if k != "portcullis.dev/idp" && k != "portcullis.dev/sid" {
				t.Errorf("extra %s reached the cluster; want only portcullis.dev/idp and portcullis.dev/sid", k)
			}
		}
	})

	t.Run("RBAC bound to a Portcullis group allows and denies", func(t *testing.T) {
		if _, stderr, err := s.kubectl(t, "alice@c1", "get", "configmaps"); err != nil {
			t.Errorf("alice (devs, edit): get configmaps: %v: %s", err, stderr)
		}
		if _, stderr, err := s.kubectl(t, "carol@c1", "get", "configmaps"); err != nil {
			t.Errorf("carol (viewers, view): get configmaps: %v: %s", err, stderr)
		}
		_, stderr, err := s.kubectl(t, "carol@c1", "create", "configmap", "nope")
		if err == nil || !strings.Contains(stderr, `User "carol" cannot create resource "configmaps"`) {
			t.Errorf("carol (view) create configmap: err=%v stderr=%s, want forbidden for carol", err, stderr)
		}
		_, stderr, err = s.kubectl(t, "dave@c1", "get", "pods")
		if err == nil || !strings.Contains(stderr, `User "dave" cannot list resource "pods"`) {
			t.Errorf("dave (no binding): err=%v stderr=%s, want forbidden for dave", err, stderr)
		}
	})

	t.Run("create, apply (client- and server-side) and delete", func(t *testing.T) {
		if _, stderr, err := s.kubectl(t, "alice@c1", "create", "configmap", "cm1", "--from-literal=k=v1"); err != nil {
			t.Fatalf("create: %v: %s", err, stderr)
		}
		manifest := `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm2
data:
  k: v2
`
		for _, extra := range [][]string{nil, {"--server-side", "--field-manager=e2e"}} {
			args := append([]string{"apply", "-f", "-"}, extra...)
			if out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: s.kubeconfig["alice@c1"], Stdin: strings.NewReader(manifest)}, args...); err != nil {
				t.Fatalf("apply %v: %v: %s%s", extra, err, out, stderr)
			}
		}
		out, stderr, err := s.kubectl(t, "alice@c1", "get", "configmap", "cm2", "-o", "jsonpath={.data.k}")
		if err != nil || out != "v2" {
			t.Fatalf("get cm2: %q %v %s", out, err, stderr)
		}
		if _, stderr, err := s.kubectl(t, "alice@c1", "delete", "configmap", "cm1", "cm2"); err != nil {
			t.Fatalf("delete: %v: %s", err, stderr)
		}
		// Discovery and OpenAPI pass through (explain needs both).
		if out, stderr, err := s.kubectl(t, "alice@c1", "explain", "configmap.data"); err != nil || !strings.Contains(out, "data") {
			t.Errorf("explain: %v: %s", err, stderr)
		}
	})

	t.Run("get -w receives an event within a second", func(t *testing.T) {
		w := framework.StartKubectl(t, framework.KubectlOptions{Kubeconfig: s.kubeconfig["alice@c1"]},
			"get", "configmaps", "-w", "-o", "name")
		// The initial list comes first (kube-root-ca.crt is not there without
		// a controller manager, so create a marker to know the watch is up).
		if _, stderr, err := s.kubectl(t, "alice@c1", "create", "configmap", "watch-ready"); err != nil {
			t.Fatalf("create: %v: %s", err, stderr)
		}
		w.WaitLine(t, 10*time.Second, func(l string) bool { return strings.Contains(l, "watch-ready") })
		// Now time one event from the change to kubectl's output.
		start := time.Now()
		if _, stderr, err := framework.Kubectl(t, s.admin["c1"], "create", "configmap", "watched"); err != nil {
			t.Fatalf("create: %v: %s", err, stderr)
		}
		created := time.Now()
		w.WaitLine(t, 5*time.Second, func(l string) bool { return l == "configmap/watched" })
		if lag := time.Since(created); lag > time.Second {
			t.Errorf("the event reached kubectl %v after the change (create took %v), want < 1s", lag, created.Sub(start))
		}
		w.Stop()
	})

	t.Run("smuggled headers never reach the cluster as the client wrote them", func(t *testing.T) {
		alice := s.tokens["alice@c1"]
		for _, tt := range []struct {
			name   string
			header http.Header
		}{
			{"Impersonate headers in other spellings", http.Header{"Impersonate_User": {"admin"}, "Impersonate_Group": {"system:masters"}, "Impersonateuser": {"admin"}}},
			{"front-proxy headers", http.Header{"X-Remote-User": {"admin"}, "X-Remote-Group": {"system:masters"}, "X-Remote-Extra-Scopes": {"all"}}},
			{"a second Authorization header", http.Header{"Authorization": {"Bearer " + s.c1.AdminToken}}},
			{"Connection naming Authorization", http.Header{"Connection": {"Authorization, Impersonate-User"}}},
			{"forwarding headers", http.Header{"X-Forwarded-For": {"10.9.9.9"}, "X-Real-Ip": {"10.9.9.9"}, "Forwarded": {"for=10.9.9.9"}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				resp, body := s.raw(t, "POST", "/clusters/c1/apis/authentication.k8s.io/v1/selfsubjectreviews", alice, tt.header, selfSubjectReview)
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				var w whoamiResult
				if err := json.Unmarshal(body, &w); err != nil {
					t.Fatal(err)
				}
				if u := w.Status.UserInfo; u.Username != "alice" || hasAll(u.Groups, "system:masters") || len(u.Extra["scopes"]) > 0 {
					t.Fatalf("the cluster saw %+v, want alice as Portcullis asserts her", u)
				}
				// kube-apiserver's own audit log, under the shared audit ID.
				ev := findAuditEvent(t, s.c1.AuditLogPath, resp.Header.Get("Audit-Id"))
				if ev.User.Username != proxySA || ev.ImpersonatedUser == nil || ev.ImpersonatedUser.Username != "alice" {
					t.Fatalf("kube-apiserver audit: user %q impersonating %+v, want %s impersonating alice", ev.User.Username, ev.ImpersonatedUser, proxySA)
				}
				for _, ip := range ev.SourceIPs {
					if ip == "10.9.9.9" {
						t.Errorf("a client-sent forwarding address reached the cluster: %v", ev.SourceIPs)
					}
				}
			})
		}

		t.Run("a client's own Impersonate-User is judged by the cluster's RBAC", func(t *testing.T) {
			resp, body := s.raw(t, "POST", "/clusters/c1/apis/authentication.k8s.io/v1/selfsubjectreviews", alice,
				http.Header{"Impersonate-User": {"admin"}, "Impersonate-Group": {"system:masters"}}, selfSubjectReview)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"kind":"Status"`) {
				t.Fatalf("impersonating admin: %d %s, want a 403 Status", resp.StatusCode, body)
			}
		})

		for _, tt := range []struct{ name, path string }{
			{"dot-dot to another cluster", "/clusters/c1/../c2/api"},
			{"encoded slash in the cluster name", "/clusters/c1%2F..%2Fc2/api"},
			{"unknown cluster", "/clusters/c1/../nope/api"},
		} {
			t.Run("path trick: "+tt.name, func(t *testing.T) {
				resp, body := s.raw(t, "GET", tt.path, alice, nil, "")
				if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"kind":"Status"`) {
					t.Fatalf("GET %s: %d %s, want a 404 Status", tt.path, resp.StatusCode, body)
				}
			})
		}
		t.Run("a token for c1 is refused on c2", func(t *testing.T) {
			resp, body := s.raw(t, "GET", "/clusters/c2/api", alice, nil, "")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("GET /clusters/c2/api with a c1 token: %d %s, want 401", resp.StatusCode, body)
			}
		})
	})

	t.Run("kubectl --as is allowed by the cluster's impersonation RBAC only", func(t *testing.T) {
		out, stderr, err := s.kubectl(t, "alice@c1", "auth", "whoami", "--as=bob", "-o", "json")
		if err != nil {
			t.Fatalf("alice --as=bob: %v: %s", err, stderr)
		}
		var who whoamiResult
		if err := json.Unmarshal([]byte(out), &who); err != nil {
			t.Fatal(err)
		}
		if u := who.Status.UserInfo; u.Username != "bob" || !hasAll(u.Extra["portcullis.dev/original-user"], "alice") || hasAll(u.Groups, "devs") {
			t.Fatalf("alice --as=bob: the cluster saw %+v, want bob with original-user alice", u)
		}
		if _, stderr, err := s.kubectl(t, "alice@c1", "get", "configmaps", "--as=bob"); err != nil {
			t.Errorf("alice --as=bob get configmaps (bob may view): %v: %s", err, stderr)
		}
		if _, stderr, err := s.kubectl(t, "alice@c1", "create", "configmap", "as-bob", "--as=bob"); err == nil || !strings.Contains(stderr, `User "bob" cannot create`) {
			t.Errorf("alice --as=bob create: err=%v stderr=%s, want bob's own refusal", err, stderr)
		}
		_, stderr, err = s.kubectl(t, "carol@c1", "get", "configmaps", "--as=bob")
		if err == nil || !strings.Contains(stderr, "Forbidden") && !strings.Contains(stderr, "forbidden") {
			t.Errorf("carol --as=bob: err=%v stderr=%s, want forbidden", err, stderr)
		}
		_, stderr, err = s.kubectl(t, "alice@c1", "get", "configmaps", "--as=admin", "--as-group=system:masters")
		if err == nil || !strings.Contains(strings.ToLower(stderr), "forbidden") {
			t.Errorf("alice --as=admin: err=%v stderr=%s, want forbidden", err, stderr)
		}
	})

	t.Run("exec, attach, port-forward and logs -f over WebSocket and SPDY", func(t *testing.T) {
		for _, proto := range []struct {
			name, metric string
			env          []string
		}{
			{"WebSocket", "websocket", nil},
			{"SPDY", "spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}},
		} {
			t.Run(proto.name, func(t *testing.T) {
				upgradesBefore := s.upgrades(t, proto.metric)
				opts := framework.KubectlOptions{Kubeconfig: s.kubeconfig["alice@c1"], Env: proto.env}
				in := opts
				in.Stdin = strings.NewReader("line one\nline two\n")
				out, stderr, err := framework.KubectlWith(t, in, "exec", "-i", "p", "--", "cat")
				if err != nil || out != "line one\nline two\n" {
					t.Fatalf("exec -i cat: %q %v %s", out, err, stderr)
				}
				out, stderr, err = framework.KubectlWith(t, opts, "exec", "p", "--", "echo", "hello", "portcullis")
				if err != nil || out != "hello portcullis\n" {
					t.Fatalf("exec echo: %q %v %s", out, err, stderr)
				}
				_, stderr, err = framework.KubectlWith(t, opts, "exec", "p", "--", "exit", "7")
				var ee *exec.ExitError
				if !asExitError(err, &ee) || ee.ExitCode() != 7 {
					t.Fatalf("exec exit 7: %v %s, want kubectl to exit 7", err, stderr)
				}
				testTTY(t, s, proto.env)

				att := framework.StartKubectl(t, opts, "attach", "-i", "p")
				att.WaitLine(t, 10*time.Second, func(l string) bool { return strings.HasPrefix(l, "attached to") })
				fmt.Fprintln(att.Stdin, "ping through attach")
				att.WaitLine(t, 5*time.Second, func(l string) bool { return l == "ping through attach" })
				att.Stop()

				pf := framework.StartKubectl(t, opts, "port-forward", "pod/p", ":8080")
				fwd := pf.WaitLine(t, 10*time.Second, func(l string) bool { return strings.HasPrefix(l, "Forwarding from 127.0.0.1:") })
				m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(fwd)
				conn, err := net.DialTimeout("tcp", "127.0.0.1:"+m[1], 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprint(conn, "ping through port-forward\n")
				got, err := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				if err != nil || got != "ping through port-forward\n" {
					t.Fatalf("port-forward echo: %q %v; stderr: %s", got, err, pf.Stderr())
				}
				pf.Stop()

				logs := framework.StartKubectl(t, opts, "logs", "-f", "p")
				start := time.Now()
				logs.WaitLine(t, 10*time.Second, func(l string) bool { return l == "log line 1" })
				first := time.Since(start)
				logs.WaitLine(t, 2*time.Second, func(l string) bool { return l == "log line 5" })
				t.Logf("logs -f: first line after %v", first)
				logs.Stop()

				// exec ×4 (cat, echo, exit, tty), attach and port-forward:
				// all of them upgraded with this protocol through Portcullis.
				if n := s.upgrades(t, proto.metric) - upgradesBefore; n < 6 {
					t.Errorf("Portcullis counted %v %s upgrades, want at least 6", n, proto.metric)
				}
			})
		}
	})

	t.Run("two clusters, each by its own context", func(t *testing.T) {
		w, stderr, err := whoamiJSON(t, s.kubeconfig["alice@c2"])
		if err != nil {
			t.Fatalf("whoami on c2: %v: %s", err, stderr)
		}
		if w.Status.UserInfo.Username != "alice" || !hasAll(w.Status.UserInfo.Groups, "devs") {
			t.Fatalf("whoami on c2 = %+v", w.Status.UserInfo)
		}
		if _, stderr, err := s.kubectl(t, "alice@c2", "create", "configmap", "only-in-c2"); err != nil {
			t.Fatalf("create on c2: %v: %s", err, stderr)
		}
		if _, _, err := s.kubectl(t, "alice@c1", "get", "configmap", "only-in-c2"); err == nil {
			t.Fatalf("a configmap created through c2 is visible in c1")
		}
	})

	t.Run("Portcullis audits proxied requests with the real user and the cluster", func(t *testing.T) {
		resp, body := s.raw(t, "GET", "/clusters/c1/api/v1/namespaces/default/configmaps", s.tokens["alice@c1"], nil, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list: %d %s", resp.StatusCode, body)
		}
		ev := findAuditEvent(t, s.auditLog, resp.Header.Get("Audit-Id"))
		if ev.User.Username != "alice" || ev.Annotations["proxy.portcullis.dev/cluster"] != "c1" ||
			ev.Annotations["proxy.portcullis.dev/verb"] != "list" || ev.Annotations["proxy.portcullis.dev/resource"] != "configmaps" {
			t.Fatalf("Portcullis audit event: %+v", ev)
		}
		// The same event reached the audit webhook backend.
		if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
			return s.auditSink.has(resp.Header.Get("Audit-Id"), "alice", "c1"), nil
		}); err != nil {
			t.Fatalf("the audit webhook backend never received the proxied request's event")
		}
		// The same request, under the same audit ID, in the cluster's log.
		up := findAuditEvent(t, s.c1.AuditLogPath, resp.Header.Get("Audit-Id"))
		if up.ImpersonatedUser == nil || up.ImpersonatedUser.Username != "alice" {
			t.Fatalf("kube-apiserver audit event: %+v", up)
		}
	})

	t.Run("a rotated token file and a configuration reload take effect without a restart", func(t *testing.T) {
		// The token file now holds a token the cluster refuses: a 503 that
		// points at Portcullis's credential, never a 401 for the user.
		if err := os.WriteFile(s.tokenFile["c2"], []byte("not-a-valid-token"), 0o600); err != nil {
			t.Fatal(err)
		}
		var last string
		if err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			resp, body := s.raw(t, "GET", "/clusters/c2/api/v1/namespaces/default/configmaps", s.tokens["alice@c2"], nil, "")
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "credential"), nil
		}); err != nil {
			t.Fatalf("the refused token was not noticed: %s", last)
		}
		// The operator puts a good token in a new file and points the
		// configuration at it.
		tok, stderr, err := framework.Kubectl(t, s.admin["c2"], "create", "token", "portcullis-proxy", "-n", "portcullis", "--duration", "1h")
		if err != nil {
			t.Fatalf("kubectl create token: %v: %s", err, stderr)
		}
		newFile := s.tokenFile["c2"] + ".new"
		if err := os.WriteFile(newFile, []byte(strings.TrimSpace(tok)), 0o600); err != nil {
			t.Fatal(err)
		}
		config, err := os.ReadFile(s.portcullis.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.portcullis.ConfigPath, []byte(strings.ReplaceAll(string(config), s.tokenFile["c2"]+"\n", newFile+"\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			out, stderr, err := s.kubectl(t, "alice@c2", "get", "configmaps", "-o", "name")
			last = out + stderr
			return err == nil, nil
		}); err != nil {
			t.Fatalf("the reloaded configuration was not applied: %s", last)
		}
	})

	t.Run("upstream down is a quick 503 Status, and recovers without a restart", func(t *testing.T) {
		if err := s.c2.Process.Stop(); err != nil {
			t.Logf("stopping c2's kube-apiserver: %v", err)
		}
		start := time.Now()
		resp, body := s.raw(t, "GET", "/clusters/c2/api/v1/namespaces/default/configmaps", s.tokens["alice@c2"], nil, "")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"kind":"Status"`) || !strings.Contains(string(body), "unreachable") {
			t.Fatalf("with c2 down: %d %s, want a 503 Status", resp.StatusCode, body)
		}
		if el := time.Since(start); el > 6*time.Second {
			t.Errorf("the 503 took %v", el)
		}
		_, stderr, err := s.kubectl(t, "alice@c2", "get", "configmaps")
		if err == nil || !strings.Contains(stderr, "unable to handle the request") {
			t.Errorf("kubectl with c2 down: %v: %s, want ServiceUnavailable", err, stderr)
		}
		// c1 is unaffected.
		if _, stderr, err := s.kubectl(t, "alice@c1", "get", "configmaps"); err != nil {
			t.Errorf("c1 while c2 is down: %v: %s", err, stderr)
		}

		if err := s.c2.Process.Restart(); err != nil {
			t.Fatalf("restarting c2's kube-apiserver: %v", err)
		}
		var last string
		if err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
			out, stderr, err := s.kubectl(t, "alice@c2", "get", "configmaps", "-o", "name")
			last = out + stderr
			return err == nil, nil
		}); err != nil {
			t.Fatalf("c2 never worked again through the proxy: %s", last)
		}
	})
}

// upgrades reads portcullis_proxy_upgrades_total{cluster="c1",protocol=...}
// from Portcullis's /metrics.
func (s *proxyStack) upgrades(t *testing.T, protocol string) float64 {
	t.Helper()
	body := scrapeMetrics(t, s.portcullis, s.pki)
	prefix := fmt.Sprintf(`portcullis_proxy_upgrades_total{cluster="c1",protocol=%q} `, protocol)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

func asExitError(err error, target **exec.ExitError) bool {
	for err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			*target = ee
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// testTTY runs kubectl exec -t under a pseudo-terminal, so kubectl sends the
// terminal size through the proxy: the command prints what it received.
func testTTY(t *testing.T, s *proxyStack, env []string) {
	t.Helper()
	out, err := framework.KubectlTTY(t, framework.KubectlOptions{Kubeconfig: s.kubeconfig["alice@c1"], Env: env}, 33, 101, "exec", "-it", "p", "--", "tty-size")
	if err != nil || !strings.Contains(out, "tty 33x101") {
		t.Fatalf("exec -it tty-size under a terminal: %v: %q", err, out)
	}
}

// auditReceiver is an audit webhook backend: an HTTPS endpoint that keeps the
// events Portcullis posts to it.
type auditReceiver struct {
	url    string
	mu     sync.Mutex
	events []auditEvent
}

func startAuditReceiver(t testing.TB, pki *framework.PKI) *auditReceiver {
	r := &auditReceiver{}
	kp := pki.IssueServing("127.0.0.1")
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var list struct {
			Items []auditEvent `json:"items"`
		}
		if err := json.NewDecoder(req.Body).Decode(&list); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, list.Items...)
		r.mu.Unlock()
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/audit"
	return r
}

func (r *auditReceiver) has(auditID, user, cluster string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.AuditID == auditID && ev.User.Username == user && ev.Annotations["proxy.portcullis.dev/cluster"] == cluster {
			return true
		}
	}
	return false
}

// TestProxyMode_IdPTokensAndConstrainedRBAC: an identity provider's ID token
// (Dex, static user without groups) reaches the cluster through the proxy as
// the IdP user with the operator's mapped groups; and with the optional
// constrained-impersonation ClusterRole next to the minimal one, the real
// kube-apiserver admits the proxy's impersonation through its cached
// user-info mode.
func TestProxyMode_IdPTokensAndConstrainedRBAC(t *testing.T) {
	t.Parallel()
	s := startProxyStack(t, proxyStackOptions{
		clusters: []string{"c1"},
		users:    map[string][]string{"alice@c1": {"--user", "alice", "--group", "devs"}},
		rbac:     []string{"proxy-clusterrole.yaml", "proxy-clusterrole-constrained.yaml"},
		dex:      true,
	})

	idToken, err := s.dex.IDToken(context.Background(), "alice@example.com", "alice-password", s.dex.ClientID, s.dex.ClientSecret, []string{"openid", "email", "profile"})
	if err != nil {
		t.Fatalf("Dex ID token: %v", err)
	}
	idp := filepath.Join(framework.WorkDir(t), "kubeconfigs", "proxy-idp-alice.kubeconfig")
	if err := framework.WriteKubeconfig(idp, s.portcullis.URL+"/clusters/c1", s.portcullis.CACertFile(), &clientcmdapi.AuthInfo{Token: idToken}); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := framework.Kubectl(t, idp, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups} {.status.userInfo.extra}")
	if err != nil || !strings.HasPrefix(out, "alice@example.com ") || !strings.Contains(out, "devs") || !strings.Contains(out, "portcullis.dev/idp") {
		t.Fatalf("auth whoami through the proxy with a Dex ID token: %q %v: %s", out, err, stderr)
	}
	if _, stderr, err := framework.Kubectl(t, idp, "create", "configmap", "from-idp", "--from-literal=k=v"); err != nil {
		t.Fatalf("create through the proxy with a Dex ID token (group devs may): %v: %s", err, stderr)
	}
	if _, stderr, err := framework.Kubectl(t, idp, "get", "secrets"); err == nil || !strings.Contains(stderr, "Forbidden") {
		t.Errorf("get secrets with a Dex ID token: %v: %s, want Forbidden from the cluster's RBAC", err, stderr)
	}
	// A tampered ID token is a 401 from Portcullis, never forwarded.
	bad := filepath.Join(framework.WorkDir(t), "kubeconfigs", "proxy-idp-bad.kubeconfig")
	if err := framework.WriteKubeconfig(bad, s.portcullis.URL+"/clusters/c1", s.portcullis.CACertFile(), &clientcmdapi.AuthInfo{Token: idToken[:len(idToken)-4] + "AAAA"}); err != nil {
		t.Fatal(err)
	}
	// (kubectl's words for a 401.)
	if _, stderr, err := framework.Kubectl(t, bad, "get", "configmaps"); err == nil || !strings.Contains(stderr, "You must be logged in to the server") {
		t.Errorf("a tampered ID token through the proxy: %v: %s, want a 401", err, stderr)
	}
	if out, stderr, err := s.kubectl(t, "alice@c1", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"); err != nil || !strings.HasPrefix(out, "alice ") || !strings.Contains(out, "devs") {
		t.Fatalf("auth whoami through the proxy: %q %v: %s", out, err, stderr)
	}
	if _, stderr, err := s.kubectl(t, "alice@c1", "create", "configmap", "constrained", "--from-literal=k=v"); err != nil {
		t.Fatalf("create through the proxy: %v: %s", err, stderr)
	}
	if out, stderr, err := s.kubectl(t, "alice@c1", "get", "configmap", "constrained", "-o", "name"); err != nil || strings.TrimSpace(out) != "configmap/constrained" {
		t.Fatalf("get through the proxy: %q %v: %s", out, err, stderr)
	}
	// kube-apiserver counts impersonations by the mode that allowed them.
	metrics, stderr, err := framework.Kubectl(t, s.admin["c1"], "get", "--raw", "/metrics")
	if err != nil {
		t.Fatalf("kube-apiserver /metrics: %v: %s", err, stderr)
	}
	var userInfo, legacy bool
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "apiserver_impersonation_attempts_total{") && strings.Contains(line, `decision="allowed"`) {
			userInfo = userInfo || strings.Contains(line, `mode="user-info"`)
			legacy = legacy || strings.Contains(line, `mode="legacy"`)
		}
	}
	if !userInfo || legacy {
		t.Errorf("impersonations allowed by mode user-info: %v, legacy: %v; want only user-info:\n%s", userInfo, legacy, grepLines(metrics, "apiserver_impersonation_attempts_total"))
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
