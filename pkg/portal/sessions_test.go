package portal_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/portal"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/token"
)

// formValue returns the value of the first hidden input named name after
// marker in body.
func formValue(t *testing.T, body, marker, name string) string {
	t.Helper()
	i := strings.Index(body, marker)
	if i < 0 {
		t.Fatalf("no %q in the page", marker)
	}
	rest := body[i:]
	key := `name="` + name + `" value="`
	j := strings.Index(rest, key)
	if j < 0 {
		t.Fatalf("no %s field after %q", name, marker)
	}
	v := rest[j+len(key):]
	return v[:strings.Index(v, `"`)]
}

func noRedirects(c *http.Client) *http.Client {
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

func TestSessionsPage_ListsEndsAndSignsOutEverywhere(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	ctx := context.Background()
	// Two kubectl logins, then one in the browser; and a session of bob's.
	cli1, cli2 := login(t, e, "c1"), login(t, e, "c1")
	b := e.Browser()
	if p := get(t, b, e.URL+"/login"); p.status != http.StatusOK || p.url.Path != "/portal/" {
		t.Fatalf("browser login ended at %s with %d", p.url, p.status)
	}
	bob, _, err := e.Sessions.CreateFrom(ctx, session.User{Username: "bob@example.com"}, "", session.Origin{Client: "device", Address: "198.51.100.7"})
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]int{}
	for _, s := range sessions(t, e.Store) {
		clients[s.Client]++
		if s.ClientAddress == "" {
			t.Errorf("session %s has no client address", s.ID)
		}
	}
	if clients["cli"] != 2 || clients["browser"] != 1 || clients["device"] != 1 {
		t.Errorf("sessions by client = %v, want 2 cli, 1 browser (and bob's device)", clients)
	}

	p := get(t, b, e.URL+"/portal/sessions")
	if p.status != http.StatusOK {
		t.Fatalf("sessions page: %d", p.status)
	}
	for _, want := range []string{"Your sessions", "Web browser", "(this browser)", "Sign out everywhere", "127.0.0.1"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the sessions page lacks %q", want)
		}
	}
	if n := strings.Count(p.body, `<th scope="row">kubectl (portcullis CLI)`); n != 2 {
		t.Errorf("the page lists %d kubectl sessions, want 2", n)
	}
	if strings.Contains(p.body, bob.ID) || strings.Contains(p.body, "198.51.100.7") {
		t.Errorf("the page shows bob's session to alice")
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("no strict CSP: %q", csp)
	}
	sid1, _, _ := session.ParseRefreshToken(str(cli1, "refresh_token"))
	csrf := formValue(t, p.body, "Sign out everywhere</h2>", "csrf")
	post := func(form url.Values) *http.Response {
		t.Helper()
		resp, err := noRedirects(b).PostForm(e.URL+"/portal/sessions", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	works := func(resp map[string]any) bool {
		_, err := verify(e, clusterToken(t, resp, "c1"), "c1")
		return err == nil
	}

	t.Run("a form without the page's CSRF token ends nothing", func(t *testing.T) {
		for _, bad := range []string{"", "0123456789abcdef0123456789abcdef", csrf + "x"} {
			if resp := post(url.Values{"csrf": {bad}, "session": {sid1}}); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("csrf %q: %s, want 400", bad, resp.Status)
			}
		}
		if !works(cli1) {
			t.Errorf("the session was ended without a valid CSRF token")
		}
	})

	t.Run("another user's session cannot be ended", func(t *testing.T) {
		if resp := post(url.Values{"csrf": {csrf}, "session": {bob.ID}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("ending bob's session: %s, want 404", resp.Status)
		}
		if _, err := e.Store.GetSession(ctx, bob.ID); err != nil {
			t.Errorf("bob's session: %v", err)
		}
	})

	t.Run("ending one session revokes its tokens and keeps the others", func(t *testing.T) {
		resp := post(url.Values{"csrf": {csrf}, "session": {sid1}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/portal/sessions?ended=1" {
			t.Fatalf("ending a session: %s to %q", resp.Status, resp.Header.Get("Location"))
		}
		var ve *token.VerifyError
		if _, err := verify(e, clusterToken(t, cli1, "c1"), "c1"); !errors.As(err, &ve) || ve.Reason != token.ReasonRevoked {
			t.Errorf("the ended session's token: %v, want %q", err, token.ReasonRevoked)
		}
		if status, _ := refresh(t, e, str(cli1, "refresh_token"), "c1"); status != http.StatusBadRequest {
			t.Errorf("refresh of the ended session: %d, want 400", status)
		}
		if !works(cli2) {
			t.Errorf("the other kubectl session stopped working")
		}
		p := get(t, b, e.URL+"/portal/sessions?ended=1")
		if !strings.Contains(p.body, "The session has ended") || strings.Count(p.body, `<th scope="row">kubectl (portcullis CLI)`) != 1 {
			t.Errorf("the page after ending a session:\n%s", p.body)
		}
	})

	t.Run("signing out everywhere ends every session of the user and only theirs", func(t *testing.T) {
		resp, err := b.PostForm(e.URL+"/portal/sessions", url.Values{"csrf": {csrf}, "all": {"1"}})
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You are signed out everywhere: 2 sessions ended") {
			t.Fatalf("sign out everywhere: %s\n%s", resp.Status, body)
		}
		if works(cli2) {
			t.Errorf("a kubectl session survived signing out everywhere")
		}
		left, err := e.Store.ListSessions(ctx)
		if err != nil || len(left) != 1 || left[0].ID != bob.ID {
			t.Errorf("sessions left = %+v (%v), want only bob's", left, err)
		}
		if p := get(t, b, e.URL+"/portal/sessions"); !strings.Contains(p.body, "Log in to see your sessions") {
			t.Errorf("the browser is still signed in:\n%s", p.body)
		}
	})
}

func TestSessionsPage_NeedsASignedInBrowser(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	b := e.Browser()
	if p := get(t, b, e.URL+"/portal/sessions"); p.status != http.StatusOK || !strings.Contains(p.body, "Log in to see your sessions") {
		t.Errorf("without a session: %d\n%s", p.status, p.body)
	}
	resp, err := noRedirects(b).PostForm(e.URL+"/portal/sessions", url.Values{"all": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a POST without a session: %s", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodDelete, e.URL+"/portal/sessions", nil)
	resp, err = b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %s, want 405", resp.Status)
	}
}

func TestWithBrowserRootRedirect(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := portal.WithBrowserRootRedirect(next)
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	tests := []struct {
		name, method, path string
		header             map[string]string
		redirect           bool
	}{
		{"a browser opening the bare address", "GET", "/", map[string]string{"Accept": browser}, true},
		{"a HEAD from a browser", "HEAD", "/", map[string]string{"Accept": browser}, true},
		{"Accept in any case with parameters", "GET", "/", map[string]string{"Accept": "Text/HTML;q=0.9"}, true},
		{"an API client asking for JSON", "GET", "/", map[string]string{"Accept": "application/json, */*"}, false},
		{"a client asking for anything", "GET", "/", map[string]string{"Accept": "*/*"}, false},
		{"no Accept header", "GET", "/", nil, false},
		{"a request with a bearer token", "GET", "/", map[string]string{"Accept": browser, "Authorization": "Bearer x"}, false},
		{"a POST", "POST", "/", map[string]string{"Accept": browser}, false},
		{"another path", "GET", "/healthz", map[string]string{"Accept": browser}, false},
		{"the index page's other name", "GET", "/index.html", map[string]string{"Accept": browser}, false},
		{"discovery", "GET", "/apis", map[string]string{"Accept": browser}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tt.redirect {
				if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/portal/" {
					t.Errorf("%d to %q, want 303 to /portal/", rec.Code, rec.Header().Get("Location"))
				}
				if v := strings.Join(rec.Header().Values("Vary"), ","); !strings.Contains(v, "Accept") || !strings.Contains(v, "Authorization") {
					t.Errorf("Vary = %q", v)
				}
				return
			}
			if rec.Code != http.StatusTeapot {
				t.Errorf("%d, want the request passed on", rec.Code)
			}
		})
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
