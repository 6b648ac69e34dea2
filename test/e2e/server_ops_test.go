package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// getText GETs path from srv as an anonymous client and returns status and
// body; /metrics is read as a scraper (see scraperClient).
func getText(t *testing.T, srv *framework.Portcullis, path string) (int, string) {
	t.Helper()
	return getTextWith(t, srv.HTTPClient(), srv.URL+path)
}

// scraperClient reads /metrics as Prometheus would: with a client
// certificate in the group system:monitoring from the CA the server's
// webhook.clientCAFile names (/metrics is not for anonymous clients).
func scraperClient(t *testing.T, srv *framework.Portcullis, pki *framework.PKI) *http.Client {
	t.Helper()
	cert, err := pki.IssueClient("prometheus", "system:monitoring").TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	hc := srv.HTTPClient()
	hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	return hc
}

func getTextWith(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// sample returns the value of the metric line starting with series
// (name and labels as exposed), or "" when absent.
func sample(metrics, series string) string {
	for _, line := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func TestAFailedConfigReloadShowsInMetricsAndReadyzUntilAGoodFileIsBack(t *testing.T) {
	t.Parallel()
	port := framework.FreePort(t)
	pki := framework.NewPKI(t)
	good := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
webhook:
  clientCAFile: %s
clusters:
- name: c1
  access: {allUsers: true}
`, port, filepath.Join(framework.WorkDir(t), "state.db"), pki.ClientCA.CertFile)
	srv := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: good, Port: port})
	scraper := scraperClient(t, srv, pki)
	scrape := func() string {
		t.Helper()
		code, m := getTextWith(t, scraper, srv.URL+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics as a system:monitoring scraper: %d %s", code, m)
		}
		return m
	}
	hashOf := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	waitFor := func(what string, cond func(metrics string) error) {
		t.Helper()
		if err := srv.Process.WaitUntil(context.Background(), 30*time.Second, what, func(context.Context) error {
			return cond(scrape())
		}); err != nil {
			t.Fatal(err)
		}
	}

	m := scrape()
	if v := sample(m, "portcullis_config_last_reload_successful"); v != "1" {
		t.Errorf("at start portcullis_config_last_reload_successful = %q, want 1", v)
	}
	if v := sample(m, fmt.Sprintf(`portcullis_config_info{sha256="%s"}`, hashOf(good))); v != "1" {
		t.Errorf("portcullis_config_info does not carry the hash of the file served:\n%s", grepLines(m, "portcullis_config_"))
	}
	startSuccess := sample(m, "portcullis_config_last_reload_success_timestamp_seconds")
	if code, body := getText(t, srv, "/readyz/portcullis-config"); code != http.StatusOK {
		t.Errorf("/readyz/portcullis-config at start: %d %s", code, body)
	}

	bad := strings.Replace(good, "access:", "acess:", 1)
	if err := os.WriteFile(srv.ConfigPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("the failed reload to show in the metrics", func(m string) error {
		if v := sample(m, "portcullis_config_last_reload_successful"); v != "0" {
			return fmt.Errorf("portcullis_config_last_reload_successful = %q", v)
		}
		return nil
	})
	m = scrape()
	if v := sample(m, `portcullis_config_reloads_total{result="failure"}`); v != "1" {
		t.Errorf(`portcullis_config_reloads_total{result="failure"} = %q, want 1`, v)
	}
	if v := sample(m, fmt.Sprintf(`portcullis_config_info{sha256="%s"}`, hashOf(good))); v != "1" {
		t.Errorf("after a failed reload portcullis_config_info must still name the file served:\n%s", grepLines(m, "portcullis_config_"))
	}
	if v := sample(m, "portcullis_config_last_reload_success_timestamp_seconds"); v != startSuccess {
		t.Errorf("a failed reload moved the success timestamp: %s -> %s", startSuccess, v)
	}
	code, detail := getText(t, srv, "/readyz/portcullis-config")
	if code != http.StatusInternalServerError || !strings.Contains(detail, "clusters[0].acess") || !strings.Contains(detail, hashOf(bad)) || !strings.Contains(detail, hashOf(good)) {
		t.Errorf("/readyz/portcullis-config after a bad file: %d %s", code, detail)
	}
	// The replica keeps serving its last good configuration: still ready.
	if code, body := getText(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a failed reload: %d %s", code, body)
	}
	if !strings.Contains(srv.Process.Log(), "The changed configuration file is invalid") {
		t.Errorf("the log does not tell the failed reload")
	}

	fixed := strings.Replace(good, "name: c1", "name: c2", 1)
	if err := os.WriteFile(srv.ConfigPath, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("the good file to be applied", func(m string) error {
		if v := sample(m, "portcullis_config_last_reload_successful"); v != "1" {
			return fmt.Errorf("portcullis_config_last_reload_successful = %q", v)
		}
		return nil
	})
	m = scrape()
	if v := sample(m, fmt.Sprintf(`portcullis_config_info{sha256="%s"}`, hashOf(fixed))); v != "1" {
		t.Errorf("portcullis_config_info does not name the new file:\n%s", grepLines(m, "portcullis_config_"))
	}
	if strings.Contains(m, hashOf(good)) {
		t.Errorf("portcullis_config_info still names the old file:\n%s", grepLines(m, "portcullis_config_"))
	}
	if v := sample(m, `portcullis_config_reloads_total{result="success"}`); v != "1" {
		t.Errorf(`portcullis_config_reloads_total{result="success"} = %q, want 1`, v)
	}
	if code, body := getText(t, srv, "/readyz/portcullis-config"); code != http.StatusOK {
		t.Errorf("/readyz/portcullis-config after recovery: %d %s", code, body)
	}
}

func TestTheServerLogsJSONAndServesItsVersion(t *testing.T) {
	t.Parallel()
	port := framework.FreePort(t)
	srv := framework.StartPortcullis(t, framework.PortcullisOptions{
		ConfigYAML: fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
`, port, filepath.Join(framework.WorkDir(t), "state.db")),
		Port:      port,
		ExtraArgs: []string{"--logging-format=json"},
	})

	t.Run("/version answers anonymous clients with the binary's real version", func(t *testing.T) {
		code, body := getText(t, srv, "/version")
		if code != http.StatusOK {
			t.Fatalf("GET /version: %d %s", code, body)
		}
		var info struct {
			GitVersion, GitCommit, BuildDate, GoVersion, Platform string
		}
		if err := json.Unmarshal([]byte(body), &info); err != nil {
			t.Fatalf("GET /version is not JSON: %v: %s", err, body)
		}
		if strings.Contains(body, "$Format") || strings.Contains(body, "v0.0.0-master") || info.GitVersion == "" || info.GoVersion == "" || info.Platform == "" {
			t.Errorf("GET /version shows placeholders or nothing: %s", body)
		}
		out, err := exec.Command(framework.PortcullisServerBinary(t), "version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := "portcullis-server " + info.GitVersion + "\n"; string(out) != want {
			t.Errorf("`portcullis-server version` says %q, /version says %q", out, info.GitVersion)
		}
	})

	t.Run("every log line is a JSON object", func(t *testing.T) {
		if err := srv.Process.WaitUntil(context.Background(), 10*time.Second, "the start-up log line", func(context.Context) error {
			if !strings.Contains(srv.Process.Log(), "Starting portcullis-server") {
				return fmt.Errorf("not yet")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		lines := 0
		for _, line := range strings.Split(srv.Process.Log(), "\n") {
			if line == "" || strings.HasPrefix(line, "==> ") { // the framework's own lines
				continue
			}
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Errorf("not a JSON log line: %q", line)
				continue
			}
			if _, ok := entry["msg"]; !ok {
				t.Errorf("a JSON log line without msg: %q", line)
			}
			lines++
		}
		if lines == 0 {
			t.Error("no log lines at all")
		}
	})
}
