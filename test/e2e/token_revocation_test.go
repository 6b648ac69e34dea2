package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// Issue 13, finding 6: a token of no session (as `portcullis-server mint`
// makes) is revoked by its jti with kubectl through the TokenRevocation
// API; the webhook and the bearer authenticator of every other path (the
// proxy's) refuse it from then on, and the revocation is audited.
func TestTokenRevocation_ByJTIWithKubectlAndTheAdminCommand(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	port := framework.FreePort(t)
	dir := t.TempDir()
	cfg := standaloneConfig(port, dir, pki.ClientCA.CertFile)
	exp := time.Now().Add(30 * time.Minute)
	toks := mintOffline(t, cfg,
		token.Claims{Subject: "robot", Username: "robot", Groups: []string{"devs"}, Audience: []string{"c1"}, Expiry: exp},
		token.Claims{Subject: "root", Username: "root", Groups: []string{"system:masters", "devs"}, Audience: []string{"c1"}, Expiry: exp},
		token.Claims{Subject: "robot2", Username: "robot2", Groups: []string{"devs"}, Audience: []string{"c1"}, Expiry: exp},
	)
	robot, root, robot2 := toks[0], toks[1], toks[2]
	auditLog := filepath.Join(dir, "audit.log")
	policyFile := filepath.Join(dir, "audit-policy.yaml")
	must(t, os.WriteFile(policyFile, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600))
	p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: cfg, Port: port, ExtraArgs: []string{
		"--audit-policy-file=" + policyFile, "--audit-log-path=" + auditLog, "--audit-log-mode=blocking",
	}})

	// kube-apiserver's view: a TokenReview with the webhook client certificate.
	kp := pki.IssueClient("kube-apiserver")
	cert, err := kp.TLSCertificate()
	must(t, err)
	webhook := p.HTTPClient()
	webhook.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	defer webhook.CloseIdleConnections()
	reviewedToken := func(tok string) bool {
		t.Helper()
		res := post(t, webhook, http.MethodPost, p.URL+"/tokenreview/c1", "",
			[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+tok+`"}}`), nil)
		var review struct {
			Status struct {
				Authenticated bool `json:"authenticated"`
			} `json:"status"`
		}
		if res.code != http.StatusOK || json.Unmarshal(res.body, &review) != nil {
			t.Fatalf("TokenReview: %d %s", res.code, res.body)
		}
		return review.Status.Authenticated
	}
	reviewed := func() bool { t.Helper(); return reviewedToken(robot) }
	hc := p.HTTPClient()
	defer hc.CloseIdleConnections()
	whoami := func() int {
		return post(t, hc, http.MethodPost, p.URL+aggAPIGroup+"/whoamirequests", robot,
			[]byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"WhoAmIRequest"}`), nil).code
	}
	if !reviewed() || whoami() != http.StatusCreated {
		t.Fatal("the robot's token does not work before its revocation")
	}
	jtiOf := func(tok string) string {
		var payload struct {
			JTI string `json:"jti"`
		}
		seg, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		must(t, err)
		must(t, json.Unmarshal(seg, &payload))
		return payload.JTI
	}
	payload := struct{ JTI string }{jtiOf(robot)}

	// An administrator revokes it with kubectl, talking to Portcullis.
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	must(t, framework.WriteKubeconfig(kubeconfig, p.URL, p.CACertFile(), &clientcmdapi.AuthInfo{Token: root}))
	manifest := "apiVersion: login.portcullis.dev/v1alpha1\nkind: TokenRevocation\nmetadata:\n  generateName: leak-\nspec:\n  tokenID: " + payload.JTI + "\n  reason: leaked in a CI log\n"
	var out loginv1alpha1.TokenRevocation
	if stderr, err := kubectlCreate(t, kubeconfig, manifest, &out, "--validate=false"); err != nil {
		t.Fatalf("kubectl create tokenrevocation: %v: %s", err, stderr)
	}
	if out.Status.ExpirationTimestamp == nil || out.Status.ExpirationTimestamp.Time.Before(exp) {
		t.Fatalf("revocation kept until %v, before the token expires (%v)", out.Status.ExpirationTimestamp, exp)
	}
	if reviewed() {
		t.Error("the webhook still authenticates the revoked token")
	}
	if code := whoami(); code != http.StatusUnauthorized {
		t.Errorf("the revoked token on the API: %d, want 401", code)
	}
	// The robot itself may not revoke tokens.
	robotConfig := filepath.Join(dir, "robot.kubeconfig")
	must(t, framework.WriteKubeconfig(robotConfig, p.URL, p.CACertFile(), &clientcmdapi.AuthInfo{Token: toks[0]}))
	if _, err := kubectlCreate(t, robotConfig, manifest, &out, "--validate=false"); err == nil {
		t.Error("a revoked token created a token revocation")
	}
	// Audited, with who, which token and why.
	b, err := os.ReadFile(auditLog)
	must(t, err)
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"resource":"tokenrevocations"`) && strings.Contains(line, `"stage":"ResponseComplete"`) &&
			strings.Contains(line, `"username":"root"`) && strings.Contains(line, payload.JTI) && strings.Contains(line, "leaked in a CI log") {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit event of the revocation naming root, the jti and the reason in %s", auditLog)
	}

	// On the host, the admin command goes through the running server's
	// socket (the embedded store is the server's alone), which audits it.
	if !reviewedToken(robot2) {
		t.Fatal("the second robot's token does not work before its revocation")
	}
	cmd := exec.Command(framework.PortcullisServerBinary(t), "revoke", "--config", p.ConfigPath, "--jti", jtiOf(robot2), "--reason", "INC-9: rotated")
	outText, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(outText), "revoked") {
		t.Fatalf("portcullis-server revoke: %v\n%s", err, outText)
	}
	if reviewedToken(robot2) {
		t.Error("the webhook still authenticates the token revoked with portcullis-server revoke")
	}
	b, err = os.ReadFile(auditLog)
	must(t, err)
	if !strings.Contains(string(b), "portcullis-server revoke") || !strings.Contains(string(b), "INC-9: rotated") {
		t.Errorf("no audit event of the command's revocation in %s", auditLog)
	}
}
