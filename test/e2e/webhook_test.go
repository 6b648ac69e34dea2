package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// webhookStack is Dex, Portcullis and the pieces kube-apiserver needs to
// trust Portcullis, for one test.
type webhookStack struct {
	pki        *framework.PKI
	dex        *framework.Dex
	portcullis *framework.Portcullis
	configPath string
	auditLog   string
	// minted holds tokens minted offline before the server started
	// (the embedded store is single-process).
	minted map[string]string
	// foreign is a token minted by another Portcullis (other keys, same issuer).
	foreign string
}

const webhookCluster = "c1"

// dexIdentityProvider is the configuration of Dex as an identity provider
// whose ID tokens are accepted as bearer tokens (username: the email), and
// the group mapping that puts alice@example.com, a static user without
// groups, in devs.
func dexIdentityProvider(dex *framework.Dex) string {
	return fmt.Sprintf(`identityProviders:
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
groupMappings:
- match:
    emails: [alice@example.com]
  groups: [devs]
`, dex.IssuerURL, dex.CAFile, dex.ClientID)
}

func portcullisConfig(port int, stateDir string, dex *framework.Dex, clientCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
%sclusters:
- name: %s
  access:
    groups: [devs, ops]
webhook:
  clientCAFile: %s
`, port, filepath.Join(stateDir, "state.db"), dexIdentityProvider(dex), webhookCluster, clientCA)
}

// mint runs `portcullis-server mint` against a configuration whose store is
// not held by a running server.
func mint(t testing.TB, configPath string, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auditLog := filepath.Join(filepath.Dir(configPath), "mint-audit.log")
	full := append([]string{"mint", "--config", configPath, "--audit-policy-file", policy, "--audit-log-path", auditLog}, args...)
	cmd := exec.Command(framework.PortcullisServerBinary(t), full...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("mint %v: %v: %s", args, err, ee.Stderr)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func startWebhookStack(t *testing.T) *webhookStack {
	t.Helper()
	s := &webhookStack{pki: framework.NewPKI(t), minted: map[string]string{}}
	s.dex = framework.StartDex(t, framework.DexOptions{PKI: s.pki, PasswordGrant: true})
	port := framework.FreePort(t)
	stateDir := t.TempDir()
	cfg := portcullisConfig(port, stateDir, s.dex, s.pki.ClientCA.CertFile)
	s.configPath = filepath.Join(stateDir, "config.yaml")
	if err := os.WriteFile(s.configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"carol":   {"--user", "carol", "--group", "ops", "--group", "oncall"},
		"expired": {"--user", "carol", "--group", "ops", "--ttl", "2s"},
		"mallory": {"--user", "mallory", "--group", "nobody"},
		"c2":      {"--user", "carol", "--group", "ops", "--cluster", "c2"},
	} {
		cluster := webhookCluster
		if name == "c2" {
			// A cluster the configuration does not know: mint refuses it.
			if _, err := mint(t, s.configPath, append(args, "--reason", "e2e")...); err == nil {
				t.Fatalf("mint for an unknown cluster succeeded")
			}
			continue
		}
		tok, err := mint(t, s.configPath, append(args, "--cluster", cluster, "--reason", "e2e test")...)
		if err != nil {
			t.Fatal(err)
		}
		s.minted[name] = tok
	}
	// A second Portcullis with the same issuer URL but its own store.
	otherDir := t.TempDir()
	otherCfg := filepath.Join(otherDir, "config.yaml")
	if err := os.WriteFile(otherCfg, []byte(portcullisConfig(port, otherDir, s.dex, s.pki.ClientCA.CertFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.foreign, err = mint(t, otherCfg, "--user", "carol", "--group", "ops", "--cluster", webhookCluster, "--reason", "e2e"); err != nil {
		t.Fatal(err)
	}
	auditPolicy := filepath.Join(stateDir, "audit-policy.yaml")
	if err := os.WriteFile(auditPolicy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.auditLog = filepath.Join(stateDir, "audit.log")
	s.portcullis = framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: cfg, Port: port, ExtraArgs: []string{
		"--audit-policy-file=" + auditPolicy, "--audit-log-path=" + s.auditLog, "--audit-log-mode=blocking",
	}})
	return s
}

// webhookKubeconfig runs `portcullis-server webhook-kubeconfig` as an
// operator would.
func (s *webhookStack) webhookKubeconfig(t *testing.T) string {
	t.Helper()
	client := s.pki.IssueClient("kube-apiserver-webhook-client")
	out, err := exec.Command(framework.PortcullisServerBinary(t), "webhook-kubeconfig",
		"--config", s.configPath, "--cluster", webhookCluster, "--cert-dir", s.portcullis.CertDir,
		"--client-certificate", client.CertFile, "--client-key", client.KeyFile).Output()
	if err != nil {
		t.Fatalf("webhook-kubeconfig: %v", err)
	}
	return string(out)
}

type whoamiResult struct {
	Status struct {
		UserInfo struct {
			Username string              `json:"username"`
			Groups   []string            `json:"groups"`
			Extra    map[string][]string `json:"extra"`
		} `json:"userInfo"`
	} `json:"status"`
}

func whoamiJSON(t *testing.T, kubeconfig string) (*whoamiResult, string, error) {
	t.Helper()
	out, stderr, err := framework.Kubectl(t, kubeconfig, "auth", "whoami", "-o", "json")
	if err != nil {
		return nil, stderr, err
	}
	var w whoamiResult
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("kubectl auth whoami -o json: %v: %s", err, out)
	}
	return &w, stderr, nil
}

func hasAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func TestWebhookMode(t *testing.T) {
	t.Parallel()
	s := startWebhookStack(t)
	idToken, err := s.dex.IDToken(context.Background(), "alice@example.com", "alice-password", s.dex.ClientID, s.dex.ClientSecret, []string{"openid", "email", "profile"})
	if err != nil {
		t.Fatal(err)
	}
	webhookConfig := s.webhookKubeconfig(t)

	t.Cleanup(func() {
		// Every review is an audit event with the reviewed user and the
		// decision, and no token ever reaches the audit log.
		data, err := os.ReadFile(s.auditLog)
		if err != nil {
			t.Errorf("reading Portcullis's audit log: %v", err)
			return
		}
		log := string(data)
		for _, want := range []string{`"portcullis.dev/user":"carol"`, `"portcullis.dev/user":"alice@example.com"`, `"portcullis.dev/decision":"deny"`, `"portcullis.dev/cluster":"c1"`} {
			if !strings.Contains(log, want) {
				t.Errorf("Portcullis's audit log lacks %s", want)
			}
		}
		for name, tok := range s.minted {
			if strings.Contains(log, tok) {
				t.Errorf("the %s token appears in the audit log", name)
			}
		}
		if strings.Contains(log, idToken) {
			t.Errorf("the Dex ID token appears in the audit log")
		}
	})

	for _, version := range []string{"v1", "v1beta1"} {
		t.Run("kube-apiserver with webhook version "+version, func(t *testing.T) {
			api := framework.StartAPIServer(t, framework.APIServerOptions{
				PKI:               s.pki,
				WebhookKubeconfig: webhookConfig,
				WebhookVersion:    version,
				WebhookCacheTTL:   "1s",
			})

			t.Run("a minted token shows its user and groups in kubectl auth whoami", func(t *testing.T) {
				w, stderr, err := whoamiJSON(t, api.KubeconfigFor(s.minted["carol"]))
				if err != nil {
					t.Fatalf("kubectl auth whoami: %v: %s", err, stderr)
				}
				if w.Status.UserInfo.Username != "carol" || !hasAll(w.Status.UserInfo.Groups, "ops", "oncall", "system:authenticated") {
					t.Fatalf("whoami = %+v, want carol in ops, oncall", w.Status.UserInfo)
				}
				if got := w.Status.UserInfo.Extra["portcullis.dev/cluster"]; len(got) != 1 || got[0] != webhookCluster {
					t.Errorf("extra portcullis.dev/cluster = %v, want [%s]", got, webhookCluster)
				}
			})

			t.Run("a Dex ID token without groups gets the operator's group mapping", func(t *testing.T) {
				w, stderr, err := whoamiJSON(t, api.KubeconfigFor(idToken))
				if err != nil {
					t.Fatalf("kubectl auth whoami: %v: %s", err, stderr)
				}
				if w.Status.UserInfo.Username != "alice@example.com" || !hasAll(w.Status.UserInfo.Groups, "devs") {
					t.Fatalf("whoami = %+v, want alice@example.com in devs", w.Status.UserInfo)
				}
			})

			t.Run("RBAC bound to the mapped group grants access, and its absence denies it", func(t *testing.T) {
				ns := "rbac-" + version
				admin := api.AdminKubeconfig()
				if _, stderr, err := framework.Kubectl(t, admin, "create", "namespace", ns); err != nil {
					t.Fatalf("create namespace: %v: %s", err, stderr)
				}
				alice := api.KubeconfigFor(idToken)
				if _, stderr, err := framework.Kubectl(t, alice, "get", "configmaps", "-n", ns); err == nil || !strings.Contains(stderr, "forbidden") {
					t.Fatalf("before the RoleBinding: err=%v stderr=%s, want forbidden", err, stderr)
				}
				// Not the aggregated "view" role: without kube-controller-manager
				// nothing fills in its rules.
				if _, stderr, err := framework.Kubectl(t, admin, "create", "role", "cm-reader", "-n", ns, "--verb=get,list", "--resource=configmaps"); err != nil {
					t.Fatalf("create role: %v: %s", err, stderr)
				}
				if _, stderr, err := framework.Kubectl(t, admin, "create", "rolebinding", "devs-cm-reader", "-n", ns, "--role=cm-reader", "--group=devs"); err != nil {
					t.Fatalf("create rolebinding: %v: %s", err, stderr)
				}
				// RBAC sees the new binding once its informer has it.
				var last string
				if err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
					_, stderr, err := framework.Kubectl(t, alice, "get", "configmaps", "-n", ns)
					last = stderr
					return err == nil, nil
				}); err != nil {
					t.Fatalf("after the RoleBinding alice still cannot list configmaps: %s", last)
				}
			})

			// The exchange does not depend on the webhook version: run it once.
			if version == "v1" {
				t.Run("the CLI exchanges a Dex ID token file for a cluster token that kube-apiserver accepts", func(t *testing.T) {
					dir := t.TempDir()
					idFile := filepath.Join(dir, "id-token")
					if err := os.WriteFile(idFile, []byte(idToken), 0o600); err != nil {
						t.Fatal(err)
					}
					run := func(args ...string) string {
						cmd := exec.Command(framework.PortcullisCLIBinary(t), args...)
						cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "PORTCULLIS_CACHE_DIR=" + filepath.Join(dir, "cache")}
						out, err := cmd.CombinedOutput()
						if err != nil {
							t.Fatalf("portcullis %v: %v\n%s", args, err, out)
						}
						if strings.Contains(string(out), idToken) {
							t.Fatalf("portcullis %v printed the ID token", args)
						}
						return string(out)
					}
					common := []string{"--server", s.portcullis.URL, "--cluster", webhookCluster, "--certificate-authority", s.portcullis.CACertFile()}
					run(append([]string{"login", "--id-token-file", idFile}, common...)...)
					var cred struct {
						Status struct {
							Token string `json:"token"`
						} `json:"status"`
					}
					if err := json.Unmarshal([]byte(run(append([]string{"exec-credential"}, common...)...)), &cred); err != nil || cred.Status.Token == "" {
						t.Fatalf("exec-credential did not print an ExecCredential with a token: %v", err)
					}
					w, stderr, err := whoamiJSON(t, api.KubeconfigFor(cred.Status.Token))
					if err != nil {
						t.Fatalf("kubectl auth whoami with the exchanged token: %v: %s", err, stderr)
					}
					if w.Status.UserInfo.Username != "alice@example.com" || !hasAll(w.Status.UserInfo.Groups, "devs") {
						t.Fatalf("whoami = %+v, want alice@example.com in devs", w.Status.UserInfo)
					}
				})
			}

			t.Run("bad tokens are refused as Unauthorized", func(t *testing.T) {
				parts := strings.Split(s.minted["carol"], ".")
				tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
				// "expired" was minted with a 2s lifetime before the stack
				// started, plus the verifier's 30s leeway.
				if err := wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, true, func(context.Context) (bool, error) {
					_, _, err := whoamiJSON(t, api.KubeconfigFor(s.minted["expired"]))
					return err != nil, nil
				}); err != nil {
					t.Fatalf("the 2s token never expired: %v", err)
				}
				for name, tok := range map[string]string{
					"expired":                 s.minted["expired"],
					"tampered signature":      tampered,
					"from another Portcullis": s.foreign,
					"not a JWT":               "definitely-not-a-jwt",
					"refused by policy":       s.minted["mallory"],
				} {
					_, stderr, err := whoamiJSON(t, api.KubeconfigFor(tok))
					if err == nil || !strings.Contains(stderr, "Unauthorized") {
						t.Errorf("%s: err=%v stderr=%q, want Unauthorized", name, err, stderr)
					}
				}
			})
		})
	}
}

func TestNativeMode_KubeAPIServerTrustsPortcullisIssuer(t *testing.T) {
	t.Parallel()
	s := startWebhookStack(t)
	authnConfig := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: %s
    certificateAuthority: |
%s
    audiences: [%s]
  claimMappings:
    username:
      claim: username
      prefix: ""
    groups:
      claim: groups
      prefix: ""
`, s.portcullis.URL, indentLines(string(s.portcullis.CACertPEM()), "      "), webhookCluster)
	api := framework.StartAPIServer(t, framework.APIServerOptions{PKI: s.pki, AuthenticationConfig: authnConfig})
	// kube-apiserver fetches the discovery document and JWKS in the
	// background after it starts.
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		w, stderr, err := whoamiJSON(t, api.KubeconfigFor(s.minted["carol"]))
		if err != nil {
			last = fmt.Sprintf("%v: %s", err, stderr)
			return false, nil
		}
		if w.Status.UserInfo.Username != "carol" || !hasAll(w.Status.UserInfo.Groups, "ops", "oncall") {
			return false, fmt.Errorf("whoami = %+v, want carol in ops, oncall", w.Status.UserInfo)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("kube-apiserver never accepted the minted token natively: %v (last: %s)", err, last)
	}
	if _, stderr, err := whoamiJSON(t, api.KubeconfigFor(s.foreign)); err == nil {
		t.Fatalf("a token from another Portcullis was accepted natively: %s", stderr)
	}
}

