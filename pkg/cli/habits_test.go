package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/kubeconfig"
)

// Tests of the habits kubectl users bring from kubelogin and the Pinniped
// CLI (issue 14).

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// urlRecorder is a --browser-command that writes the address it is given
// to a file, for the test to play the browser with.
func urlRecorder(t *testing.T) (command, file string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the recorder is a shell script")
	}
	dir := t.TempDir()
	file = filepath.Join(dir, "url")
	command = filepath.Join(dir, "record browser")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s' \"$1\" > '%s.tmp' && mv '%s.tmp' '%s'\n", file, file, file)
	if err := os.WriteFile(command, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return command, file
}

func waitForFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s was never written", path)
	return ""
}

func TestLogin_BrowserCommandAndAFixedListenAddress(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	command, file := urlRecorder(t)
	port := freeLoopbackPort(t)
	d, out, _ := h.deps(t)
	done := make(chan error, 1)
	go func() {
		done <- h.run(t, d, "login", "--server", h.env.URL, "--cluster", "c1",
			"--browser-command", command, "--listen-address", fmt.Sprintf("127.0.0.1:%d", port))
	}()
	u := waitForFile(t, file)
	if h.logins.Load() != 0 {
		t.Errorf("the default browser was opened too")
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parsed.Query().Get("cli_redirect"), fmt.Sprintf("http://127.0.0.1:%d/callback", port); got != want {
		t.Errorf("redirect %q, want %q", got, want)
	}
	h.browse(t, u)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Logged in") {
		t.Errorf("output: %s", out)
	}
}

func TestLogin_ListenAddressFallsBackToTheNextOneAndRefusesNonLoopback(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	t.Run("an address in use is skipped for the next", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		free := freeLoopbackPort(t)
		var seen string
		d, _, _ := h.deps(t)
		d.OpenBrowser = func(u string) error {
			seen = u
			go h.browse(t, u)
			return nil
		}
		if err := h.run(t, d, "login", "--server", h.env.URL, "--listen-address", busy.Addr().String(), "--listen-address", fmt.Sprintf("localhost:%d", free)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(seen, url.QueryEscape(fmt.Sprintf("http://127.0.0.1:%d/callback", free))) {
			t.Errorf("login URL %s", seen)
		}
	})
	for _, bad := range []string{"0.0.0.0:8000", "192.0.2.1:8000", "8000", "127.0.0.1:http", "127.0.0.1:70000"} {
		t.Run(bad+" is refused before anything is done", func(t *testing.T) {
			d, _, _ := h.deps(t)
			err := h.run(t, d, "login", "--server", h.env.URL, "--listen-address", bad)
			if err == nil || !strings.Contains(err.Error(), "--listen-address") {
				t.Errorf("error: %v", err)
			}
			if h.logins.Load() != 0 {
				t.Errorf("a login was started")
			}
		})
	}
}

func TestExecCredential_BrowserCommandLogsInWithoutATerminal(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	command, file := urlRecorder(t)
	d, out, _ := h.deps(t)
	done := make(chan error, 1)
	go func() {
		done <- h.run(t, d, "exec-credential", "--server", h.env.URL, "--cluster", "c1", "--browser-command", command)
	}()
	h.browse(t, waitForFile(t, file))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var ec execCredential
	if err := json.Unmarshal([]byte(out.String()), &ec); err != nil || ec.Status.Token == "" {
		t.Errorf("exec-credential printed %q: %v", out, err)
	}
}

