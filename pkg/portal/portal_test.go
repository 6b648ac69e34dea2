package portal_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"golang.org/x/oauth2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/token"
)

type page struct {
	status int
	body   string
	url    *url.URL
	header http.Header
}

func get(t *testing.T, c *http.Client, u string) page {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(b), url: resp.Request.URL, header: resp.Header}
}

// stopAtLoopback makes a browser stop at a redirect to the CLI's loopback
// listener (plain http) and hand back that URL.
type stopAtLoopback struct{ u *url.URL }

func (s *stopAtLoopback) Error() string { return "stopped at " + s.u.String() }

func browserStoppingAtLoopback(e *portaltest.Env) *http.Client {
	b := e.Browser()
	b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme == "http" {
			return &stopAtLoopback{u: req.URL}
		}
		return nil
	}
	return b
}

// loopbackLogin runs the browser part of a CLI login and returns the URL the
// portal redirected to.
func loopbackLogin(t *testing.T, e *portaltest.Env, b *http.Client, params url.Values) *url.URL {
	t.Helper()
	_, err := b.Get(e.URL + "/login/fake?" + params.Encode())
	var stop *stopAtLoopback
	if !errors.As(err, &stop) {
		t.Fatalf("the login did not end at the loopback redirect: %v", err)
	}
	return stop.u
}

func cliParams(verifier string) url.Values {
	return url.Values{
		"cli_redirect":  {"http://127.0.0.1:49152/callback"},
		"cli_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
		"cli_state":     {"cli-state-1"},
	}
}

func postJSON(t *testing.T, c *http.Client, u string, body map[string]string) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := c.Post(u, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %s: not JSON: %s", u, resp.Status, raw)
	}
	return resp.StatusCode, out
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %s: not JSON: %s", u, resp.Status, raw)
	}
	return resp.StatusCode, out
}