func indentLines(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func TestPolicyChangesApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	s := startWebhookStack(t)
	api := framework.StartAPIServer(t, framework.APIServerOptions{
		PKI: s.pki, WebhookKubeconfig: s.webhookKubeconfig(t), WebhookVersion: "v1", WebhookCacheTTL: "1s",
	})
	mallory := api.KubeconfigFor(s.minted["mallory"])
	if _, stderr, err := whoamiJSON(t, mallory); err == nil {
		t.Fatalf("mallory (group nobody) was admitted before the policy allowed it: %s", stderr)
	}
	data, err := os.ReadFile(s.portcullis.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// A broken file first: the server must keep its last good configuration.
	if err := os.WriteFile(s.portcullis.ConfigPath, []byte("apiVersion: config.portcullis.dev/v1alpha1\nkind: PortcullisConfiguration\nbogus: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.portcullis.Process.WaitUntil(context.Background(), 20*time.Second, "the invalid file to be reported", func(context.Context) error {
		if !strings.Contains(s.portcullis.Process.Log(), "keeping the current configuration") {
			return fmt.Errorf("not yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := whoamiJSON(t, api.KubeconfigFor(s.minted["carol"])); err != nil {
		t.Fatalf("carol lost access while the file was invalid: %v: %s", err, stderr)
	}
	admitAll := strings.Replace(string(data), "groups: [devs, ops]", "groups: [devs, ops, nobody]", 1)
	if err := os.WriteFile(s.portcullis.ConfigPath, []byte(admitAll), 0o600); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		w, _, err := whoamiJSON(t, mallory)
		return err == nil && w.Status.UserInfo.Username == "mallory", nil
	})
	if err != nil {
		t.Fatalf("mallory was never admitted after the policy change: %v", err)
	}
}
