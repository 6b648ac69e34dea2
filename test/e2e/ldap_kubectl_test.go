package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// ldapRBAC is what the cluster grants the directory's groups: corp:devs may
// use configmaps in default, corp:platform (which holds devs as a nested
// group) may list namespaces.
const ldapRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dev, namespace: default}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: corp-devs-dev, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "corp:devs"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: namespace-reader}
rules:
- {apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: corp-platform-namespace-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: namespace-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "corp:platform"}]
`

// ptyRun runs the portcullis CLI with a pseudo-terminal as its stdin,
// stdout and stderr, answering each prompt (a substring of the output)
// with its line once it appears. It returns everything the terminal showed.
func ptyRun(t *testing.T, env []string, answers [][2]string, args ...string) (string, error) {
	t.Helper()
	leader, follower := framework.OpenPTY(t)
	cmd := exec.Command(framework.PortcullisCLIBinary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = follower, follower, follower
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		out strings.Builder
	)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := leader.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	shown := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	for _, a := range answers {
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(shown(), a[0]) {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("the prompt %q never came; the terminal shows:\n%s", a[0], shown())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := io.WriteString(leader, a[1]+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the CLI did not finish; the terminal shows:\n%s", shown())
	}
	// Let the reader drain what the process wrote last.
	time.Sleep(100 * time.Millisecond)
	return shown(), err
}

func TestLDAP_KubectlWithTheExecPluginInWebhookAndProxyMode(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	l := framework.StartLDAP(t, framework.LDAPOptions{PKI: pki, Users: ldapTestUsers, Groups: ldapTestGroups})
	dir := framework.WorkDir(t)
	port := framework.FreePort(t)
	hooked := "- name: hooked\n  tokenLifetime: 10s\n  access: {allUsers: true}\n"
	webhook := "webhook:\n  clientCAFile: " + pki.ClientCA.CertFile + "\n"
	p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: ldapConfig(port, dir, l, false, hooked, webhook), Port: port})

	// kube-apiserver asks Portcullis's webhook for cluster "hooked".
	client := pki.IssueClient("kube-apiserver-webhook-client")
	webhookKubeconfig, err := exec.Command(framework.PortcullisServerBinary(t), "webhook-kubeconfig",
		"--config", p.ConfigPath, "--cluster", "hooked", "--cert-dir", p.CertDir,
		"--client-certificate", client.CertFile, "--client-key", client.KeyFile).Output()
	if err != nil {
		t.Fatalf("webhook-kubeconfig: %v", err)
	}
	api := framework.StartAPIServer(t, framework.APIServerOptions{PKI: pki, WebhookKubeconfig: string(webhookKubeconfig), WebhookVersion: "v1", WebhookCacheTTL: "1s"})
	admin := api.AdminKubeconfig()
	for _, manifest := range []string{filepath.Join(framework.RepoRoot(t), "artifacts", "rbac", "proxy-clusterrole.yaml"), "-"} {
		if out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: admin, Stdin: strings.NewReader(ldapRBAC)}, "apply", "-f", manifest); err != nil {
			t.Fatalf("applying %s: %v\n%s%s", manifest, err, out, stderr)
		}
	}
	tok, stderr, err := framework.Kubectl(t, admin, "create", "token", "portcullis-proxy", "-n", "portcullis", "--duration", "2h")
	if err != nil {
		t.Fatalf("kubectl create token: %v: %s", err, stderr)
	}
	tokenFile := filepath.Join(dir, "proxy-token")
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(tok)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The same kube-apiserver behind the proxy, as cluster "proxied": added
	// by a configuration reload.
	proxied := fmt.Sprintf("- name: proxied\n  tokenLifetime: 10s\n  access: {allUsers: true}\n  upstream:\n    server: %s\n    certificateAuthorityFile: %s\n    tokenFile: %s\n", api.URL, api.CAFile, tokenFile)
	if err := os.WriteFile(p.ConfigPath, []byte(ldapConfig(port, dir, l, false, hooked+proxied, webhook)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the proxied cluster to be configured", func() bool {
		resp, err := p.HTTPClient().Get(p.URL + portalapi.PathClusters)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out portalapi.ClustersResponse
		return json.NewDecoder(resp.Body).Decode(&out) == nil && len(out.Clusters) == 2
	})

	cli := func(t *testing.T, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(framework.PortcullisCLIBinary(t), args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("portcullis %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kubeconfigs := map[string]string{}
	for _, c := range []string{"hooked", "proxied"} {
		kubeconfigs[c] = filepath.Join(dir, c+".kubeconfig")
		args := []string{"kubeconfig", "--server", p.URL, "--cluster", c, "--certificate-authority", p.CACertFile(), "--kubeconfig", kubeconfigs[c]}
		if c == "hooked" {
			args = append(args, "--api-server", api.URL, "--api-server-ca", api.CAFile)
		}
		cli(t, nil, args...)
	}
	kubectl := func(t *testing.T, cluster string, env []string, args ...string) (string, string, error) {
		t.Helper()
		return framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: kubeconfigs[cluster], Env: env}, args...)
	}
	whoami := func(t *testing.T, cluster string, env []string) (string, []string) {
		t.Helper()
		out, stderr, err := kubectl(t, cluster, env, "auth", "whoami", "-o", "json")
		if err != nil {
			t.Fatalf("kubectl auth whoami (%s): %v\n%s", cluster, err, stderr)
		}
		var review struct {
			Status struct {
				UserInfo struct {
					Username string   `json:"username"`
					Groups   []string `json:"groups"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &review); err != nil {
			t.Fatalf("whoami: %v: %s", err, out)
		}
		return review.Status.UserInfo.Username, review.Status.UserInfo.Groups
	}

	aliceCache := t.TempDir()
	aliceEnv := []string{"PORTCULLIS_CACHE_DIR=" + aliceCache}
	t.Run("portcullis login asks in the terminal, with the password not echoed", func(t *testing.T) {
		out, err := ptyRun(t, aliceEnv, [][2]string{{"User name: ", "alice"}, {"Password for alice: ", "alice-pw"}},
			"login", "--server", p.URL, "--cluster", "hooked", "--certificate-authority", p.CACertFile())
		if err != nil {
			t.Fatalf("portcullis login: %v; the terminal shows:\n%s", err, out)
		}
		if strings.Contains(out, "alice-pw") {
			t.Fatalf("the password was echoed:\n%s", out)
		}
		if !strings.Contains(out, "Logged in to "+p.URL+" as corp:alice (groups: corp:devs, corp:platform)") {
			t.Fatalf("the terminal shows:\n%s", out)
		}
	})

	for _, cluster := range []string{"hooked", "proxied"} {
		t.Run("kubectl on "+cluster+" acts with the directory's groups, nested ones included", func(t *testing.T) {
			user, groups := whoami(t, cluster, aliceEnv)
			if user != "corp:alice" || !slices.Contains(groups, "corp:devs") || !slices.Contains(groups, "corp:platform") {
				t.Fatalf("whoami: %s %v", user, groups)
			}
			if _, stderr, err := kubectl(t, cluster, aliceEnv, "create", "configmap", "alice-"+cluster, "-n", "default"); err != nil {
				t.Fatalf("create configmap (RBAC on corp:devs): %v\n%s", err, stderr)
			}
			if _, stderr, err := kubectl(t, cluster, aliceEnv, "get", "namespaces"); err != nil {
				t.Fatalf("get namespaces (RBAC on corp:platform, nesting devs): %v\n%s", err, stderr)
			}
		})
	}

	t.Run("in CI the credentials come from the environment, and RBAC applies", func(t *testing.T) {
		pwFile := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(pwFile, []byte("bob-pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"PORTCULLIS_CACHE_DIR=" + t.TempDir(), "PORTCULLIS_USERNAME=bob", "PORTCULLIS_PASSWORD_FILE=" + pwFile}
		if user, groups := whoami(t, "proxied", env); user != "corp:bob" || !slices.Contains(groups, "operators") {
			t.Fatalf("whoami: %s %v", user, groups)
		}
		if _, stderr, err := kubectl(t, "proxied", env, "get", "configmaps", "-n", "default"); err == nil || !strings.Contains(stderr, "forbidden") {
			t.Fatalf("bob (not in corp:devs) listing configmaps: %v\n%s", err, stderr)
		}
		bad := []string{"PORTCULLIS_CACHE_DIR=" + t.TempDir(), "PORTCULLIS_USERNAME=bob", "PORTCULLIS_PASSWORD=not-bobs-password"}
		_, stderr, err := kubectl(t, "hooked", bad, "get", "configmaps", "-n", "default")
		if err == nil || !strings.Contains(stderr, "Invalid username or password") || strings.Contains(stderr, "not-bobs-password") {
			t.Fatalf("a wrong password from the environment: %v\n%s", err, stderr)
		}
	})

	t.Run("kubectl in a terminal lets the plugin ask for the user name and password", func(t *testing.T) {
		leader, follower := framework.OpenPTY(t)
		// Typed ahead: the terminal keeps the lines until the plugin reads
		// them (the password with echo off).
		if _, err := io.WriteString(leader, "dave\ndave-pw\n"); err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.Copy(io.Discard, leader) }()
		env := []string{"PORTCULLIS_CACHE_DIR=" + t.TempDir()}
		out, stderr, err := framework.KubectlWith(t, framework.KubectlOptions{Kubeconfig: kubeconfigs["hooked"], Env: env, Stdin: follower}, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if err != nil || out != "corp:dave" {
			t.Fatalf("kubectl auth whoami in a terminal: %q, %v\n%s", out, err, stderr)
		}
		if !strings.Contains(stderr, "User name: ") || !strings.Contains(stderr, "Password for dave: ") || strings.Contains(stderr, "dave-pw") {
			t.Fatalf("the plugin's prompts (kubectl's stderr):\n%s", stderr)
		}
	})

	t.Run("a user removed from a group loses its access at the next refresh", func(t *testing.T) {
		l.RemoveMember("devs", "alice")
		start := time.Now()
		waitFor(t, 60*time.Second, "alice's configmaps access to end", func() bool {
			_, stderr, err := kubectl(t, "hooked", aliceEnv, "get", "configmaps", "-n", "default")
			return err != nil && strings.Contains(stderr, "forbidden")
		})
		t.Logf("access ended %v after the directory change (token lifetime 10s)", time.Since(start).Round(time.Second))
		// The other cluster's token is refreshed when it expires, with the
		// same groups.
		waitFor(t, 30*time.Second, "alice's token for proxied to lose corp:devs and corp:platform", func() bool {
			user, groups := whoami(t, "proxied", aliceEnv)
			return user == "corp:alice" && !slices.Contains(groups, "corp:devs") && !slices.Contains(groups, "corp:platform")
		})
	})

	t.Run("a disabled user is logged out at the next refresh", func(t *testing.T) {
		l.SetDisabled("alice", true)
		var stderr string
		waitFor(t, 60*time.Second, "alice's session to end", func() bool {
			var err error
			_, stderr, err = kubectl(t, "proxied", aliceEnv, "get", "pods", "-n", "default")
			return err != nil && strings.Contains(stderr, "session")
		})
		// kubectl runs the plugin without a terminal here: it says to log in again.
		if !strings.Contains(stderr, "your session at "+p.URL+" has ended") || !strings.Contains(stderr, "portcullis login") {
			t.Fatalf("kubectl says:\n%s", stderr)
		}
		t.Logf("kubectl says:\n%s", stderr)
	})
}