func TestVerbose_SaysWhatHappensOnStderrAndNeverATokenOrCode(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	d, out, errb := h.deps(t)
	if err := h.run(t, d, "login", "-v", "2", "--server", h.env.URL, "--cluster", "c1"); err != nil {
		t.Fatal(err)
	}
	d, out2, errb2 := h.deps(t)
	h.env2["KUBERNETES_EXEC_INFO"] = execInfo(false)
	defer delete(h.env2, "KUBERNETES_EXEC_INFO")
	if err := h.run(t, d, "exec-credential", "--v=2", "--server", h.env.URL, "--cluster", "c1"); err != nil {
		t.Fatal(err)
	}
	stderr := errb.String() + errb2.String()
	for _, want := range []string{
		"portcullis: token cache: " + h.tokenDir(),
		"portcullis: logging in to " + h.env.URL,
		"portcullis: GET " + h.env.URL + "/",
		"portcullis: POST " + h.env.URL + "/",
		"portcullis: using the cached token for cluster c1",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(out.String(), "portcullis: ") || strings.Contains(out2.String(), "portcullis: ") {
		t.Errorf("debug output on stdout")
	}
	var entry cacheEntry
	m, _ := filepath.Glob(filepath.Join(h.tokenDir(), "*.json"))
	b, _ := os.ReadFile(m[0])
	if err := json.Unmarshal(b, &entry); err != nil {
		t.Fatal(err)
	}
	for what, secret := range map[string]string{"refresh token": entry.RefreshToken, "cluster token": entry.Tokens["c1"].Token} {
		if secret == "" || strings.Contains(stderr, secret) {
			t.Errorf("the %s is in the debug output (or empty)", what)
		}
	}
	debug := strings.Join(regexp.MustCompile(`(?m)^portcullis: .*$`).FindAllString(stderr, -1), "\n")
	if regexp.MustCompile(`code=|refresh_token=|state=|\?`).MatchString(debug) {
		t.Errorf("a query or form value is in the debug output:\n%s", stderr)
	}
}

func TestWhoami_PrintsJSONAndYAML(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	d, _, _ := h.deps(t)
	if err := h.run(t, d, "login", "--server", h.env.URL, "--cluster", "c1"); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, res whoamiResult, raw string) {
		t.Helper()
		if res.Server != h.env.URL || res.Session.State != "active" || res.Session.Username != "alice@example.com" ||
			len(res.Tokens) != 1 || res.Tokens[0].Cluster != "c1" || res.Tokens[0].Expired {
			t.Errorf("whoami = %+v", res)
		}
		if strings.Contains(raw, "\"token\"") || strings.Contains(raw, "token:") {
			t.Errorf("a token field in:\n%s", raw)
		}
	}
	t.Run("json", func(t *testing.T) {
		d, out, _ := h.deps(t)
		if err := h.run(t, d, "whoami", "--server", h.env.URL, "-o", "json"); err != nil {
			t.Fatal(err)
		}
		var res whoamiResult
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		check(t, res, out.String())
	})
	t.Run("yaml", func(t *testing.T) {
		d, out, _ := h.deps(t)
		if err := h.run(t, d, "whoami", "--server", h.env.URL, "--output=yaml"); err != nil {
			t.Fatal(err)
		}
		var res whoamiResult
		if err := yaml.Unmarshal([]byte(out.String()), &res); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		check(t, res, out.String())
	})
	t.Run("an ended session is printed, then the exit is non-zero", func(t *testing.T) {
		for _, s := range mustSessions(t, h) {
			_ = h.env.Sessions.End(t.Context(), s, "test", "admin")
		}
		d, out, _ := h.deps(t)
		err := h.run(t, d, "whoami", "--server", h.env.URL, "-o", "json")
		var res whoamiResult
		if jerr := json.Unmarshal([]byte(out.String()), &res); jerr != nil || res.Session.State != "ended" || err == nil {
			t.Errorf("state %q, error %v, json %v", res.Session.State, err, jerr)
		}
	})
	t.Run("an unknown format is refused", func(t *testing.T) {
		d, _, _ := h.deps(t)
		if err := h.run(t, d, "whoami", "--server", h.env.URL, "-o", "xml"); err == nil || !strings.Contains(err.Error(), "json or yaml") {
			t.Errorf("error: %v", err)
		}
	})
}

