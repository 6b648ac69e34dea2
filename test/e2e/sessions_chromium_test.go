package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestPortal_BareAddressLeadsBrowsersToThePortal checks what a person and an
// API client get at Portcullis's bare address, against the real server.
func TestPortal_BareAddressLeadsBrowsersToThePortal(t *testing.T) {
	t.Parallel()
	s := startLoginStack(t, false)
	hc := s.portcullis.HTTPClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do := func(method, path string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, s.portcullis.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp
	}
	const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, tc := range []struct {
		name         string
		method, path string
		header       []string
		status       int
		location     string
	}{
		{"a browser at / is sent to the portal", "GET", "/", []string{"Accept", browserAccept}, http.StatusSeeOther, "/portal/"},
		{"a HEAD of / from a browser too", "HEAD", "/", []string{"Accept", browserAccept}, http.StatusSeeOther, "/portal/"},
		{"a browser at /portal is sent to /portal/", "GET", "/portal", []string{"Accept", browserAccept}, http.StatusMovedPermanently, "/portal/"},
		{"an anonymous API client at / is refused as by kube-apiserver", "GET", "/", []string{"Accept", "application/json"}, http.StatusForbidden, ""},
		{"a client with a bad bearer token at / is unauthorized, not redirected", "GET", "/", []string{"Accept", browserAccept, "Authorization", "Bearer not-a-token"}, http.StatusUnauthorized, ""},
		{"a POST to / is not redirected", "POST", "/", []string{"Accept", browserAccept}, http.StatusForbidden, ""},
		{"health checks are untouched", "GET", "/healthz", []string{"Accept", browserAccept}, http.StatusOK, ""},
		{"discovery is untouched", "GET", "/.well-known/openid-configuration", []string{"Accept", browserAccept}, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(tc.method, tc.path, tc.header...)
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
				t.Errorf("%s %s: %s, Location %q; want %d, %q", tc.method, tc.path, resp.Status, resp.Header.Get("Location"), tc.status, tc.location)
			}
		})
	}
}