func sessions(t *testing.T, st store.Store) []store.Session {
	t.Helper()
	l, err := st.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func verify(e *portaltest.Env, raw, cluster string) (*token.Claims, error) {
	return e.Verifier.Verify(context.Background(), raw, []string{cluster})
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func clusterToken(t *testing.T, resp map[string]any, cluster string) string {
	t.Helper()
	ct, _ := resp["cluster_tokens"].(map[string]any)
	c, _ := ct[cluster].(map[string]any)
	tok, _ := c["token"].(string)
	if tok == "" {
		t.Fatalf("no token for cluster %s in %v", cluster, resp)
	}
	return tok
}

func TestBrowserLogin_CompletesWithSessionTokenAndKubectlSetup(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	b := e.Browser()
	p := get(t, b, e.URL+"/login")
	if p.status != http.StatusOK || p.url.Path != "/portal/" {
		t.Fatalf("login ended at %s with %d: %s", p.url, p.status, p.body)
	}
	for _, want := range []string{"Login complete", "alice@example.com", "devs", "idp-devs", "Cluster c1", "portcullis kubeconfig --server " + e.URL + " --cluster c1 \\\n    --api-server"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the login-complete page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "Cluster c2") {
		t.Errorf("the page offers cluster c2, which the policy refuses alice")
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("no strict CSP: %q", csp)
	}
	ss := sessions(t, e.Store)
	if len(ss) != 1 || ss[0].Username != "alice@example.com" || ss[0].UpstreamRefreshToken == "" || len(ss[0].RefreshTokenHash) != 32 {
		t.Fatalf("sessions after login = %+v", ss)
	}
	// The page's token for c1 is a valid cluster token of that session.
	i := strings.Index(p.body, `readonly rows="4">`)
	if i < 0 {
		t.Fatal("no token on the page")
	}
	raw := p.body[i+len(`readonly rows="4">`):]
	raw = raw[:strings.Index(raw, "<")]
	claims, err := verify(e, raw, "c1")
	if err != nil {
		t.Fatalf("the page's token does not verify: %v", err)
	}
	if claims.SessionID != ss[0].ID || !slices.Contains(claims.Groups, "devs") || !slices.Contains(claims.Groups, "idp-devs") {
		t.Errorf("claims = %+v", claims)
	}

	// The downloadable kubeconfig runs the CLI as exec plugin.
	kc := get(t, b, e.URL+"/portal/kubeconfig?cluster=c1")
	if kc.status != http.StatusNotFound {
		t.Errorf("kubeconfig of a webhook cluster without a known API server: %d, want 404 with instructions", kc.status)
	}

	// Logging out of the browser ends the session and its tokens.
	csrf := p.body[strings.Index(p.body, `name="csrf" value="`)+len(`name="csrf" value="`):]
	csrf = csrf[:strings.Index(csrf, `"`)]
	resp, err := b.PostForm(e.URL+"/portal/logout", url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %s", resp.Status)
	}
	if _, err := verify(e, raw, "c1"); err == nil {
		t.Errorf("a token of the logged-out session still verifies")
	}
	if n := len(sessions(t, e.Store)); n != 0 {
		t.Errorf("%d sessions left after logout", n)
	}
}

func TestLoginChooser_ListsEveryIdentityProvider(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		second := c.IdentityProviders[0]
		second.Name, second.DisplayName = "other", "Other IdP"
		c.IdentityProviders = append(c.IdentityProviders, second)
	}})
	p := get(t, e.Client(), e.URL+"/login?cluster=c1")
	if p.status != http.StatusOK {
		t.Fatalf("chooser: %d", p.status)
	}
	for _, want := range []string{`href="/login/fake?cluster=c1"`, `href="/login/other?cluster=c1"`, "Log in with Fake IdP", "Log in with Other IdP", `lang="en"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("chooser lacks %q:\n%s", want, p.body)
		}
	}
}

func TestCallback_RefusesWhatTheClientGotWrong(t *testing.T) {
	// The IdP's redirect back, captured without following it.
	capture := func(t *testing.T, e *portaltest.Env) (*http.Client, *url.URL) {
		b := e.Browser()
		var cb *url.URL
		b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if req.URL.Path == "/callback" {
				cb = req.URL
				return http.ErrUseLastResponse
			}
			return nil
		}
		resp, err := b.Get(e.URL + "/login/fake")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cb == nil {
			t.Fatal("no redirect to /callback")
		}
		b.CheckRedirect = nil
		return b, cb
	}
	for _, tc := range []struct {
		name   string
		setup  func(e *portaltest.Env)
		mangle func(t *testing.T, e *portaltest.Env, b *http.Client, cb *url.URL) (*http.Client, string)
		status int
		want   string
	}{
		{
			name:   "a replayed state is refused",
			status: http.StatusBadRequest, want: "already completed",
			mangle: func(t *testing.T, e *portaltest.Env, b *http.Client, cb *url.URL) (*http.Client, string) {
				if p := get(t, b, cb.String()); p.status != http.StatusOK {
					t.Fatalf("first callback: %d", p.status)
				}
				return b, cb.String()
			},
		},
		{
			name:   "a forged state is refused",
			status: http.StatusBadRequest, want: "already completed",
			mangle: func(t *testing.T, e *portaltest.Env, b *http.Client, cb *url.URL) (*http.Client, string) {
				q := cb.Query()
				q.Set("state", "forged-state")
				cb.RawQuery = q.Encode()
				return b, cb.String()
			},
		},
		{
			name:   "a callback without state is refused",
			status: http.StatusBadRequest, want: "without the login",
			mangle: func(t *testing.T, e *portaltest.Env, b *http.Client, cb *url.URL) (*http.Client, string) {
				return b, e.URL + "/callback?code=x"
			},
		},
		{
			name:   "a callback in another browser is refused",
			status: http.StatusBadRequest, want: "another browser",
			mangle: func(t *testing.T, e *portaltest.Env, b *http.Client, cb *url.URL) (*http.Client, string) {
				return e.Browser(), cb.String()
			},
		},
		{
			name:   "an error from the IdP is shown, not a 500",
			setup:  func(e *portaltest.Env) { e.IdP.SetAuthError("access_denied") },
			status: http.StatusForbidden, want: "refused the login",
		},
		{
			name:   "an unknown IdP error is a bad gateway",
			setup:  func(e *portaltest.Env) { e.IdP.SetAuthError("temporarily_unavailable") },
			status: http.StatusBadGateway, want: "temporarily_unavailable",
		},
		{
			name:   "an ID token for another login (nonce) is refused",
			setup:  func(e *portaltest.Env) { e.IdP.SetBadNonce(true) },
			status: http.StatusBadRequest, want: "does not belong to this login",
		},
		{
			name:   "a user the policy refuses sees a denial",
			setup:  func(e *portaltest.Env) { e.IdP.SetUser(portaltest.User{Subject: "m", Email: "mallory@example.com"}) },
			status: http.StatusForbidden, want: "admits you to no cluster",
		},
		{
			name:   "an IdP that went down during the login is a bad gateway",
			status: http.StatusBadGateway, want: "cannot be reached",
			mangle: func(t *testing.T, e *portaltest.Env, b *http.Client, cb *url.URL) (*http.Client, string) {
				e.IdP.SetDown(true)
				return b, cb.String()
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := portaltest.New(t, portaltest.Options{})
			if tc.setup != nil {
				tc.setup(e)
			}
			b, cb := capture(t, e)
			target := cb.String()
			if tc.mangle != nil {
				b, target = tc.mangle(t, e, b, cb)
			}
			before := len(sessions(t, e.Store))
			p := get(t, b, target)
			if p.status != tc.status || !strings.Contains(p.body, tc.want) {
				t.Fatalf("callback: %d, want %d with %q:\n%s", p.status, tc.status, tc.want, p.body)
			}
			if n := len(sessions(t, e.Store)); n != before {
				t.Errorf("sessions went from %d to %d", before, n)
			}
		})
	}
}

func TestLoginStart_IdPDownIsAClearPage(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	e.IdP.SetDown(true)
	p := get(t, e.Client(), e.URL+"/login/fake")
	if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "cannot be reached") {
		t.Fatalf("login with the IdP down: %d: %s", p.status, p.body)
	}
	if p := get(t, e.Client(), e.URL+"/login/nope"); p.status != http.StatusNotFound {
		t.Errorf("unknown IdP: %d", p.status)
	}
}

func TestLoopbackLogin_RedirectMustBeLoopback(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	verifier := oauth2.GenerateVerifier()
	for _, tc := range []struct {
		redirect string
		ok       bool
	}{
		{"http://127.0.0.1:8000/callback", true},
		{"http://127.0.0.1/callback", true},
		{"http://[::1]:8000/cb?x=1", true},
		{"http://localhost:8000/callback", false},
		{"https://127.0.0.1:8000/callback", false},
		{"http://127.0.0.2:8000/callback", false},
		{"http://127.0.0.1.evil.example:8000/callback", false},
		{"http://127.0.0.1:8000@evil.example/callback", false},
		{"http://evil.example/callback", false},
		{"http://127.0.0.1:8000/callback#frag", false},
		{"http://127.0.0.1:99999/callback", false},
		{"http://127.1:8000/callback", false},
		{"//127.0.0.1:8000/callback", false},
		{"", false},
	} {
		t.Run(tc.redirect, func(t *testing.T) {
			q := cliParams(verifier)
			q.Set("cli_redirect", tc.redirect)
			p := get(t, e.Client(), e.URL+"/login/fake?"+q.Encode())
			if tc.ok {
				if p.status != http.StatusFound || !strings.HasPrefix(p.header.Get("Location"), e.IdP.URL) {
					t.Errorf("allowed redirect: %d to %q", p.status, p.header.Get("Location"))
				}
				return
			}
			if p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
				t.Errorf("redirect %q: %d (Location %q), want a 400 page", tc.redirect, p.status, p.header.Get("Location"))
			}
		})
	}
	q := cliParams(verifier)
	q.Set("cli_challenge", "plain-verifier")
	if p := get(t, e.Client(), e.URL+"/login/fake?"+q.Encode()); p.status != http.StatusBadRequest {
		t.Errorf("a non-S256 challenge: %d", p.status)
	}
}

func TestLoopbackLogin_CodeIsSingleUseAndNeedsTheVerifier(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	b := browserStoppingAtLoopback(e)
	c := e.Client()
	redeem := func(code, verifier string) (int, map[string]any) {
		return postJSON(t, c, e.URL+"/portal/api/token", map[string]string{
			"code": code, "code_verifier": verifier, "redirect_uri": "http://127.0.0.1:49152/callback", "cluster": "c1",
		})
	}

	t.Run("a wrong verifier is refused and burns the code", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		back := loopbackLogin(t, e, b, cliParams(verifier))
		if back.Query().Get("state") != "cli-state-1" {
			t.Fatalf("loopback redirect lacks the CLI's state: %s", back)
		}
		status, resp := redeem(back.Query().Get("code"), oauth2.GenerateVerifier())
		if status != http.StatusBadRequest || str(resp, "error") != "invalid_grant" {
			t.Fatalf("wrong verifier: %d %v", status, resp)
		}
		if status, _ := redeem(back.Query().Get("code"), verifier); status != http.StatusBadRequest {
			t.Errorf("the code still worked after a wrong verifier: %d", status)
		}
		if n := len(sessions(t, e.Store)); n != 0 {
			t.Errorf("%d sessions", n)
		}
	})

	t.Run("a code used twice revokes the session it made", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		back := loopbackLogin(t, e, b, cliParams(verifier))
		status, resp := redeem(back.Query().Get("code"), verifier)
		if status != http.StatusOK {
			t.Fatalf("redeem: %d %v", status, resp)
		}
		tok := clusterToken(t, resp, "c1")
		if _, err := verify(e, tok, "c1"); err != nil {
			t.Fatalf("token: %v", err)
		}
		if str(resp, "refresh_token") == "" || str(resp, "access_token") != tok {
			t.Errorf("response = %v", resp)
		}
		status, resp = redeem(back.Query().Get("code"), verifier)
		if status != http.StatusBadRequest || str(resp, "error") != "invalid_grant" {
			t.Fatalf("second redeem: %d %v", status, resp)
		}
		if _, err := verify(e, tok, "c1"); err == nil {
			t.Errorf("the session of a replayed code still works")
		}
	})

	t.Run("a refused user goes back to the CLI with access_denied", func(t *testing.T) {
		e.IdP.SetUser(portaltest.User{Subject: "m", Email: "mallory@example.com"})
		defer e.IdP.SetUser(portaltest.User{Subject: "alice-sub", Email: "alice@example.com", Groups: []string{"idp-devs"}})
		back := loopbackLogin(t, e, b, cliParams(oauth2.GenerateVerifier()))
		if back.Query().Get("error") != "access_denied" || back.Query().Get("code") != "" || !strings.Contains(back.Query().Get("error_description"), "no cluster") {
			t.Errorf("loopback redirect for a refused user: %s", back)
		}
	})
}

// login logs alice in through the loopback flow and returns the token response.
func login(t *testing.T, e *portaltest.Env, cluster string) map[string]any {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	back := loopbackLogin(t, e, browserStoppingAtLoopback(e), cliParams(verifier))
	status, resp := postJSON(t, e.Client(), e.URL+"/portal/api/token", map[string]string{
		"code": back.Query().Get("code"), "code_verifier": verifier, "redirect_uri": "http://127.0.0.1:49152/callback", "cluster": cluster,
	})
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, resp)
	}
	return resp
}

func refresh(t *testing.T, e *portaltest.Env, rt, cluster string) (int, map[string]any) {
	t.Helper()
	return postJSON(t, e.Client(), e.URL+"/portal/api/refresh", map[string]string{"refresh_token": rt, "cluster": cluster})
}

func TestRefresh_RotatesWithGraceAndDetectsReuse(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	e := portaltest.New(t, portaltest.Options{Clock: clk})
	first := login(t, e, "c1")
	rt0 := str(first, "refresh_token")
	oldToken := clusterToken(t, first, "c1")

	status, r1 := refresh(t, e, rt0, "c1")
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, r1)
	}
	rt1 := str(r1, "refresh_token")
	if rt1 == "" || rt1 == rt0 {
		t.Fatalf("the refresh token was not rotated")
	}
	if _, err := verify(e, clusterToken(t, r1, "c1"), "c1"); err != nil {
		t.Fatal(err)
	}

	// A concurrent client with the previous token, within the grace, gets
	// the same new refresh token.
	clk.Step(10 * time.Second)
	status, r1b := refresh(t, e, rt0, "c1")
	if status != http.StatusOK || str(r1b, "refresh_token") != rt1 {
		t.Fatalf("refresh with the previous token in the grace: %d, token same as first rotation: %v", status, str(r1b, "refresh_token") == rt1)
	}
	// The rotated token keeps working.
	status, r2 := refresh(t, e, rt1, "c1")
	if status != http.StatusOK {
		t.Fatalf("refresh after grace reuse: %d %v", status, r2)
	}
	rt2 := str(r2, "refresh_token")

	// The previous token after the grace: the session is revoked.
	clk.Step(e.Config.Portal.RefreshReuseGrace.Duration + time.Second)
	status, resp := refresh(t, e, rt1, "c1")
	if status != http.StatusBadRequest || str(resp, "error") != "invalid_grant" || !strings.Contains(str(resp, "error_description"), "revoked") {
		t.Fatalf("reuse after grace: %d %v", status, resp)
	}
	if status, _ := refresh(t, e, rt2, "c1"); status != http.StatusBadRequest {
		t.Errorf("the current token of a revoked session still refreshes: %d", status)
	}
	if _, err := verify(e, oldToken, "c1"); err == nil {
		t.Errorf("a cluster token of the revoked session still verifies")
	}

	// A random secret for a live session's ID does not revoke it.
	fresh := login(t, e, "c1")
	sid := strings.SplitN(str(fresh, "refresh_token"), ".", 2)[0]
	status, _ = refresh(t, e, sid+".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "c1")
	if status != http.StatusBadRequest {
		t.Fatalf("forged secret: %d", status)
	}
	if status, resp := refresh(t, e, str(fresh, "refresh_token"), "c1"); status != http.StatusOK {
		t.Errorf("a forged secret ended the session: %d %v", status, resp)
	}
}

func TestRefresh_Lifetimes(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	e := portaltest.New(t, portaltest.Options{Clock: clk, Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.Portal.SessionIdleTimeout = metav1.Duration{Duration: time.Hour}
		c.Portal.SessionMaxLifetime = metav1.Duration{Duration: 3 * time.Hour}
		c.Clusters[0].TokenLifetime = &metav1.Duration{Duration: 10 * time.Minute}
	}})
	t.Run("a session idle longer than its idle timeout ends", func(t *testing.T) {
		rt := str(login(t, e, "c1"), "refresh_token")
		clk.Step(time.Hour + time.Second)
		status, resp := refresh(t, e, rt, "c1")
		if status != http.StatusBadRequest || !strings.Contains(str(resp, "error_description"), "expired") {
			t.Fatalf("idle session: %d %v", status, resp)
		}
	})
	t.Run("a session in use ends at its maximum lifetime", func(t *testing.T) {
		rt := str(login(t, e, "c1"), "refresh_token")
		for range 3 {
			clk.Step(59 * time.Minute)
			status, resp := refresh(t, e, rt, "c1")
			if status != http.StatusOK {
				t.Fatalf("refresh: %d %v", status, resp)
			}
			rt = str(resp, "refresh_token")
			exp := clusterExpiry(t, resp, "c1")
			if !exp.After(clk.Now()) || exp.After(clk.Now().Add(10*time.Minute+time.Second)) {
				t.Errorf("token expiry %v is not within the cluster lifetime from %v", exp, clk.Now())
			}
		}
		// 177 minutes in: the token is cut at the session's end.
		status, resp := refresh(t, e, rt, "c1")
		if status != http.StatusOK {
			t.Fatalf("refresh: %d %v", status, resp)
		}
		rt = str(resp, "refresh_token")
		if exp := clusterExpiry(t, resp, "c1"); exp.After(clk.Now().Add(3*time.Minute + time.Second)) {
			t.Errorf("token outlives its session: %v", exp)
		}
		clk.Step(5 * time.Minute)
		if status, _ := refresh(t, e, rt, "c1"); status != http.StatusBadRequest {
			t.Errorf("refresh after the absolute lifetime: %d", status)
		}
	})
}

func clusterExpiry(t *testing.T, resp map[string]any, cluster string) time.Time {
	t.Helper()
	ct := resp["cluster_tokens"].(map[string]any)[cluster].(map[string]any)
	exp, err := time.Parse(time.RFC3339, ct["expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

func TestRefresh_AsksTheIdPAndThePolicyAgain(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	resp := login(t, e, "c1")
	rt := str(resp, "refresh_token")

	// New groups at the IdP show up at the next refresh.
	e.IdP.SetGroups("alice-sub", []string{"idp-devs", "idp-ops"})
	status, r := refresh(t, e, rt, "c1")
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, r)
	}
	claims, err := verify(e, clusterToken(t, r, "c1"), "c1")
	if err != nil || !slices.Contains(claims.Groups, "idp-ops") || !slices.Contains(claims.Groups, "devs") {
		t.Fatalf("refreshed token: %v %+v", err, claims)
	}
	rt = str(r, "refresh_token")

	// A cluster the policy refuses: 403, and the refresh token is not used up.
	status, r = refresh(t, e, rt, "c2")
	if status != http.StatusForbidden || str(r, "error") != "access_denied" || !strings.Contains(str(r, "error_description"), "c2") {
		t.Fatalf("refresh for a refused cluster: %d %v", status, r)
	}
	status, r = refresh(t, e, rt, "c1")
	if status != http.StatusOK {
		t.Fatalf("the refresh token did not survive a denial: %d %v", status, r)
	}
	rt = str(r, "refresh_token")
	tok := clusterToken(t, r, "c1")

	// The IdP down: 503, the session intact.
	e.IdP.SetDown(true)
	status, r = refresh(t, e, rt, "c1")
	if status != http.StatusServiceUnavailable || str(r, "error") != "temporarily_unavailable" {
		t.Fatalf("refresh with the IdP down: %d %v", status, r)
	}
	e.IdP.SetDown(false)

	// The user removed at the IdP: the session ends, with its tokens.
	e.IdP.RemoveUser("alice-sub")
	status, r = refresh(t, e, rt, "c1")
	if status != http.StatusBadRequest || str(r, "error") != "invalid_grant" {
		t.Fatalf("refresh of a removed user: %d %v", status, r)
	}
	if _, err := verify(e, tok, "c1"); err == nil {
		t.Errorf("a removed user's token still verifies")
	}
	if n := len(sessions(t, e.Store)); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

func TestLogout_RevokesSessionAndTokens(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	resp := login(t, e, "c1")
	tok := clusterToken(t, resp, "c1")
	rt := str(resp, "refresh_token")
	status, info := postJSON(t, e.Client(), e.URL+"/portal/api/session", map[string]string{"refresh_token": rt})
	if status != http.StatusOK || str(info, "username") != "alice@example.com" {
		t.Fatalf("session info: %d %v", status, info)
	}
	status, out := postJSON(t, e.Client(), e.URL+"/portal/api/logout", map[string]string{"refresh_token": rt})
	if status != http.StatusOK || out["revoked"] != true {
		t.Fatalf("logout: %d %v", status, out)
	}
	var ve *token.VerifyError
	if _, err := verify(e, tok, "c1"); !errors.As(err, &ve) || ve.Reason != token.ReasonRevoked {
		t.Errorf("token after logout: %v, want %q", err, token.ReasonRevoked)
	}
	if status, _ := refresh(t, e, rt, "c1"); status != http.StatusBadRequest {
		t.Errorf("refresh after logout: %d", status)
	}
	status, out = postJSON(t, e.Client(), e.URL+"/portal/api/logout", map[string]string{"refresh_token": rt})
	if status != http.StatusOK || out["revoked"] != false {
		t.Errorf("second logout: %d %v", status, out)
	}
}

func TestDeviceFlow(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	e := portaltest.New(t, portaltest.Options{Clock: clk, DeviceInterval: 5 * time.Second})
	c := e.Client()
	status, dc := postForm(t, c, e.URL+"/device/code", url.Values{"cluster": {"c1"}})
	if status != http.StatusOK {
		t.Fatalf("device code: %d %v", status, dc)
	}
	userCode, deviceCode := str(dc, "user_code"), str(dc, "device_code")
	if len(userCode) != 9 || str(dc, "verification_uri") != e.URL+"/device" || !strings.HasSuffix(str(dc, "verification_uri_complete"), "user_code="+userCode) || dc["interval"] != float64(5) {
		t.Fatalf("device code response: %v", dc)
	}
	poll := func() (int, map[string]any) {
		return postForm(t, c, e.URL+"/device/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}})
	}
	if _, r := poll(); str(r, "error") != "authorization_pending" {
		t.Fatalf("first poll: %v", r)
	}
	if _, r := poll(); str(r, "error") != "slow_down" {
		t.Fatalf("immediate second poll: %v", r)
	}

	// The person, in a browser elsewhere.
	b := e.Browser()
	p := get(t, b, str(dc, "verification_uri_complete"))
	if p.status != http.StatusOK || !strings.Contains(p.body, `value="`+userCode+`"`) {
		t.Fatalf("device page: %d %s", p.status, p.body)
	}
	csrf := p.body[strings.Index(p.body, `name="csrf" value="`)+len(`name="csrf" value="`):]
	csrf = csrf[:strings.Index(csrf, `"`)]

	// Without the CSRF token, or with a wrong code, nothing starts.
	resp, err := e.Browser().PostForm(e.URL+"/device", url.Values{"user_code": {userCode}, "idp": {"fake"}, "csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("device form from another browser: %s", resp.Status)
	}
	resp, err = b.PostForm(e.URL+"/device", url.Values{"user_code": {"BBBB-BBBB"}, "idp": {"fake"}, "csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "matches no device") {
		t.Errorf("wrong user code: %s %s", resp.Status, body)
	}

	resp, err = b.PostForm(e.URL+"/device", url.Values{"user_code": {strings.ToLower(userCode)}, "idp": {"fake"}, "csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Device logged in") {
		t.Fatalf("device login: %s %s", resp.Status, body)
	}

	clk.Step(11 * time.Second)
	status, tr := poll()
	if status != http.StatusOK {
		t.Fatalf("poll after approval: %d %v", status, tr)
	}
	if _, err := verify(e, clusterToken(t, tr, "c1"), "c1"); err != nil {
		t.Fatal(err)
	}
	if _, r := poll(); str(r, "error") != "invalid_grant" {
		t.Errorf("the device code worked twice: %v", r)
	}

	t.Run("an expired device code is refused", func(t *testing.T) {
		_, dc := postForm(t, c, e.URL+"/device/code", url.Values{})
		clk.Step(11 * time.Minute)
		_, r := postForm(t, c, e.URL+"/device/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {str(dc, "device_code")}})
		if str(r, "error") != "expired_token" {
			t.Errorf("expired device code: %v", r)
		}
	})
	t.Run("a user the policy refuses gets access_denied", func(t *testing.T) {
		e.IdP.SetUser(portaltest.User{Subject: "m", Email: "mallory@example.com"})
		_, dc := postForm(t, c, e.URL+"/device/code", url.Values{})
		resp, err := b.PostForm(e.URL+"/device", url.Values{"user_code": {str(dc, "user_code")}, "idp": {"fake"}, "csrf": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("refused device login: %s", resp.Status)
		}
		clk.Step(10 * time.Second)
		_, r := postForm(t, c, e.URL+"/device/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {str(dc, "device_code")}})
		if str(r, "error") != "access_denied" {
			t.Errorf("poll of a refused login: %v", r)
		}
	})
}

func TestAPI_ClientMistakesAreNot5xx(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	c := e.Client()
	for _, tc := range []struct {
		path string
		body string
		ct   string
	}{
		{"/portal/api/token", `{"code":"x","code_verifier":"y"}`, "application/json"},
		{"/portal/api/token", `not json`, "application/json"},
		{"/portal/api/token", `{}`, "text/plain"},
		{"/portal/api/refresh", `{"refresh_token":"nope","cluster":"c1"}`, "application/json"},
		{"/portal/api/refresh", `{"refresh_token":"a.b","cluster":"nope"}`, "application/json"},
		{"/portal/api/refresh", `{"refresh_token":"a.b"}`, "application/json"},
		{"/portal/api/refresh", `{"refresh_token":5}`, "application/json"},
		{"/portal/api/session", `{"refresh_token":"x"}`, "application/json"},
		{"/device/token", `grant_type=password`, "application/x-www-form-urlencoded"},
		{"/device/token", `grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=nope`, "application/x-www-form-urlencoded"},
		{"/device/code", `cluster=nope`, "application/x-www-form-urlencoded"},
		{"/portal/api/nope", `{}`, "application/json"},
	} {
		resp, err := c.Post(e.URL+tc.path, tc.ct, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("POST %s %s: %s %s", tc.path, tc.body, resp.Status, b)
		}
	}
	if p := get(t, c, e.URL+"/portal/api/token"); p.status != http.StatusMethodNotAllowed {
		t.Errorf("GET token endpoint: %d", p.status)
	}
}

func TestKubeconfigDownload_ProxyCluster(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.Clusters[0].Upstream = &v1alpha1.Upstream{Server: "https://upstream.example"}
	}})
	b := e.Browser()
	if p := get(t, b, e.URL+"/login"); !strings.Contains(p.body, "/portal/kubeconfig?cluster=c1") {
		t.Fatalf("no kubeconfig download for a proxy cluster:\n%s", p.body)
	}
	kc := get(t, b, e.URL+"/portal/kubeconfig?cluster=c1")
	if kc.status != http.StatusOK {
		t.Fatalf("kubeconfig: %d %s", kc.status, kc.body)
	}
	for _, want := range []string{"server: " + e.URL + "/clusters/c1", "command: portcullis", "- exec-credential", "- --server=" + e.URL, "- --cluster=c1", "provideClusterInfo: true", "certificate-authority-data:", "interactiveMode: IfAvailable"} {
		if !strings.Contains(kc.body, want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, kc.body)
		}
	}
	if !strings.Contains(kc.header.Get("Content-Disposition"), "attachment") {
		t.Errorf("Content-Disposition = %q", kc.header.Get("Content-Disposition"))
	}
	var out portalapi.ClustersResponse
	resp, err := e.Client().Get(e.URL + "/portal/api/clusters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if len(out.Clusters) != 2 || out.Clusters[0].Mode != "proxy" || out.Clusters[0].Server != e.URL+"/clusters/c1" || out.Clusters[1].Mode != "webhook" || len(out.IdentityProviders) != 1 {
		t.Errorf("clusters = %+v", out)
	}
}
