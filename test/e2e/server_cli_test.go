package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/test/e2e/framework"
)

func TestServerHelpListsTheAuditFlagsOfKubeAPIServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(framework.PortcullisServerBinary(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v: %s", err, out)
	}
	for _, flag := range []string{
		"--audit-policy-file", "--audit-log-path", "--audit-log-maxage", "--audit-log-format", "--audit-log-mode",
		"--audit-webhook-config-file", "--audit-webhook-mode", "--audit-webhook-batch-max-size",
		"--config", "--secure-port", "--cert-dir", "--tls-cert-file", "--authentication-kubeconfig", "--authorization-kubeconfig",
	} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
}

func TestServerRefusesABrokenConfigWithEveryError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "broken.yaml")
	broken := `apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: http://portcullis.example.com/
tokens:
  lifetime: forever
clusters:
- name: Prod
  acess: {allUsers: true}
- name: dup
- name: dup
webhook:
  clientCAFile: /does/not/exist.pem
`
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(framework.PortcullisServerBinary(t), "--config", path, "--secure-port", "0", "--cert-dir", t.TempDir()).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("the server did not exit non-zero on a broken config: err=%v\n%s", err, out)
	}
	for _, want := range []string{"issuerURL", "tokens.lifetime", "clusters[0].name", "clusters[0].acess", "clusters[2].name", "webhook.clientCAFile"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error output does not name %s:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "Serving securely") {
		t.Errorf("the server started serving with a broken config:\n%s", out)
	}
}
