package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// hardeningStack is one kube-apiserver that trusts Portcullis as its
// TokenReview webhook and that Portcullis also proxies to (cluster c1 in
// both modes), with Dex as an identity provider whose ID tokens are
// accepted as bearer tokens, its groups claim mapped without a prefix.
type hardeningStack struct {
	pki        *framework.PKI
	dex        *framework.Dex
	api        *framework.APIServer
	portcullis *framework.Portcullis
	// webhookClient presents kube-apiserver's webhook client certificate.
	webhookClient *http.Client
	// callersGroupToken is a break-glass token whose groups name the
	// webhook callers' group.
	callersGroupToken string
}

func startHardeningStack(t *testing.T) *hardeningStack {
	t.Helper()
	s := &hardeningStack{pki: framework.NewPKI(t)}
	s.dex = framework.StartDex(t, framework.DexOptions{PKI: s.pki, PasswordGrant: true, PersistentStorage: true, AuthProxyConnector: true})

	// Portcullis serves with a certificate of the test CA, so kube-apiserver's
	// webhook configuration can be written before Portcullis starts, and
	// Portcullis's configuration can name kube-apiserver's token.
	port := framework.FreePort(t)
	serving := s.pki.IssueServing("127.0.0.1", "localhost")
	webhookCert := s.pki.IssueClient("kube-apiserver-webhook")
	s.api = framework.StartAPIServer(t, framework.APIServerOptions{
		PKI:               s.pki,
		WebhookKubeconfig: framework.WebhookKubeconfig(fmt.Sprintf("https://127.0.0.1:%d/tokenreview/c1", port), s.pki.CA.CertPEM, &webhookCert),
		WebhookVersion:    "v1",
		// The default 2 minutes: a refusal given during the outage would
		// outlive it.
	})
	admin := s.api.AdminKubeconfig()
	manifest := filepath.Join(framework.RepoRoot(t), "artifacts", "rbac", "proxy-clusterrole.yaml")
	if out, stderr, err := framework.Kubectl(t, admin, "apply", "-f", manifest); err != nil {
		t.Fatalf("applying %s: %v\n%s%s", manifest, err, out, stderr)
	}
	tok, stderr, err := framework.Kubectl(t, admin, "create", "token", "portcullis-proxy", "-n", "portcullis", "--duration", "2h")
	if err != nil {
		t.Fatalf("kubectl create token: %v: %s", err, stderr)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "c1-token")
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(tok)), 0o600); err != nil {
		t.Fatal(err)
	}
	rbac := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader, namespace: default}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs-cm-reader, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}]
`
	if out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: admin, Stdin: strings.NewReader(rbac)}, "apply", "-f", "-"); err != nil {
		t.Fatalf("applying the users' RBAC: %v\n%s%s", err, out, stderr)
	}

	config := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
identityProviders:
- name: dex
  issuer:
    url: %s
  certificateAuthorityFile: %s
  clientID: %s
  acceptIDTokens: true
  claimMappings:
    username:
      claim: email
      prefix: ""
    groups:
      claim: groups
      prefix: ""
groupMappings:
- match:
    emails: [alice@example.com]
  groups: [devs]
clusters:
- name: c1
  access: {allUsers: true}
  upstream:
    server: %s
    certificateAuthorityFile: %s
    tokenFile: %s
webhook:
  clientCAFile: %s
`, port, filepath.Join(dir, "state.db"), s.dex.IssuerURL, s.dex.CAFile, s.dex.ClientID, s.api.URL, s.api.CAFile, tokenFile, s.pki.ClientCA.CertFile)
	configPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// Before the server starts: the embedded store is single-process.
	var errMint error
	if s.callersGroupToken, errMint = mint(t, configPath, "--user", "mallory", "--group", "portcullis.dev:tokenreview-callers", "--cluster", "c1", "--reason", "e2e: a bearer token in the callers' group"); errMint != nil {
		t.Fatal(errMint)
	}
	s.portcullis = framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: config, Port: port, ExtraArgs: []string{
		"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile,
	}})
	cert, err := webhookCert.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	s.webhookClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: framework.CertPool(s.pki.CA), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}}
	t.Cleanup(s.webhookClient.CloseIdleConnections)
	return s
}