// cachedClusterToken reads the cluster token the CLI cached in cacheDir.
func cachedClusterToken(t *testing.T, cacheDir, cluster string) string {
	t.Helper()
	// The CLI keeps its cache in a subdirectory of the one it is given
	// (pkg/cli's cacheSubdir), never changing the user's own directory.
	files, _ := filepath.Glob(filepath.Join(cacheDir, "portcullis", "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files in %s: %v", cacheDir, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Tokens map[string]struct {
			Token string `json:"token"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(b, &entry); err != nil {
		t.Fatal(err)
	}
	tok := entry.Tokens[cluster].Token
	if tok == "" {
		t.Fatalf("no cluster token for %s in the cache", cluster)
	}
	return tok
}

// TestPortal_SessionsPageInHeadlessChromium: a person sees where they are
// logged in (this browser, kubectl on two computers), ends one kubectl
// session, then signs out everywhere; the tokens of what they ended stop
// working at once.
func TestPortal_SessionsPageInHeadlessChromium(t *testing.T) {
	if framework.ChromiumBinary() == "" {
		framework.SkipMissing(t, "Debian's chromium", "apt-get install -y chromium", "the sessions page was not checked in a browser")
	}
	t.Parallel()
	s := startLoginStack(t, false)
	artifacts := filepath.Join(framework.WorkDir(t), "artifacts")

	// kubectl on two computers: two real CLI logins.
	var tokens []string
	for range 2 {
		cache := s.newCacheDir(t)
		if out, err := s.cli(t, cache, nil, "login", "--server", s.portcullis.URL, "--cluster", loginCluster,
			"--certificate-authority", s.portcullis.CACertFile()); err != nil {
			t.Fatalf("portcullis login: %v\n%s", err, out)
		}
		tokens = append(tokens, cachedClusterToken(t, cache, loginCluster))
	}
	for i, tok := range tokens {
		if !s.reviewAtPortcullis(t, tok) {
			t.Fatalf("the token of CLI login %d does not work", i)
		}
	}

	c := framework.StartChromium(t)
	text := func() string {
		t.Helper()
		var s string
		if err := c.Eval(`document.body.innerText`, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The bare address, typed into the browser, shows the portal.
	if err := c.Navigate(s.portcullis.URL + "/"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/" }); err != nil {
		t.Fatal(err)
	}
	if got := text(); !strings.Contains(got, "Log in") {
		t.Fatalf("the bare address shows:\n%s", got)
	}

	// Log in in the browser.
	if err := c.Navigate(s.portcullis.URL + "/login"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return strings.HasPrefix(u, s.dex.IssuerURL) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(`(() => { document.querySelector('input[name=login]').value = 'alice@example.com';
	  document.querySelector('input[name=password]').value = 'alice-password';
	  document.querySelector('form').submit(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/" }); err != nil {
		t.Fatal(err)
	}
	// The portal links to the sessions page.
	if err := c.Eval(`document.querySelector('a[href="/portal/sessions"]').click()`, nil); err != nil {
		t.Fatalf("no link to the sessions page: %v", err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/sessions" }); err != nil {
		t.Fatal(err)
	}
	page := text()
	for _, want := range []string{"Your sessions", "Web browser (this browser)", "127.0.0.1", "Sign out everywhere"} {
		if !strings.Contains(page, want) {
			t.Errorf("the sessions page does not show %q:\n%s", want, page)
		}
	}
	if n := strings.Count(page, "kubectl (portcullis CLI)"); n != 2 {
		t.Errorf("the sessions page shows %d kubectl sessions, want 2:\n%s", n, page)
	}
	if err := c.Screenshot(filepath.Join(artifacts, "sessions.png")); err != nil {
		t.Fatal(err)
	}

	// Every action is reachable with Tab and shows the focus.
	var buttons []string
	for _, f := range tabThrough(t, c, 6) {
		if strings.HasPrefix(f.Outline, "none") {
			t.Errorf("the focused %s %q has no visible focus outline", f.Tag, f.Text)
		}
		if f.Tag == "button" {
			buttons = append(buttons, f.Text)
		}
	}
	if want := []string{"Sign out here", "End", "End", "Sign out everywhere"}; strings.Join(buttons, "|") != strings.Join(want, "|") {
		t.Errorf("buttons reached with Tab: %q, want %q (this browser first, one per session, then Sign out everywhere)", buttons, want)
	}

	// End one kubectl session.
	if err := c.Eval(`document.querySelector('tr:not(.current) button').click()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return strings.HasSuffix(u, "/portal/sessions?ended=1") }); err != nil {
		t.Fatal(err)
	}
	page = text()
	if !strings.Contains(page, "The session has ended") || strings.Count(page, "kubectl (portcullis CLI)") != 1 {
		t.Errorf("after ending one kubectl session the page shows:\n%s", page)
	}
	working := 0
	for _, tok := range tokens {
		if s.reviewAtPortcullis(t, tok) {
			working++
		}
	}
	if working != 1 {
		t.Errorf("%d of the two kubectl tokens still work after ending one session, want 1", working)
	}

	// Sign out everywhere.
	if err := c.Eval(`(() => { for (const b of document.querySelectorAll('button')) { if (b.innerText === 'Sign out everywhere') { b.click(); return true; } } throw new Error('no button'); })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/sessions" }); err != nil {
		t.Fatal(err)
	}
	if page = text(); !strings.Contains(page, "You are signed out everywhere: 2 sessions ended") {
		t.Errorf("after signing out everywhere the page shows:\n%s", page)
	}
	for i, tok := range tokens {
		if s.reviewAtPortcullis(t, tok) {
			t.Errorf("the token of kubectl session %d still works after signing out everywhere", i)
		}
	}
	if err := c.Navigate(s.portcullis.URL + "/portal/sessions"); err != nil {
		t.Fatal(err)
	}
	if page = text(); !strings.Contains(page, "Log in to see your sessions") {
		t.Errorf("the browser is still signed in:\n%s", page)
	}
}
