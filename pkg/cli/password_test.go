package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/portalapi"
)

// withUnreachableDirectory adds an LDAP identity provider "corp" whose
// directory does not answer: the CLI's side of a password login is tested
// here up to the portal's answer; logins that succeed are tested against
// slapd in test/e2e.
func withUnreachableDirectory(t *testing.T) portaltest.Options {
	pwFile := filepath.Join(t.TempDir(), "bind-password")
	if err := os.WriteFile(pwFile, []byte("bind-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := ""
	return portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.IdentityProviders = append(c.IdentityProviders, v1alpha1.IdentityProvider{
			Name: "corp", DisplayName: "Corp directory",
			LDAP: &v1alpha1.LDAPConfig{
				Hosts: []string{"127.0.0.1:1"}, BindDN: "cn=portcullis,dc=example,dc=com", BindPasswordFile: pwFile,
				UserSearch:     v1alpha1.LDAPUserSearch{BaseDN: "ou=people,dc=example,dc=com"},
				UsernamePrefix: &prefix, GroupsPrefix: &prefix,
			},
		})
	}}
}

func TestPasswordLogin_NeverReadsAPasswordWithoutATerminalOrTheEnvironment(t *testing.T) {
	h := newHarness(t, withUnreachableDirectory(t))
	d, _, _ := h.deps(t)
	d.Stdin = strings.NewReader("alice\nalice-pw\n") // a pipe, not a terminal
	err := h.run(t, d, "login", "--server", h.env.URL, "--cluster", "c1", "--idp", "corp")
	if err == nil || !strings.Contains(err.Error(), "no terminal") || !strings.Contains(err.Error(), "PORTCULLIS_PASSWORD") {
		t.Fatalf("login without a terminal: %v, want an error naming PORTCULLIS_USERNAME/PASSWORD", err)
	}
	if h.logins.Load() != 0 {
		t.Fatal("a browser was opened for an LDAP identity provider")
	}
}

func TestPasswordLogin_TakesTheCredentialsFromTheEnvironmentEvenForKubectl(t *testing.T) {
	h := newHarness(t, withUnreachableDirectory(t))
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("alice-pw\nignored second line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.env2["PORTCULLIS_USERNAME"] = "alice"
	h.env2["PORTCULLIS_PASSWORD_FILE"] = pwFile
	// kubectl without a terminal: with credentials in the environment the
	// plugin logs in (the directory is down here: the portal's 503 comes
	// back, naming it), where it would otherwise only say what to run.
	_, stderr, err := h.execCredential(t, false)
	if err == nil || !strings.Contains(err.Error(), "Corp directory") || !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("exec-credential with credentials in the environment: %v\n%s", err, stderr)
	}
	if strings.Contains(err.Error(), "alice-pw") || strings.Contains(stderr, "alice-pw") {
		t.Fatalf("the password is shown: %v\n%s", err, stderr)
	}
	if h.logins.Load() != 0 {
		t.Fatal("a browser was opened for an LDAP identity provider")
	}
}

func TestPasswordLogin_PicksTheLDAPIdentityProvider(t *testing.T) {
	oidc := portalapi.IdPInfo{Name: "dex", Type: portalapi.IdPTypeOIDC}
	old := portalapi.IdPInfo{Name: "legacy"} // a server that predates Type
	corp := portalapi.IdPInfo{Name: "corp", Type: portalapi.IdPTypeLDAP}
	for _, c := range []struct {
		name  string
		idp   string
		idps  []portalapi.IdPInfo
		env   bool
		want  string
		isPwd bool
	}{
		{name: "--idp names a directory", idp: "corp", idps: []portalapi.IdPInfo{oidc, corp}, want: "corp", isPwd: true},
		{name: "--idp names an OpenID Connect provider", idp: "dex", idps: []portalapi.IdPInfo{oidc, corp}},
		{name: "the only provider is a directory", idps: []portalapi.IdPInfo{corp}, want: "corp", isPwd: true},
		{name: "a choice, and nothing in the environment: the browser's chooser", idps: []portalapi.IdPInfo{oidc, corp}},
		{name: "a choice, and credentials in the environment: the directory", idps: []portalapi.IdPInfo{oidc, corp}, env: true, want: "corp", isPwd: true},
		{name: "an old server's providers are OpenID Connect", idps: []portalapi.IdPInfo{old}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			if c.env {
				env = map[string]string{usernameEnv: "alice", passwordEnv: "pw"}
			}
			d := &Deps{Getenv: func(k string) string { return env[k] }}
			got, ok := d.passwordIdP(&target{idp: c.idp}, &portalapi.ClustersResponse{IdentityProviders: c.idps})
			if ok != c.isPwd || got.Name != c.want {
				t.Fatalf("passwordIdP = %q, %v; want %q, %v", got.Name, ok, c.want, c.isPwd)
			}
		})
	}
}

func TestPasswordLogin_ReadsOnlyThePasswordFilesFirstLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if pw, err := readPasswordFile(write("crlf", "p@ss word\r\nnext\n")); err != nil || pw != "p@ss word" {
		t.Errorf("CRLF file: %q, %v", pw, err)
	}
	if _, err := readPasswordFile(write("empty", "\n")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := readPasswordFile(write("big", strings.Repeat("x", 5000))); err == nil {
		t.Error("a 5000-byte file was taken as a password")
	}
	if _, err := readPasswordFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), passwordFileEnv) {
		t.Errorf("missing file: %v", err)
	}
}
