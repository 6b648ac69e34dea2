package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// klogHeader is what differs between two runs' error lines: severity,
// date, time, pid and source line ("E1204 20:41:45.274868   16494 run.go:72] ").
var klogHeader = regexp.MustCompile(`(?m)^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] `)

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("running portcullis-server: %v", err)
	}
	return ee.ExitCode()
}

func TestCheckConfigValidatesOfflineWithStartUpsMessagesAndExitCode(t *testing.T) {
	t.Parallel()
	bin := framework.PortcullisServerBinary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://portcullis.example.com
clusters:
- name: prod
  access: {groups: [sre]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: http://portcullis.example.com/
clusters:
- name: Prod
  acess: {allUsers: true}
webhook:
  clientCAFile: /does/not/exist.pem
`), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("a valid file exits 0 and says so on stdout", func(t *testing.T) {
		cmd := exec.Command(bin, "check-config", "--config", good)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("exit code %d for a valid file: %s", code, stderr.String())
		}
		if !strings.HasPrefix(string(out), good+" is a valid configuration") {
			t.Errorf("stdout: %q", out)
		}
	})
	t.Run("an invalid file exits 1 with exactly the messages start-up prints", func(t *testing.T) {
		check, err := exec.Command(bin, "check-config", "--config", bad).CombinedOutput()
		if code := exitCode(t, err); code != 1 {
			t.Fatalf("exit code %d, want 1: %s", code, check)
		}
		startup, err := exec.Command(bin, "--config", bad, "--secure-port", "0", "--cert-dir", t.TempDir()).CombinedOutput()
		if code := exitCode(t, err); code != 1 {
			t.Fatalf("start-up exit code %d, want 1: %s", code, startup)
		}
		got, want := klogHeader.ReplaceAllString(string(check), ""), klogHeader.ReplaceAllString(string(startup), "")
		if got != want {
			t.Errorf("check-config printed\n%s\nstart-up printed\n%s", got, want)
		}
		for _, field := range []string{"issuerURL", "clusters[0].name", "clusters[0].acess", "webhook.clientCAFile"} {
			if !strings.Contains(got, field) {
				t.Errorf("check-config does not name %s:\n%s", field, got)
			}
		}
	})
	t.Run("without --config it names the flag and exits 1", func(t *testing.T) {
		out, err := exec.Command(bin, "check-config").CombinedOutput()
		if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), `required flag(s) \"config\" not set`) {
			t.Errorf("exit code %d: %s", code, out)
		}
	})
}
