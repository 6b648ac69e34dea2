package portal_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/portalapi"
)

// withDirectory adds an LDAP identity provider "corp" whose directory
// cannot be reached (nothing listens on port 1): these tests are about what
// the portal does before and around the directory; the directory itself is
// tested against slapd in test/e2e.
func withDirectory(t *testing.T) func(*v1alpha1.PortcullisConfiguration) {
	pwFile := filepath.Join(t.TempDir(), "bind-password")
	if err := os.WriteFile(pwFile, []byte("bind-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prefix := "corp:"
	return func(c *v1alpha1.PortcullisConfiguration) {
		c.IdentityProviders = append(c.IdentityProviders, v1alpha1.IdentityProvider{
			Name: "corp", DisplayName: "Corp directory",
			LDAP: &v1alpha1.LDAPConfig{
				Hosts: []string{"127.0.0.1:1"}, BindDN: "cn=portcullis,dc=example,dc=com", BindPasswordFile: pwFile,
				UserSearch:     v1alpha1.LDAPUserSearch{BaseDN: "ou=people,dc=example,dc=com"},
				UsernamePrefix: &prefix, GroupsPrefix: &prefix,
			},
		})
	}
}

func postPasswordJSON(t *testing.T, c *http.Client, u string, body any) (int, portalapi.OAuthError, http.Header) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := c.Post(u, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e portalapi.OAuthError
	_ = json.Unmarshal(raw, &e)
	return resp.StatusCode, e, resp.Header
}

func TestPasswordLogin_TheChooserAndTheCLISeeTheDirectory(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{Configure: withDirectory(t)})
	p := get(t, e.Client(), e.URL+"/login?cluster=c1")
	for _, want := range []string{`href="/login/fake?cluster=c1"`, `href="/login/corp?cluster=c1"`, "Log in with Corp directory"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("chooser lacks %q:\n%s", want, p.body)
		}
	}
	p = get(t, e.Browser(), e.URL+"/login/corp?cluster=c1")
	for _, want := range []string{`type="password"`, `name="csrf" value="`, `name="cluster" value="c1"`, `action="/login/corp"`, `method="post"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the password page lacks %q:\n%s", want, p.body)
		}
	}
	var out portalapi.ClustersResponse
	if err := json.Unmarshal([]byte(get(t, e.Client(), e.URL+portalapi.PathClusters).body), &out); err != nil {
		t.Fatal(err)
	}
	want := []portalapi.IdPInfo{{Name: "fake", DisplayName: "Fake IdP", Type: "oidc"}, {Name: "corp", DisplayName: "Corp directory", Type: "ldap"}}
	if len(out.IdentityProviders) != 2 || out.IdentityProviders[0] != want[0] || out.IdentityProviders[1] != want[1] {
		t.Errorf("identity providers: %+v, want %+v", out.IdentityProviders, want)
	}
}

func TestPasswordLogin_TheFormNeedsItsCSRFToken(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{Configure: withDirectory(t)})
	b := e.Browser()
	get(t, b, e.URL+"/login/corp") // sets the CSRF cookie
	resp, err := b.PostForm(e.URL+"/login/corp", url.Values{"username": {"alice"}, "password": {"s3cret-pw"}, "csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "This form has expired") {
		t.Fatalf("a forged CSRF token: %s\n%s", resp.Status, body)
	}
	if strings.Contains(string(body), "s3cret-pw") {
		t.Fatalf("the page echoes the password:\n%s", body)
	}
}

func TestPasswordLogin_AnUnreachableDirectoryIsA503NamingIt(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{Configure: withDirectory(t)})
	status, oerr, _ := postPasswordJSON(t, e.Client(), e.URL+portalapi.PathPassword, map[string]string{"idp": "corp", "username": "alice", "password": "pw"})
	if status != http.StatusServiceUnavailable || oerr.Code != "temporarily_unavailable" || !strings.Contains(oerr.Description, "Corp directory") || strings.Contains(oerr.Description, "Invalid") {
		t.Fatalf("login at an unreachable directory: %d %+v", status, oerr)
	}
}

func TestPasswordLogin_TheAPIRefusesWhatItCannotUse(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{Configure: withDirectory(t)})
	for _, c := range []struct {
		name string
		body map[string]string
		want string
	}{
		{"an OpenID Connect provider", map[string]string{"idp": "fake", "username": "alice", "password": "pw"}, "only for LDAP directories"},
		{"no password", map[string]string{"idp": "corp", "username": "alice"}, "username and password are required"},
		{"no user name", map[string]string{"idp": "corp", "password": "pw"}, "username and password are required"},
	} {
		status, oerr, _ := postPasswordJSON(t, e.Client(), e.URL+portalapi.PathPassword, c.body)
		if status != http.StatusBadRequest || !strings.Contains(oerr.Description, c.want) {
			t.Errorf("%s: %d %+v, want 400 %q", c.name, status, oerr, c.want)
		}
	}
	resp, err := e.Client().Get(e.URL + portalapi.PathPassword)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %s, want 405", portalapi.PathPassword, resp.Status)
	}
}

func TestPasswordLogin_AttemptsAreRateLimitedPerUserAndPerClient(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{Configure: withDirectory(t)})
	login := func(user string) (int, http.Header) {
		status, _, h := postPasswordJSON(t, e.Client(), e.URL+portalapi.PathPassword, map[string]string{"idp": "corp", "username": user, "password": "guess"})
		return status, h
	}
	// Ten tries for one user (the directory is unreachable: 503 each), then 429.
	for i := range 10 {
		if status, _ := login("alice"); status != http.StatusServiceUnavailable {
			t.Fatalf("try %d: %d, want 503", i+1, status)
		}
	}
	status, h := login("ALICE") // user names are compared without case
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("the 11th try: %d (Retry-After %q), want 429 with Retry-After", status, h.Get("Retry-After"))
	}
	// Spreading over user names meets the client's limit (50 at once).
	limited := false
	for i := range 60 {
		if status, _ := login("user" + string(rune('a'+i%26)) + string(rune('a'+i/26))); status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("60 user names from one client were never limited")
	}
}
