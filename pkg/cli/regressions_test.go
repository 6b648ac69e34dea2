package cli

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// Regression tests for the CLI bugs found by trying it as a kubectl user
// would (issue 14).

func proxyC2(c *v1alpha1.PortcullisConfiguration) {
	c.Clusters[1].Upstream = &v1alpha1.Upstream{Server: "https://upstream.example"}
}

func TestKubeconfig_KeepsCacheDirInTheExecArguments(t *testing.T) {
	h := newHarness(t, portaltest.Options{Configure: proxyC2})
	d, _, _ := h.deps(t)
	path := filepath.Join(t.TempDir(), "config")
	mine := filepath.Join(t.TempDir(), "my-cache")
	if err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c2", "--kubeconfig", path, "--cache-dir", mine); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(cfg.AuthInfos["c2"].Exec.Args, " ")
	if !strings.Contains(args, "--cache-dir="+mine) {
		t.Errorf("exec args %q lack --cache-dir=%s: kubectl would use another cache than the one asked for", args, mine)
	}
}

func TestKubeconfig_RefusesAnAPIServerThatIsNotAURL(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	for _, bad := range []string{"notaurl", "kube.example:6443", "ftp://kube.example", "https://", "http://kube.example:6443"} {
		t.Run(bad+" is refused and nothing is written", func(t *testing.T) {
			d, _, _ := h.deps(t)
			path := filepath.Join(t.TempDir(), "config")
			err := h.run(t, d, "kubeconfig", "--server", h.env.URL, "--cluster", "c1", "--kubeconfig", path, "--api-server", bad)
			if err == nil || !strings.Contains(err.Error(), "--api-server") || !strings.Contains(err.Error(), "https://") {
				t.Errorf("error: %v", err)
			}
			if _, err := os.Stat(path); err == nil {
				t.Errorf("a kubeconfig was written")
			}
		})
	}
}

func TestLogin_SaysTheContextDoesNotExist(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	path := filepath.Join(t.TempDir(), "config")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["a"] = &clientcmdapi.Cluster{Server: "https://a.example"}
	cfg.AuthInfos["a"] = &clientcmdapi.AuthInfo{Token: "x"}
	cfg.Contexts["a"] = &clientcmdapi.Context{Cluster: "a", AuthInfo: "a"}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"login", "whoami", "logout"} {
		t.Run(cmd+" names the missing context and the ones there are", func(t *testing.T) {
			d, _, _ := h.deps(t)
			err := h.run(t, d, cmd, "--kubeconfig", path, "--context", "nosuch", "--server", h.env.URL, "--no-browser")
			if cmd != "login" {
				err = h.run(t, d, cmd, "--kubeconfig", path, "--context", "nosuch", "--server", h.env.URL)
			}
			if err == nil || !strings.Contains(err.Error(), `context "nosuch"`) || !strings.Contains(err.Error(), "a") {
				t.Errorf("error: %v", err)
			}
		})
	}
	t.Run("a context that does not use portcullis is named as such", func(t *testing.T) {
		d, _, _ := h.deps(t)
		err := h.run(t, d, "whoami", "--kubeconfig", path, "--context", "a")
		if err == nil || !strings.Contains(err.Error(), `context "a"`) || !strings.Contains(err.Error(), "portcullis") {
			t.Errorf("error: %v", err)
		}
	})
}

func TestWhoami_FailsOnAnEndedSession(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	d, _, _ := h.deps(t)
	if err := h.run(t, d, "login", "--server", h.env.URL); err != nil {
		t.Fatal(err)
	}
	for _, s := range mustSessions(t, h) {
		_ = h.env.Sessions.End(context.Background(), s, "test", "admin")
	}
	d, out, _ := h.deps(t)
	err := h.run(t, d, "whoami", "--server", h.env.URL)
	if err == nil {
		t.Fatalf("whoami succeeded on an ended session:\n%s", out)
	}
	if !strings.Contains(err.Error(), "ended") || !strings.Contains(err.Error(), "portcullis login --server="+h.env.URL) {
		t.Errorf("error: %v", err)
	}
	t.Run("and when never logged in", func(t *testing.T) {
		d, _, _ := h.deps(t)
		h.env2["PORTCULLIS_CACHE_DIR"] = t.TempDir()
		defer func() { h.env2["PORTCULLIS_CACHE_DIR"] = h.cacheDir }()
		err := h.run(t, d, "whoami", "--server", h.env.URL)
		if err == nil || !strings.Contains(err.Error(), "not logged in") {
			t.Errorf("error: %v", err)
		}
	})
}

func TestLogout_OfAnUnknownSessionDoesNotClaimItRevokedTokens(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	d, _, _ := h.deps(t)
	if err := h.run(t, d, "login", "--server", h.env.URL); err != nil {
		t.Fatal(err)
	}
	for _, s := range mustSessions(t, h) {
		_ = h.env.Sessions.End(context.Background(), s, "test", "admin")
	}
	d, out, _ := h.deps(t)
	if err := h.run(t, d, "logout", "--server", h.env.URL); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "no longer work") || !strings.Contains(out.String(), "had already ended") {
		t.Errorf("logout output: %s", out)
	}
}

func TestCacheDir_TheUsersDirectoryIsNeverChmodded(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are ACLs on Windows")
	}
	h := newHarness(t, portaltest.Options{})
	home := t.TempDir()
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	d, _, _ := h.deps(t)
	if err := h.run(t, d, "login", "--server", h.env.URL, "--cache-dir", home); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(home); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the directory given as --cache-dir became %v (%v)", fi.Mode().Perm(), err)
	}
	own := filepath.Join(home, "portcullis")
	if fi, err := os.Stat(own); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("portcullis's own cache directory: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(own, "*.json")); len(m) != 1 {
		t.Errorf("cache files in %s: %v", own, m)
	}

	t.Run("a cache directory others can read is refused, not changed", func(t *testing.T) {
		loose := t.TempDir()
		if err := os.Mkdir(filepath.Join(loose, "portcullis"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(loose, "portcullis"), 0o755); err != nil {
			t.Fatal(err)
		}
		d, _, _ := h.deps(t)
		err := h.run(t, d, "whoami", "--server", h.env.URL, "--cache-dir", loose)
		if err == nil || !strings.Contains(err.Error(), "chmod 700") {
			t.Errorf("error: %v", err)
		}
		if fi, _ := os.Stat(filepath.Join(loose, "portcullis")); fi.Mode().Perm() != 0o755 {
			t.Errorf("mode changed to %v", fi.Mode().Perm())
		}
	})
}

func TestIsTerminal_DevNullIsNotATerminal(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Errorf("%s is taken for a terminal: exec-credential would wait for a browser login nobody sees", os.DevNull)
	}
}

func TestExecCredential_WithoutATerminalFailsFast(t *testing.T) {
	h := newHarness(t, portaltest.Options{})
	d, _, _ := h.deps(t)
	start := time.Now()
	err := h.run(t, d, "exec-credential", "--server", h.env.URL, "--cluster", "c1")
	if err == nil || !strings.Contains(err.Error(), "portcullis login --server="+h.env.URL) {
		t.Errorf("error: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v", took)
	}
	if h.logins.Load() != 0 {
		t.Errorf("a browser login was started without a terminal")
	}
}