// review posts a TokenReview for c1 to Portcullis as kube-apiserver does.
func (s *hardeningStack) review(t *testing.T, tok string) (int, []byte) {
	t.Helper()
	body := fmt.Sprintf(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":%q}}`, tok)
	return s.post(t, s.webhookClient, "/tokenreview/c1", "", body)
}

func (s *hardeningStack) post(t *testing.T, hc *http.Client, path, bearer, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.portcullis.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// kubeconfigs for a token: kube-apiserver directly (webhook mode) and
// Portcullis's proxy.
func (s *hardeningStack) kubeconfigs(t *testing.T, name, tok string) (direct, proxied string) {
	t.Helper()
	direct = filepath.Join(framework.WorkDir(t), "kubeconfigs", name+"-direct.kubeconfig")
	proxied = filepath.Join(framework.WorkDir(t), "kubeconfigs", name+"-proxied.kubeconfig")
	if err := framework.WriteKubeconfig(direct, s.api.URL, s.api.CAFile, &clientcmdapi.AuthInfo{Token: tok}); err != nil {
		t.Fatal(err)
	}
	if err := framework.WriteKubeconfig(proxied, s.portcullis.URL+"/clusters/c1", s.pki.CA.CertFile, &clientcmdapi.AuthInfo{Token: tok}); err != nil {
		t.Fatal(err)
	}
	return direct, proxied
}

type reviewAnswer struct {
	Kind   string `json:"kind"`
	Status struct {
		Authenticated bool `json:"authenticated"`
		User          struct {
			Username string   `json:"username"`
			Groups   []string `json:"groups"`
		} `json:"user"`
		Error string `json:"error"`
	} `json:"status"`
}

type statusAnswer struct {
	Kind    string `json:"kind"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Details *struct {
		RetryAfterSeconds int `json:"retryAfterSeconds"`
	} `json:"details"`
}

// TestHardening_IdPOutageAndIdPGroups runs, against the real kube-apiserver,
// Dex and kubectl:
//
//   - the fault drill of an identity-provider outage with acceptIDTokens
//     (issue 13, finding 2): Dex stopped, a Dex ID token Portcullis has not
//     verified before is answered 503 on the webhook (kube-apiserver retries,
//     caches nothing) and on the proxy, never "authenticated: false"; the
//     credential exchange says the IdP cannot be reached; Dex back (same
//     keys), the same token works at once through kube-apiserver — whose
//     webhook cache (2 minutes) would otherwise still hold a refusal — and
//     the proxy, without restarting Portcullis;
//   - reserved groups an IdP asserts (finding 5): Dex asserting
//     system:masters and portcullis.dev:tokenreview-callers gives neither,
//     through the webhook or the proxy, and a bearer token in the callers'
//     group cannot call /tokenreview.
func TestHardening_IdPOutageAndIdPGroups(t *testing.T) {
	t.Parallel()
	s := startHardeningStack(t)
	ctx := context.Background()

	// The drill comes first: Portcullis must not have loaded Dex's keys yet
	// (keys already loaded keep verifying while the IdP is down, as checked
	// at the end).
	t.Run("an identity provider outage is a 5xx, never a refusal, and recovery needs no restart", func(t *testing.T) {
		idToken, err := s.dex.IDToken(ctx, "alice@example.com", "alice-password", s.dex.ClientID, s.dex.ClientSecret, []string{"openid", "email", "profile"})
		if err != nil {
			t.Fatal(err)
		}
		direct, proxied := s.kubeconfigs(t, "alice-idp", idToken)

		if err := s.dex.Process.Stop(); err != nil {
			t.Logf("stopping Dex: %v", err)
		}

		code, body := s.review(t, idToken)
		var st statusAnswer
		if err := json.Unmarshal(body, &st); err != nil || code != http.StatusServiceUnavailable || st.Kind != "Status" || st.Reason != "ServiceUnavailable" ||
			!strings.Contains(st.Message, `identity provider "dex"`) || st.Details == nil || st.Details.RetryAfterSeconds < 1 {
			t.Fatalf("TokenReview with Dex down: HTTP %d %s; want a 503 Status naming the IdP with a retry delay", code, body)
		}
		if bytes.Contains(body, []byte(idToken)) {
			t.Fatal("the answer holds the token")
		}

		// kube-apiserver retries the 503 with its backoff, then refuses the
		// request (nothing cached).
		if out, stderr, err := framework.Kubectl(t, direct, "auth", "whoami"); err == nil {
			t.Fatalf("kubectl auth whoami through kube-apiserver with Dex down succeeded: %s", out)
		} else if !strings.Contains(stderr, "Unauthorized") {
			t.Errorf("kubectl auth whoami through kube-apiserver with Dex down: %s", stderr)
		}
		// The proxy: a 503 Status, which kubectl reports as such.
		if _, stderr, err := framework.Kubectl(t, proxied, "get", "configmaps"); err == nil || !strings.Contains(stderr, "ServiceUnavailable") && !strings.Contains(stderr, "unable to handle the request") {
			t.Errorf("kubectl through the proxy with Dex down: %v: %s; want a 503", err, stderr)
		} else if strings.Contains(stderr, "You must be logged in") {
			t.Errorf("kubectl through the proxy with Dex down was told to log in: %s", stderr)
		}
		// The credential exchange says why and to retry.
		code, body = s.post(t, s.pki.HTTPClient(), "/apis/login.portcullis.dev/v1alpha1/tokencredentialrequests", "", tcrJSONBody("c1", idToken))
		var tcr struct {
			Status struct {
				Token   string `json:"token"`
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"status"`
		}
		if err := json.Unmarshal(body, &tcr); err != nil || tcr.Status.Token != "" || tcr.Status.Reason != "InternalError" ||
			!strings.Contains(tcr.Status.Message, `identity provider "dex"`) || !strings.Contains(tcr.Status.Message, "retry") {
			t.Errorf("credential exchange with Dex down: HTTP %d %s; want reason InternalError naming the IdP and saying to retry", code, body)
		}

		if err := s.dex.Process.Restart(); err != nil {
			t.Fatalf("restarting Dex: %v", err)
		}
		if err := s.dex.Process.WaitUntil(ctx, 30*time.Second, "serving discovery", func(ctx context.Context) error {
			_, err := s.dex.Discovery(ctx, nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}

		// At once (the first JWKS fetch after the outage may still be
		// settling in the verifier: allow a few seconds, far below the
		// webhook cache's 2 minutes).
		var last string
		if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			w, stderr, err := whoamiJSON(t, direct)
			if err != nil {
				last = stderr
				return false, nil
			}
			last = fmt.Sprint(w.Status.UserInfo)
			return w.Status.UserInfo.Username == "alice@example.com" && slices.Contains(w.Status.UserInfo.Groups, "devs"), nil
		}); err != nil {
			t.Fatalf("with Dex back, kubectl auth whoami through kube-apiserver: %s", last)
		}
		if out, stderr, err := framework.Kubectl(t, proxied, "get", "configmaps", "-o", "name"); err != nil {
			t.Fatalf("with Dex back, kubectl through the proxy: %v: %s%s", err, out, stderr)
		}
		// A tampered token from the reachable IdP is a bad token.
		code, body = s.review(t, idToken[:len(idToken)-8]+"AAAAAAAA")
		var ra reviewAnswer
		if err := json.Unmarshal(body, &ra); err != nil || code != http.StatusOK || ra.Status.Authenticated || ra.Status.Error == "" {
			t.Errorf("a tampered token with Dex up: HTTP %d %s; want authenticated: false with a reason", code, body)
		}

		// Keys already loaded keep verifying while the IdP is down.
		if err := s.dex.Process.Stop(); err != nil {
			t.Logf("stopping Dex: %v", err)
		}
		code, body = s.review(t, idToken)
		if err := json.Unmarshal(body, &ra); err != nil || code != http.StatusOK || !ra.Status.Authenticated {
			t.Errorf("with Dex down again, a token signed with a loaded key: HTTP %d %s; want authenticated", code, body)
		}
		if err := s.dex.Process.Restart(); err != nil {
			t.Fatalf("restarting Dex: %v", err)
		}
		if err := s.dex.Process.WaitUntil(ctx, 30*time.Second, "serving discovery", func(ctx context.Context) error {
			_, err := s.dex.Discovery(ctx, nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reserved groups an identity provider asserts are dropped", func(t *testing.T) {
		idToken, err := s.dex.AuthProxyIDToken(ctx, "mallory@example.com", []string{"system:masters", "portcullis.dev:tokenreview-callers", "devs"}, s.dex.ClientID, s.dex.ClientSecret)
		if err != nil {
			t.Fatal(err)
		}
		// Dex does assert them.
		claims, err := s.dex.VerifyIDToken(ctx, idToken, s.dex.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		if groups, _ := claims["groups"].([]any); len(groups) != 3 {
			t.Fatalf("Dex's groups claim is %v, want the three asserted", claims["groups"])
		}
		direct, proxied := s.kubeconfigs(t, "mallory-idp", idToken)
		for name, kc := range map[string]string{"through kube-apiserver (webhook)": direct, "through the proxy": proxied} {
			w, stderr, err := whoamiJSON(t, kc)
			if err != nil {
				t.Fatalf("%s: kubectl auth whoami: %v: %s", name, err, stderr)
			}
			groups := w.Status.UserInfo.Groups
			if w.Status.UserInfo.Username != "mallory@example.com" || !slices.Contains(groups, "devs") ||
				slices.Contains(groups, "system:masters") || slices.Contains(groups, "portcullis.dev:tokenreview-callers") {
				t.Errorf("%s: whoami %+v; want mallory@example.com in devs and no reserved group", name, w.Status.UserInfo)
			}
			// system:masters would allow everything.
			if _, stderr, err := framework.Kubectl(t, kc, "get", "secrets", "-A"); err == nil || !strings.Contains(stderr, "forbidden") {
				t.Errorf("%s: get secrets -A: %v: %s; want forbidden", name, err, stderr)
			}
		}
		// Nor can that ID token call the webhook as a kube-apiserver.
		code, body := s.post(t, s.pki.HTTPClient(), "/tokenreview/c1", idToken, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}`)
		if code != http.StatusForbidden {
			t.Errorf("POST /tokenreview with the IdP token: HTTP %d %s; want 403", code, body)
		}
	})

	t.Run("only client certificates may call the TokenReview endpoint", func(t *testing.T) {
		review := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + s.callersGroupToken + `"}}`
		code, body := s.post(t, s.pki.HTTPClient(), "/tokenreview/c1", s.callersGroupToken, review)
		var st statusAnswer
		if err := json.Unmarshal(body, &st); err != nil || code != http.StatusForbidden || st.Kind != "Status" || !strings.Contains(st.Message, "client certificate") {
			t.Errorf("a bearer token in %s posting a review: HTTP %d %s; want a 403 Status", "portcullis.dev:tokenreview-callers", code, body)
		}
		// kube-apiserver's certificate still may.
		code, body = s.review(t, s.callersGroupToken)
		var ra reviewAnswer
		if err := json.Unmarshal(body, &ra); err != nil || code != http.StatusOK || !ra.Status.Authenticated || ra.Status.User.Username != "mallory" {
			t.Errorf("the webhook's caller reviewing the minted token: HTTP %d %s", code, body)
		}
	})
}

// TestProxy_StrictInputs (issue 13, finding 7), against the real proxy in
// front of a real kube-apiserver, with the real kubectl:
//
//   - a request with no credential at all is a 401 Status with reason
//     Unauthorized, as kube-apiserver answers with anonymous requests off;
//     kubectl says to log in, and client-go runs its exec credential plugin
//     again (here the plugin's first answer is a client certificate, which
//     this Portcullis does not ask for, so the request has no credential;
//     its second answer, a token, then works within the same kubectl run);
//   - headers over 32 KiB are a 431 Status, over HTTP/1.1 and HTTP/2;
//   - an Upgrade that is not SPDY or WebSocket (h2c) is served as an
//     ordinary request: the cluster's 200 reaches the client.
func TestProxy_StrictInputs(t *testing.T) {
	t.Parallel()
	s := startProxyStack(t, proxyStackOptions{
		clusters: []string{"c1"},
		users:    map[string][]string{"alice@c1": {"--user", "alice", "--group", "devs"}},
	})
	const path = "/clusters/c1/api/v1/namespaces/default/configmaps"

	send := func(t *testing.T, h2 bool, header http.Header) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, s.portcullis.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/json")
		for k, v := range header {
			req.Header[k] = v
		}
		hc := s.portcullis.HTTPClient()
		tr := hc.Transport.(*http.Transport)
		if !h2 {
			tr.ForceAttemptHTTP2 = false
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		defer tr.CloseIdleConnections()
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if want := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]; resp.Proto != want {
			t.Fatalf("answered over %s, want %s", resp.Proto, want)
		}
		return resp, b
	}
	wantStatus := func(t *testing.T, resp *http.Response, body []byte, code int, reason string) statusAnswer {
		t.Helper()
		var st statusAnswer
		if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != code || st.Kind != "Status" || st.Code != code || st.Reason != reason {
			t.Fatalf("HTTP %d %s; want a %d Status with reason %s", resp.StatusCode, body, code, reason)
		}
		return st
	}

	t.Run("no credential is a 401 Status", func(t *testing.T) {
		for _, h2 := range []bool{false, true} {
			resp, body := send(t, h2, nil)
			wantStatus(t, resp, body, http.StatusUnauthorized, "Unauthorized")
		}
		// (A kubeconfig with no user at all makes kubectl prompt for a
		// password; a client certificate of a CA Portcullis does not name
		// in its TLS handshake is never sent, which comes to the same. One
		// of Portcullis's own client CA would be a credential: /metrics
		// and /tokenreview callers use them.)
		stranger := framework.NewPKI(t).IssueClient("not-a-portcullis-user")
		none := filepath.Join(framework.WorkDir(t), "kubeconfigs", "no-credential.kubeconfig")
		if err := framework.WriteKubeconfig(none, s.portcullis.URL+"/clusters/c1", s.portcullis.CACertFile(), &clientcmdapi.AuthInfo{
			ClientCertificateData: stranger.CertPEM, ClientKeyData: stranger.KeyPEM,
		}); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := framework.Kubectl(t, none, "get", "configmaps"); err == nil || !strings.Contains(stderr, "You must be logged in to the server") {
			t.Errorf("kubectl without a credential: %v: %s; want kubectl's words for a 401", err, stderr)
		}
	})

	t.Run("client-go runs the exec plugin again after the 401", func(t *testing.T) {
		dir := t.TempDir()
		stranger := framework.NewPKI(t).IssueClient("not-a-portcullis-user")
		first, _ := json.Marshal(map[string]any{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
			"status": map[string]any{"clientCertificateData": string(stranger.CertPEM), "clientKeyData": string(stranger.KeyPEM)}})
		then, _ := json.Marshal(map[string]any{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
			"status": map[string]any{"token": s.tokens["alice@c1"]}})
		counter := filepath.Join(dir, "runs")
		script := filepath.Join(dir, "plugin.sh")
		for name, content := range map[string][]byte{"first.json": first, "then.json": then} {
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
echo run >> %[1]s
if [ "$(wc -l < %[1]s)" -eq 1 ]; then cat %[2]s; else cat %[3]s; fi
`, counter, filepath.Join(dir, "first.json"), filepath.Join(dir, "then.json"))), 0o700); err != nil {
			t.Fatal(err)
		}
		kc := filepath.Join(framework.WorkDir(t), "kubeconfigs", "exec-plugin.kubeconfig")
		if err := framework.WriteKubeconfig(kc, s.portcullis.URL+"/clusters/c1", s.portcullis.CACertFile(), &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
			APIVersion: "client.authentication.k8s.io/v1", Command: script, InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		}}); err != nil {
			t.Fatal(err)
		}
		out, stderr, err := framework.Kubectl(t, kc, "get", "configmaps", "-o", "name")
		runs, _ := os.ReadFile(counter)
		if err != nil {
			t.Fatalf("kubectl with the exec plugin: %v: %s%s (plugin runs: %d)", err, out, stderr, strings.Count(string(runs), "run"))
		}
		if n := strings.Count(string(runs), "run"); n < 2 {
			t.Errorf("the exec plugin ran %d times, want at least 2", n)
		}
	})

	t.Run("headers over 32 KiB are a 431 Status", func(t *testing.T) {
		for _, h2 := range []bool{false, true} {
			resp, body := send(t, h2, http.Header{"Authorization": {"Bearer " + s.tokens["alice@c1"]}, "X-Padding": {strings.Repeat("p", 33<<10)}})
			st := wantStatus(t, resp, body, http.StatusRequestHeaderFieldsTooLarge, "RequestHeaderFieldsTooLarge")
			if !strings.Contains(st.Message, "32768") {
				t.Errorf("message %q does not give the limit", st.Message)
			}
			// Below the cap, as usual.
			resp, body = send(t, h2, http.Header{"Authorization": {"Bearer " + s.tokens["alice@c1"]}, "X-Padding": {strings.Repeat("p", 16<<10)}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("16 KiB of headers: HTTP %d %s", resp.StatusCode, body)
			}
		}
	})

	t.Run("an h2c upgrade is served as an ordinary request", func(t *testing.T) {
		resp, body := s.raw(t, http.MethodGet, path, s.tokens["alice@c1"], http.Header{
			"Connection":     {"Upgrade, HTTP2-Settings"},
			"Upgrade":        {"h2c"},
			"HTTP2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"},
		}, "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"kind":"ConfigMapList"`) {
			t.Fatalf("HTTP %d %s; want the cluster's ConfigMapList", resp.StatusCode, body)
		}
	})
}