func TestKubeconfig_PrintAndOutputFile(t *testing.T) {
	h := newHarness(t, portaltest.Options{Configure: proxyC2})
	home := t.TempDir()
	wantArgs := func(t *testing.T, cfg *clientcmdapi.Config) {
		t.Helper()
		if cfg.CurrentContext != "c2" || len(cfg.Contexts) != 1 || cfg.Clusters["c2"] == nil || cfg.Clusters["c2"].Server != h.env.URL+"/clusters/c2" {
			t.Errorf("kubeconfig = %+v", cfg)
		}
		u := cfg.AuthInfos["c2"]
		if u == nil || u.Exec == nil || !strings.Contains(strings.Join(u.Exec.Args, " "), "--listen-address=127.0.0.1:8000") {
			t.Errorf("user = %+v", u)
		}
	}
	t.Run("--print writes the entries to stdout and changes no file", func(t *testing.T) {
		d, out, _ := h.deps(t)
		d.UserHomeDir = func() (string, error) { return home, nil }
		if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c2", "--print", "--listen-address", "127.0.0.1:8000"); err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.Load([]byte(out.String()))
		if err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		wantArgs(t, cfg)
		if _, err := os.Stat(filepath.Join(home, ".kube")); err == nil {
			t.Errorf("~/.kube was written")
		}
	})
	t.Run("-o writes a new file, and replaces one only with --force", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "new", "c2.kubeconfig")
		d, out, _ := h.deps(t)
		args := []string{"kubeconfig", "--server", h.env.URL, "--cluster", "c2", "-o", p, "--listen-address", "127.0.0.1:8000"}
		if err := h.run(t, d, args...); err != nil {
			t.Fatal(err)
		}
		if out.String() != "" {
			t.Errorf("stdout: %s", out)
		}
		cfg, err := clientcmd.LoadFromFile(p)
		if err != nil {
			t.Fatal(err)
		}
		wantArgs(t, cfg)
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v", fi.Mode())
		}
		if err := h.run(t, d, args...); err == nil || !strings.Contains(err.Error(), "--force") {
			t.Errorf("overwriting: %v", err)
		}
		if err := h.run(t, d, append(args, "--force")...); err != nil {
			t.Errorf("with --force: %v", err)
		}
	})
}

func TestKubeconfig_ChoosesTheFileAsKubectlDoes(t *testing.T) {
	h := newHarness(t, portaltest.Options{Configure: proxyC2})
	dir := t.TempDir()
	missing, existing := filepath.Join(dir, "missing"), filepath.Join(dir, "existing")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["other"] = &clientcmdapi.Cluster{Server: "https://other.example"}
	cfg.AuthInfos["other"] = &clientcmdapi.AuthInfo{Token: "other-token"}
	cfg.Contexts["other"] = &clientcmdapi.Context{Cluster: "other", AuthInfo: "other"}
	cfg.CurrentContext = "other"
	if err := clientcmd.WriteToFile(*cfg, existing); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", missing+string(filepath.ListSeparator)+existing)
	d, out, _ := h.deps(t)
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("the first file of $KUBECONFIG was created although a later one exists (kubectl writes to the first that exists)")
	}
	got, err := clientcmd.LoadFromFile(existing)
	if err != nil {
		t.Fatal(err)
	}
	if got.Contexts["c2"] == nil || got.AuthInfos["other"] == nil || got.CurrentContext != "other" {
		t.Errorf("%s = %+v", existing, got)
	}
	if !strings.Contains(out.String(), existing) {
		t.Errorf("output does not name the file: %s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.lock")); len(m) != 0 {
		t.Errorf("lock files left: %v", m)
	}
	// login --context finds the context through the same files.
	d, _, _ = h.deps(t)
	err = h.run(t, d, "whoami", "--context", "c2")
	if err == nil || !strings.Contains(err.Error(), "portcullis login --server="+h.env.URL+" --cluster=c2") {
		t.Errorf("whoami --context c2: %v", err)
	}
}

func TestKubectlPlugin_NameAndSuggestions(t *testing.T) {
	for argv0, want := range map[string]string{
		"/usr/local/bin/portcullis":                   "portcullis",
		"portcullis.exe":                              "portcullis",
		"/home/a/.krew/bin/kubectl-portcullis":        "kubectl portcullis",
		`C:\Users\a\.krew\bin\KUBECTL-PORTCULLIS.EXE`: "kubectl portcullis",
	} {
		if runtime.GOOS != "windows" && strings.Contains(argv0, `\`) {
			argv0 = strings.ReplaceAll(argv0, `\`, "/")
		}
		if got := commandName(argv0); got != want {
			t.Errorf("commandName(%q) = %q, want %q", argv0, got, want)
		}
	}
	h := newHarness(t, portaltest.Options{})
	d, out, _ := h.deps(t)
	d.Name = "kubectl portcullis"
	err := h.run(t, d, "exec-credential", "--server", h.env.URL, "--cluster", "c1")
	if err == nil || !strings.Contains(err.Error(), "kubectl portcullis login --server="+h.env.URL) {
		t.Errorf("error: %v", err)
	}
	if err := h.run(t, d, "--help"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubectl portcullis [command]") {
		t.Errorf("help does not say kubectl portcullis:\n%s", out)
	}
	ours := &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "/home/a/.krew/bin/kubectl-portcullis", Args: []string{"exec-credential"}}}
	if !kubeconfig.IsOurs(ours) {
		t.Errorf("an entry running kubectl-portcullis is not recognised as portcullis's")
	}
}
