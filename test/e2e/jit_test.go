package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/notify"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// jitRBAC: group sre-admin may delete pods in namespace jit, nothing else;
// the pod is there to be deleted (with --dry-run=server, so the same
// command can be asked again: authorization is checked all the same).
const jitRBAC = `apiVersion: v1
kind: Namespace
metadata: {name: jit}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: jit}
---
apiVersion: v1
kind: Pod
metadata: {name: victim, namespace: jit}
spec:
  automountServiceAccountToken: false
  containers: [{name: c, image: example.invalid/none}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-deleter, namespace: jit}
rules:
- {apiGroups: [""], resources: [pods], verbs: [delete]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: sre-admin-deletes-pods, namespace: jit}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-deleter}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: sre-admin}
`

// TestJustInTimeAccess: alice asks for sre-admin with the CLI; she cannot
// approve her own request and dave (no approver) cannot approve it; carol
// approves; the same kubectl command, forbidden before, succeeds in webhook
// mode and in proxy mode, is forbidden again after the window, and stops
// within a second in proxy mode when the grant is revoked. Every step is in
// Portcullis's audit log.
func TestJustInTimeAccess(t *testing.T) {
	t.Parallel()
	// A chat bot's endpoint: it fails its first call (a retry must follow)
	// and records the rest.
	notes := make(chan notify.Message, 32)
	var calls atomic.Int32
	receiver := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m notify.Message
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		notes <- m
	}))
	t.Cleanup(receiver.Close)
	receiverCA := filepath.Join(t.TempDir(), "receiver-ca.crt")
	must(t, os.WriteFile(receiverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: receiver.Certificate().Raw}), 0o600))
	s := startAggStack(t, aggOptions{jit: true, notifications: fmt.Sprintf("notifications:\n  webhook:\n    url: %s/portcullis\n    certificateAuthorityFile: %s\n", receiver.URL, receiverCA)})
	ctx := context.Background()
	admin := s.api.AdminKubeconfig()
	if out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: admin, Stdin: strings.NewReader(jitRBAC)}, "apply", "-f", "-"); err != nil {
		t.Fatalf("applying the RBAC: %v\n%s%s", err, out, stderr)
	}

	// alice logs in at Dex and exchanges her ID token for a cluster token
	// of each cluster (the credential exchange).
	alice := framework.DefaultDexUsers[0]
	idToken, err := s.dex.IDToken(ctx, alice.Email, alice.Password, s.dex.ClientID, s.dex.ClientSecret, []string{"openid", "email", "profile"})
	must(t, err)
	exchange := func(cluster string) string {
		var tcr loginv1alpha1.TokenCredentialRequest
		if stderr, err := kubectlCreate(t, admin, tcrManifest(cluster, idToken), &tcr); err != nil || tcr.Status.Token == "" {
			t.Fatalf("exchanging alice's ID token for %s: %v %s %+v", cluster, err, stderr, tcr.Status)
		}
		return tcr.Status.Token
	}
	aliceWebhook := s.api.KubeconfigFor(exchange(aggCluster))
	aliceProxy := filepath.Join(t.TempDir(), "alice-proxy.kubeconfig")
	must(t, framework.WriteKubeconfig(aliceProxy, s.direct+"/clusters/"+aggProxyCluster, s.servingCA.CertFile, &clientcmdapi.AuthInfo{Token: exchange(aggProxyCluster)}))

	// canDelete runs the command the RoleBinding is about.
	canDelete := func(kubeconfig string) bool {
		t.Helper()
		_, stderr, err := framework.Kubectl(t, kubeconfig, "delete", "pod", "victim", "-n", "jit", "--dry-run=server")
		switch {
		case err == nil:
			return true
		case strings.Contains(stderr, "Forbidden") || strings.Contains(stderr, "forbidden"):
			t.Logf("forbidden: %s", strings.TrimSpace(stderr))
			return false
		}
		t.Fatalf("kubectl delete failed otherwise than forbidden: %v: %s", err, stderr)
		return false
	}
	cliBin := framework.PortcullisCLIBinary(t)
	home := t.TempDir()
	cli := func(kubeconfig string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(cliBin, append(args, "--kubeconfig", kubeconfig)...)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	nameRE := regexp.MustCompile(`Access request (ar-[a-z0-9]+):`)
	request := func(cluster, dur string) string {
		t.Helper()
		out, err := cli(aliceWebhook, "request", "--cluster", cluster, "--group", "sre-admin", "--for", dur, "--reason", "INC-123 pods stuck", "--no-wait")
		m := nameRE.FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("portcullis request: %v\n%s", err, out)
		}
		return m[1]
	}

	for name, kc := range map[string]string{"webhook": aliceWebhook, "proxy": aliceProxy} {
		if canDelete(kc) {
			t.Fatalf("before any grant alice may delete pods in %s mode", name)
		}
	}

	start := time.Now()
	req := request(aggCluster, "20s")

	t.Run("the requester cannot approve her own request", func(t *testing.T) {
		out, err := cli(aliceWebhook, "approve", req)
		if err == nil || !strings.Contains(out, "cannot approve your own request") {
			t.Fatalf("self-approval: %v\n%s", err, out)
		}
	})
	t.Run("a user who is no approver cannot approve", func(t *testing.T) {
		out, err := cli(s.dave, "approve", req)
		if err == nil || !strings.Contains(out, "not found") {
			t.Fatalf("approval by dave: %v\n%s", err, out)
		}
	})
	if canDelete(aliceWebhook) {
		t.Fatal("refused approvals granted access")
	}
	t.Run("the requester and the approver list the request", func(t *testing.T) {
		for _, kc := range []string{aliceWebhook, s.carol} {
			if out, err := cli(kc, "requests"); err != nil || !strings.Contains(out, req) || !strings.Contains(out, "Pending") {
				t.Errorf("portcullis requests: %v\n%s", err, out)
			}
		}
		if out, err := cli(s.dave, "requests"); err != nil || strings.Contains(out, req) {
			t.Errorf("dave sees alice's request: %v\n%s", err, out)
		}
		// kubectl works on the objects too.
		if out, stderr, err := framework.Kubectl(t, s.carol, "get", "accessrequests"); err != nil || !strings.Contains(out, req) || !strings.Contains(out, "Pending") || !strings.Contains(out, "0/1") {
			t.Errorf("kubectl get accessrequests as carol: %v %s\n%s", err, stderr, out)
		}
		if out, stderr, err := framework.Kubectl(t, s.dave, "get", "accessrequest", req); err == nil || !strings.Contains(stderr, "NotFound") && !strings.Contains(stderr, "not found") {
			t.Errorf("kubectl get of alice's request as dave: %v %s %s", err, out, stderr)
		}
	})

	if out, err := cli(s.carol, "approve", req, "--reason", "go ahead"); err != nil {
		t.Fatalf("carol approves: %v\n%s", err, out)
	}
	approved := time.Now()
	// kube-apiserver caches no reviews here (--authentication-token-webhook-cache-ttl=0s):
	// the first kubectl call after the approval is allowed.
	for !canDelete(aliceWebhook) {
		if time.Since(approved) > 15*time.Second {
			out, stderr, _ := framework.Kubectl(t, aliceWebhook, "auth", "whoami", "-o", "json")
			t.Fatalf("after approval alice still may not delete pods in webhook mode; whoami: %s %s", out, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	latency := time.Since(start)
	t.Logf("request -> approve -> first allowed kubectl call (webhook mode): %v (approval -> allowed call: %v)", latency.Round(time.Millisecond), time.Since(approved).Round(time.Millisecond))
	if canDelete(aliceProxy) {
		t.Error("a grant on cluster e2e works on cluster e2e-proxy")
	}

	t.Run("after the window the command is forbidden again", func(t *testing.T) {
		end := approved.Add(20 * time.Second)
		for canDelete(aliceWebhook) {
			// kube-apiserver keeps every successful token authentication
			// for 10 s (its token success cache, besides the webhook's).
			if time.Now().After(end.Add(12 * time.Second)) {
				t.Fatal("the grant outlived its window by 12s")
			}
			time.Sleep(500 * time.Millisecond)
		}
		if early := time.Until(end.Add(-2 * time.Second)); early > 0 {
			t.Fatalf("access ended %v before the window's end", early)
		}
		t.Logf("webhook mode: refused %v after the window's end", time.Since(end).Round(time.Millisecond))
		out, err := cli(aliceWebhook, "requests", "--all")
		if err != nil || !strings.Contains(out, "Expired") {
			t.Errorf("the request is not shown Expired: %v\n%s", err, out)
		}
	})

	t.Run("in proxy mode a grant works and stops within a second of its revocation", func(t *testing.T) {
		start := time.Now()
		req2 := request(aggProxyCluster, "1m")
		if out, err := cli(s.carol, "approve", req2); err != nil {
			t.Fatalf("carol approves: %v\n%s", err, out)
		}
		if !canDelete(aliceProxy) {
			t.Fatal("after approval alice may not delete pods in proxy mode")
		}
		t.Logf("request -> approve -> first allowed kubectl call (proxy mode): %v", time.Since(start).Round(time.Millisecond))
		// The credential exchange under the grant: the token ends with it
		// (tokens live 15 minutes here, the grant 1).
		var tcr loginv1alpha1.TokenCredentialRequest
		if stderr, err := kubectlCreate(t, admin, tcrManifest(aggProxyCluster, idToken), &tcr); err != nil || tcr.Status.ExpirationTimestamp == nil {
			t.Fatalf("exchange under the grant: %v %s %+v", err, stderr, tcr.Status)
		}
		if end := start.Add(time.Minute + 5*time.Second); tcr.Status.ExpirationTimestamp.After(end) {
			t.Errorf("a token exchanged under the grant expires at %v, after the grant (by %v)", tcr.Status.ExpirationTimestamp, end)
		}
		if out, err := cli(aliceWebhook, "grants"); err != nil || !strings.Contains(out, req2) {
			t.Errorf("portcullis grants: %v\n%s", err, out)
		}
		if out, err := cli(s.carol, "revoke-grant", req2); err != nil {
			t.Fatalf("carol revokes: %v\n%s", err, out)
		}
		revoked := time.Now()
		if canDelete(aliceProxy) {
			t.Fatalf("the revoked grant still works %v after revocation", time.Since(revoked))
		}
		t.Logf("revocation -> refused proxied kubectl call: %v", time.Since(revoked).Round(time.Millisecond))
		if time.Since(revoked) > time.Second {
			t.Errorf("refusal came %v after revocation, want within 1s", time.Since(revoked))
		}
	})

	t.Run("the notification webhook is told of each transition, after a retry", func(t *testing.T) {
		seen := map[string]string{}
		timeout := time.After(15 * time.Second)
		for len(seen) < 5 {
			select {
			case m := <-notes:
				seen[m.Event.Type+" "+m.Event.Name] = m.Text
			case <-timeout:
				t.Fatalf("notifications received: %v; want Created and Approved of both requests and Revoked", seen)
			}
		}
		if text := seen["Approved "+req]; !strings.Contains(text, "carol approved alice@example.com's request "+req) {
			t.Errorf("the approval's text is %q", text)
		}
		if calls.Load() < 6 {
			t.Errorf("the receiver was called %d times: the failed first call was not retried", calls.Load())
		}
	})

	t.Run("the proxied kubectl commands are in the audit log by name", func(t *testing.T) {
		checkProxiedKubectlCommandsAudited(t, s.auditLog, alice.Email)
	})

	t.Run("the audit log names requester, approver, reason, cluster, groups and window of every transition", func(t *testing.T) {
		events := accessAuditEvents(t, s.auditLog)
		want := map[string]bool{"Created": false, "Approved": false, "Revoked": false}
		for _, ann := range events {
			if ann["portcullis.dev/access-request"] != req && ann["portcullis.dev/access-transition"] != "Revoked" {
				continue
			}
			tr := ann["portcullis.dev/access-transition"]
			if ann["portcullis.dev/access-requester"] != alice.Email || ann["portcullis.dev/access-reason"] != "INC-123 pods stuck" || ann["portcullis.dev/access-groups"] != "sre-admin" || ann["portcullis.dev/access-cluster"] == "" {
				t.Errorf("%s event lacks a field: %v", tr, ann)
			}
			if tr == "Approved" && (ann["portcullis.dev/access-approver"] != "carol" || ann["portcullis.dev/access-window"] == "" || ann["portcullis.dev/access-decision-reason"] != "go ahead") {
				t.Errorf("approval event: %v", ann)
			}
			want[tr] = true
		}
		for tr, seen := range want {
			if !seen {
				t.Errorf("no %s event in %s", tr, s.auditLog)
			}
		}
	})
}

// The kubectl commands alice ran through the proxy, before, under and after
// her grant, are in Portcullis's audit log by kubectl's command name
// (proxy mode; webhook mode cannot see them, docs/webhook-mode.md).
func checkProxiedKubectlCommandsAudited(t *testing.T, path, user string) {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	codes := map[int32]int{}
	for sc.Scan() {
		var ev struct {
			Stage          string                    `json:"stage"`
			Verb           string                    `json:"verb"`
			RequestURI     string                    `json:"requestURI"`
			User           struct{ Username string } `json:"user"`
			ResponseStatus struct{ Code int32 }      `json:"responseStatus"`
			Annotations    map[string]string         `json:"annotations"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Stage != "ResponseComplete" || ev.User.Username != user || ev.Verb != "delete" || !strings.Contains(ev.RequestURI, "/pods/victim") {
			continue
		}
		if ev.Annotations["proxy.portcullis.dev/kubectl-command"] != "kubectl delete" || ev.Annotations["proxy.portcullis.dev/kubectl-session"] == "" {
			t.Errorf("a proxied kubectl delete of %s has annotations %v, want kubectl's command and session", user, ev.Annotations)
		}
		codes[ev.ResponseStatus.Code]++
	}
	if codes[200] == 0 || codes[403] == 0 {
		t.Errorf("proxied kubectl deletes of %s in the audit log by response code: %v; want allowed (under the grant) and forbidden ones", user, codes)
	}
}

// accessAuditEvents returns the annotations of the audit events of access
// transitions in path.
func accessAuditEvents(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Stage       string            `json:"stage"`
			Annotations map[string]string `json:"annotations"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Stage == "ResponseComplete" && ev.Annotations["portcullis.dev/access-transition"] != "" {
			out = append(out, ev.Annotations)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no access events in %s", path)
	}
	return out
}
