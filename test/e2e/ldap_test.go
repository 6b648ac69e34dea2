package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// ldapStack is a slapd directory and a Portcullis whose only identity
// provider is that directory ("corp", prefix "corp:"), with cluster c1.
type ldapStack struct {
	pki        *framework.PKI
	ldap       *framework.LDAP
	portcullis *framework.Portcullis
	dir        string
	port       int
}

// ldapConfig is the configuration of an ldapStack; clusters is the YAML of
// its clusters list (c1 admitting everybody when empty).
func ldapConfig(port int, dir string, l *framework.LDAP, startTLS bool, clusters, extra string) string {
	if clusters == "" {
		clusters = "- name: c1\n  tokenLifetime: 15s\n  access: {allUsers: true}\n"
	}
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
identityProviders:
%sgroupMappings:
- match:
    groups: [corp:ops]
  groups: [operators]
clusters:
%s%s`, port, filepath.Join(dir, "state.db"), l.IdentityProviderYAML("corp", "corp:", startTLS, ""), clusters, extra)
}

func startLDAPStack(t *testing.T, startTLS bool) *ldapStack {
	t.Helper()
	s := &ldapStack{pki: framework.NewPKI(t), dir: framework.WorkDir(t)}
	s.ldap = framework.StartLDAP(t, framework.LDAPOptions{PKI: s.pki, Users: ldapTestUsers, Groups: ldapTestGroups})
	s.port = framework.FreePort(t)
	s.portcullis = framework.StartPortcullis(t, framework.PortcullisOptions{
		ConfigYAML: ldapConfig(s.port, s.dir, s.ldap, startTLS, "", ""),
		Port:       s.port,
	})
	return s
}

// ldapAnswer is an answer of the portal's JSON API to a password login or refresh.
type ldapAnswer struct {
	status int
	token  portalapi.TokenResponse
	err    portalapi.OAuthError
	raw    string
	header http.Header
}

func (s *ldapStack) post(t *testing.T, path string, body any) ldapAnswer {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.portcullis.HTTPClient().Post(s.portcullis.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := ldapAnswer{status: resp.StatusCode, raw: string(raw), header: resp.Header}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &a.token); err != nil {
			t.Fatalf("%s: %v: %s", path, err, raw)
		}
	} else if err := json.Unmarshal(raw, &a.err); err != nil {
		t.Fatalf("%s answered %d with %s", path, resp.StatusCode, raw)
	}
	return a
}

func (s *ldapStack) passwordLogin(t *testing.T, user, password string) ldapAnswer {
	t.Helper()
	return s.post(t, portalapi.PathPassword, map[string]string{"username": user, "password": password, "cluster": "c1"})
}

func (s *ldapStack) refresh(t *testing.T, refreshToken string) ldapAnswer {
	t.Helper()
	return s.post(t, portalapi.PathRefresh, map[string]string{"refresh_token": refreshToken, "cluster": "c1"})
}

func TestLDAP_PasswordLoginRefreshAndOutagesThroughThePortal(t *testing.T) {
	t.Parallel()
	s := startLDAPStack(t, true)

	t.Run("the CLI learns that the identity provider takes a password", func(t *testing.T) {
		resp, err := s.portcullis.HTTPClient().Get(s.portcullis.URL + portalapi.PathClusters)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out portalapi.ClustersResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		if len(out.IdentityProviders) != 1 || out.IdentityProviders[0] != (portalapi.IdPInfo{Name: "corp", DisplayName: "Example directory", Type: portalapi.IdPTypeLDAP}) {
			t.Fatalf("identity providers: %+v", out.IdentityProviders)
		}
	})

	var aliceRefresh string
	t.Run("a login creates a session with the directory's groups and the group mappings", func(t *testing.T) {
		a := s.passwordLogin(t, "alice", "alice-pw")
		if a.status != http.StatusOK {
			t.Fatalf("alice: %d %s", a.status, a.raw)
		}
		if a.token.Session.Username != "corp:alice" || !slices.Equal(a.token.Session.Groups, []string{"corp:devs", "corp:platform"}) ||
			a.token.Session.IdentityProvider != "corp" || a.token.AccessToken == "" || a.token.RefreshToken == "" {
			t.Fatalf("alice's session: %+v", a.token.Session)
		}
		aliceRefresh = a.token.RefreshToken
		b := s.passwordLogin(t, "bob", "bob-pw")
		if b.status != http.StatusOK || !slices.Equal(b.token.Session.Groups, []string{"corp:ops", "operators"}) {
			t.Fatalf("bob (groupMappings add operators to corp:ops): %d %+v", b.status, b.token.Session)
		}
	})

	t.Run("the CLI's browser flow through the password form hands a one-time code to its loopback listener", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		redirect := "http://127.0.0.1:1/callback"
		q := url.Values{"cli_redirect": {redirect}, "cli_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "cli_state": {"st4te"}, "cluster": {"c1"}}
		b := s.portcullis.HTTPClient()
		jar, _ := cookiejar.New(nil)
		b.Jar = jar
		b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := b.Get(s.portcullis.URL + "/login/corp?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		form := url.Values{"csrf": {formValue(string(body), "csrf")}, "username": {"alice"}, "password": {"alice-pw"}}
		for _, k := range []string{"cli_redirect", "cli_challenge", "cli_state", "cluster"} {
			form.Set(k, formValue(string(body), k))
		}
		resp, err = b.PostForm(s.portcullis.URL+"/login/corp", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), redirect+"?") || loc.Query().Get("state") != "st4te" || loc.Query().Get("code") == "" {
			t.Fatalf("the form's answer: %s, Location %q", resp.Status, resp.Header.Get("Location"))
		}
		a := s.post(t, portalapi.PathToken, map[string]string{"grant_type": "authorization_code", "code": loc.Query().Get("code"), "code_verifier": verifier, "redirect_uri": redirect})
		if a.status != http.StatusOK || a.token.Session.Username != "corp:alice" || a.token.ClusterTokens["c1"].Token == "" {
			t.Fatalf("redeeming the code: %d %s", a.status, a.raw)
		}
	})

	t.Run("every refusal is one generic answer that never echoes the password", func(t *testing.T) {
		for _, c := range []struct{ user, password string }{
			{"alice", "wrong-password-x1"}, {"nobody", "wrong-password-x2"}, {"carol", "carol-pw"}, {"*", "wrong-password-x3"}, {"alice)(uid=*", "alice-pw"},
		} {
			a := s.passwordLogin(t, c.user, c.password)
			if a.status != http.StatusUnauthorized || a.err.Code != "invalid_grant" || a.err.Description != "Invalid username or password." {
				t.Errorf("%q: %d %s, want 401 invalid_grant \"Invalid username or password.\"", c.user, a.status, a.raw)
			}
			if strings.Contains(a.raw, c.password) {
				t.Errorf("the answer echoes the password: %s", a.raw)
			}
		}
		log, _ := os.ReadFile(s.portcullis.Process.LogPath)
		for _, pw := range []string{"alice-pw", "bob-pw", "wrong-password-x1", "carol-pw", s.ldap.BindPassword} {
			if bytes.Contains(log, []byte(pw)) {
				t.Errorf("the server's log holds the password %q", pw)
			}
		}
	})

	t.Run("group changes apply at the next refresh", func(t *testing.T) {
		s.ldap.RemoveMember("devs", "alice")
		s.ldap.AddMember("ops", "alice")
		a := s.refresh(t, aliceRefresh)
		if a.status != http.StatusOK {
			t.Fatalf("refresh: %d %s", a.status, a.raw)
		}
		if !slices.Equal(a.token.Session.Groups, []string{"corp:ops", "operators"}) {
			t.Fatalf("groups after moving alice from devs to ops: %v", a.token.Session.Groups)
		}
		aliceRefresh = a.token.RefreshToken
		s.ldap.RemoveMember("ops", "alice")
		s.ldap.AddMember("devs", "alice")
	})

	t.Run("a disabled or deleted user loses the session at the next refresh", func(t *testing.T) {
		s.ldap.AddUser(framework.LDAPUser{Name: "gina", Password: "gina-pw"})
		s.ldap.AddUser(framework.LDAPUser{Name: "hank", Password: "hank-pw"})
		gina, hank := s.passwordLogin(t, "gina", "gina-pw"), s.passwordLogin(t, "hank", "hank-pw")
		if gina.status != http.StatusOK || hank.status != http.StatusOK {
			t.Fatalf("gina %d %s, hank %d %s", gina.status, gina.raw, hank.status, hank.raw)
		}
		s.ldap.SetDisabled("gina", true)
		s.ldap.DeleteUser("hank")
		for name, a := range map[string]ldapAnswer{"gina (disabled)": gina, "hank (deleted)": hank} {
			r := s.refresh(t, a.token.RefreshToken)
			if r.status != http.StatusBadRequest || r.err.Code != "invalid_grant" {
				t.Errorf("%s: refresh answered %d %s, want 400 invalid_grant", name, r.status, r.raw)
			}
			// The session is gone, not just refused once.
			if r := s.post(t, portalapi.PathSession, map[string]string{"refresh_token": a.token.RefreshToken}); r.status != http.StatusBadRequest {
				t.Errorf("%s: the session still exists: %d %s", name, r.status, r.raw)
			}
		}
	})

	t.Run("a stopped directory is a 503 naming it, never a wrong password, and the server stays ready", func(t *testing.T) {
		s.ldap.Stop()
		a := s.passwordLogin(t, "alice", "alice-pw")
		if a.status != http.StatusServiceUnavailable || a.err.Code != "temporarily_unavailable" || !strings.Contains(a.err.Description, "Example directory") {
			t.Errorf("login with the directory stopped: %d %s", a.status, a.raw)
		}
		r := s.refresh(t, aliceRefresh)
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.err.Description, "directory corp") {
			t.Errorf("refresh with the directory stopped: %d %s, want 503 naming the directory", r.status, r.raw)
		}
		page := s.browserForm(t, "alice", "alice-pw")
		if page.status != http.StatusServiceUnavailable || !strings.Contains(page.body, "Example directory") || strings.Contains(page.body, "Invalid username") {
			t.Errorf("the login page with the directory stopped: %d\n%s", page.status, page.body)
		}
		resp, err := s.portcullis.HTTPClient().Get(s.portcullis.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz with the directory stopped: %s, want 200 (only its logins fail)", resp.Status)
		}

		s.ldap.Start()
		// The session survived the outage: its refresh token still works.
		if r := s.refresh(t, aliceRefresh); r.status != http.StatusOK {
			t.Errorf("refresh after the directory came back: %d %s", r.status, r.raw)
		}
		if a := s.passwordLogin(t, "dave", "dave-pw"); a.status != http.StatusOK {
			t.Errorf("login after the directory came back: %d %s", a.status, a.raw)
		}
	})

	t.Run("logins are rate-limited per user", func(t *testing.T) {
		var last ldapAnswer
		for i := 0; i < 12; i++ {
			last = s.passwordLogin(t, "dave", fmt.Sprintf("guess-%d", i))
			if last.status == http.StatusTooManyRequests {
				break
			}
		}
		if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
			t.Fatalf("after 12 wrong passwords: %d %s, want 429 with Retry-After", last.status, last.raw)
		}
		// Even the right password waits: the bucket is the user's.
		if a := s.passwordLogin(t, "dave", "dave-pw"); a.status != http.StatusTooManyRequests {
			t.Errorf("dave's right password right after: %d, want 429", a.status)
		}
		// Another user is not held back.
		if a := s.passwordLogin(t, "bob", "bob-pw"); a.status != http.StatusOK {
			t.Errorf("bob meanwhile: %d %s", a.status, a.raw)
		}
	})

	t.Run("after all that, the server's log holds no password", func(t *testing.T) {
		log, _ := os.ReadFile(s.portcullis.Process.LogPath)
		for _, pw := range []string{"alice-pw", "bob-pw", "dave-pw", "gina-pw", "guess-3", "wrong-password-x1", s.ldap.BindPassword} {
			if bytes.Contains(log, []byte(pw)) {
				t.Errorf("the server's log holds the password %q", pw)
			}
		}
	})
}

// page is an HTML answer.
type page struct {
	status int
	body   string
	url    string
}

// browserForm logs in through the portal's password page as a browser
// without JavaScript would: GET the form (CSRF cookie and field), POST it.
func (s *ldapStack) browserForm(t *testing.T, user, password string) page {
	t.Helper()
	b := s.portcullis.HTTPClient()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Jar = jar
	resp, err := b.Get(s.portcullis.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login/corp" {
		t.Fatalf("GET /login: %s at %s:\n%s", resp.Status, resp.Request.URL, body)
	}
	csrf := formValue(string(body), "csrf")
	resp, err = b.PostForm(s.portcullis.URL+"/login/corp", url.Values{"csrf": {csrf}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(body), url: resp.Request.URL.String()}
}

// formValue is the value of the hidden input called name.
func formValue(body, name string) string {
	marker := `name="` + name + `" value="`
	i := strings.Index(body, marker)
	if i < 0 {
		return ""
	}
	rest := body[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

func TestLDAP_WrongBindPasswordIsTheOperatorsError(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	l := framework.StartLDAP(t, framework.LDAPOptions{PKI: pki, Users: ldapTestUsers, Groups: ldapTestGroups})
	dir := framework.WorkDir(t)
	port := framework.FreePort(t)
	good, err := os.ReadFile(l.BindPasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.BindPasswordFile, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("at start: the server refuses to start, naming the setting", func(t *testing.T) {
		config := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(config, []byte(ldapConfig(port, dir, l, false, "", "")), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(framework.PortcullisServerBinary(t), "--config="+config, "--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", port), "--cert-dir="+filepath.Join(dir, "certs"))
		done := make(chan struct{})
		var out []byte
		go func() { out, _ = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("portcullis-server kept running with a wrong bind password:\n%s", out)
		}
		if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), "ldap.bindPasswordFile") || !strings.Contains(string(out), "directory corp") {
			t.Fatalf("exit %d, want a failure naming the directory and ldap.bindPasswordFile:\n%s", cmd.ProcessState.ExitCode(), out)
		}
		if strings.Contains(string(out), "not-the-password") {
			t.Fatalf("the error shows the bind password:\n%s", out)
		}
	})

	t.Run("at run time: /readyz fails while the password file is wrong, and users are not told their password is wrong", func(t *testing.T) {
		if err := os.WriteFile(l.BindPasswordFile, good, 0o600); err != nil {
			t.Fatal(err)
		}
		p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: ldapConfig(port, dir, l, false, "", ""), Port: port})
		s := &ldapStack{pki: pki, ldap: l, portcullis: p, dir: dir, port: port}
		if err := os.WriteFile(l.BindPasswordFile, []byte("rotated-wrongly\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a := s.passwordLogin(t, "alice", "alice-pw")
		if a.status != http.StatusServiceUnavailable || strings.Contains(a.raw, "Invalid username") || !strings.Contains(a.err.Description, "Tell your administrator") {
			t.Errorf("login with the bind password rotated wrongly: %d %s", a.status, a.raw)
		}
		readyz := func() (int, string) {
			resp, err := p.HTTPClient().Get(p.URL + "/readyz?verbose")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		deadline := time.Now().Add(40 * time.Second)
		for {
			code, body := readyz()
			if code == http.StatusInternalServerError && strings.Contains(body, "[-]ldap-corp failed") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz still %d with a wrong bind password:\n%s", code, body)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err := os.WriteFile(l.BindPasswordFile, good, 0o600); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(40 * time.Second)
		for {
			code, body := readyz()
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz still %d after the password file was fixed:\n%s", code, body)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if a := s.passwordLogin(t, "alice", "alice-pw"); a.status != http.StatusOK {
			t.Errorf("login after the fix: %d %s", a.status, a.raw)
		}
	})
}
