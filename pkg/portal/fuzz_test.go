package portal_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
)

// fuzzMarker is HTML a hostile link or form could carry; no page may echo
// it unescaped.
const fuzzMarker = "<x-fuzz"

var (
	fuzzMethods      = []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions}
	fuzzContentTypes = []string{"", "application/x-www-form-urlencoded", "application/json", "application/json; charset=utf-8", "multipart/form-data; boundary=x", "text/plain", "APPLICATION/X-WWW-FORM-URLENCODED ; x=y"}
)

// FuzzPortalRequest sends arbitrary requests (method, path and query,
// content type, body, cookie) to every page and API of the portal, so the
// form and query parsing of each handler is exercised as a browser or the
// CLI would reach it. Whatever it is sent, the portal:
//   - never panics and never answers 500 or another 5xx for a client's
//     request (503 and 429 only where a request creates login state, which
//     is bounded);
//   - redirects only to itself, to the identity provider, or to a CLI
//     loopback listener (no open redirect);
//   - never echoes markup from the request unescaped;
//   - sets cookies only Secure and HttpOnly.
//
// Long run (make fuzz runs every target):
//
//	go test ./pkg/portal -run '^$' -fuzz FuzzPortalRequest -fuzztime 60s
func FuzzPortalRequest(f *testing.F) {
	e := portaltest.New(f, portaltest.Options{})
	h := e.Server.Config.Handler
	self, err := url.Parse(e.URL)
	if err != nil {
		f.Fatal(err)
	}
	idp, err := url.Parse(e.IdP.URL)
	if err != nil {
		f.Fatal(err)
	}
	challenge := strings.Repeat("A", 43)
	for _, s := range []struct {
		method, ct uint8
		target     string
		body       string
		cookie     string
	}{
		{0, 0, "/login", "", ""},
		{0, 0, "/login?cli_redirect=http://127.0.0.1:1/cb&cli_challenge=" + challenge + "&cli_state=s", "", ""},
		{0, 0, "/login/fake?cluster=c1", "", ""},
		{0, 0, "/login/fake?cluster=" + url.QueryEscape(fuzzMarker+">"), "", ""},
		{0, 0, "/login/fake?cli_redirect=http://127.0.0.1:49152/cb&cli_challenge=" + challenge + "&cli_state=s", "", ""},
		{0, 0, "/login/fake?cli_redirect=http://evil.example.com/&cli_challenge=" + challenge + "&cli_state=s", "", ""},
		{0, 0, "/login/fake?cli_redirect=http://127.0.0.1@evil.example.com/&cli_challenge=" + challenge + "&cli_state=s", "", ""},
		{0, 0, "/login/fake?cli_redirect=http://[::1]:80/%2F%2Fevil&cli_challenge=" + challenge + "&cli_state=" + url.QueryEscape(fuzzMarker), "", ""},
		{0, 0, "/login/" + url.PathEscape(fuzzMarker), "", ""},
		{0, 0, "/callback?state=x&code=y", "", "__Host-portcullis-login-0123456789abcdef=x"},
		{0, 0, "/callback?error=access_denied&error_description=" + url.QueryEscape(fuzzMarker) + "&state=s", "", ""},
		{0, 0, "/device?user_code=ABCD-EFGH", "", ""},
		{0, 0, "/device?user_code=" + url.QueryEscape(fuzzMarker), "", ""},
		{1, 1, "/device", "csrf=a&user_code=ABCD-EFGH&idp=fake", "__Host-portcullis-csrf=a"},
		{1, 1, "/device", "csrf=a&user_code=" + url.QueryEscape(fuzzMarker) + "&idp=" + url.QueryEscape(fuzzMarker), "__Host-portcullis-csrf=a"},
		{1, 1, "/device/code", "client_id=portcullis&cluster=c1", ""},
		{1, 1, "/device/token", "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=x", ""},
		{1, 2, "/portal/api/token", `{"code":"x","code_verifier":"y","redirect_uri":"http://127.0.0.1:1/cb"}`, ""},
		{1, 2, "/portal/api/token", `{"code":1}`, ""},
		{1, 2, "/portal/api/token", `{"code":"a","code":"b"}`, ""},
		{1, 2, "/portal/api/token", `[`, ""},
		{1, 1, "/portal/api/refresh", "refresh_token=x&cluster=c1", ""},
		{1, 1, "/portal/api/refresh", "refresh_token=x&cluster=c1&cluster=c2;%zz", ""},
		{1, 2, "/portal/api/session", `{"refresh_token":"x"}`, ""},
		{1, 2, "/portal/api/logout", `{"refresh_token":"x"}`, ""},
		{0, 0, "/portal/api/clusters", "", ""},
		{0, 0, "/portal/api/nothing", "", ""},
		{0, 0, "/portal/", "", "__Host-portcullis-session=x"},
		{0, 0, "/portal/kubeconfig?cluster=c1", "", "__Host-portcullis-session=x"},
		{1, 1, "/portal/logout", "csrf=x", "__Host-portcullis-session=x"},
		{0, 0, "/portal/static/style.css", "", ""},
		{0, 0, "/portal/cli-complete", "", ""},
		{0, 0, "/portal", "", ""},
		{1, 5, "/portal/api/token", "--x\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\nx\r\n--x--\r\n", ""},
		{3, 3, "/login//fake", "", ""},
	} {
		f.Add(s.method, s.target, s.ct, []byte(s.body), s.cookie)
	}
	f.Fuzz(func(t *testing.T, m uint8, target string, ct uint8, body []byte, cookie string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return // net/http answers 400 before any handler
		}
		if !isPortalPath(u.Path) {
			return
		}
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		req := &http.Request{
			Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Host: self.Host, RemoteAddr: "192.0.2.10:40000",
			TLS: &tls.ConnectionState{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		}
		req = req.WithContext(context.Background())
		if c := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]; c != "" {
			req.Header.Set("Content-Type", c)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		out := rec.Body.String()

		switch {
		case res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusTooManyRequests:
			if !createsLoginState(u.Path) {
				t.Fatalf("%s %s: HTTP %d from a path that creates no login state: %s", method, target, res.StatusCode, out)
			}
		case res.StatusCode >= 500:
			t.Fatalf("%s %s: HTTP %d for a client's request: %s", method, target, res.StatusCode, out)
		case res.StatusCode < 100:
			t.Fatalf("%s %s: HTTP %d", method, target, res.StatusCode)
		}
		if strings.Contains(out, fuzzMarker) {
			t.Fatalf("%s %s: the answer echoes markup from the request unescaped:\n%s", method, target, out)
		}
		if loc := res.Header.Get("Location"); loc != "" {
			checkRedirect(t, method+" "+target, loc, self, idp)
		}
		for _, c := range res.Cookies() {
			if !c.Secure || !c.HttpOnly {
				t.Fatalf("%s %s: cookie %s is not Secure and HttpOnly", method, target, c.Name)
			}
		}
	})
}

// isPortalPath is what the portal serves (the server routes nothing else
// to it).
func isPortalPath(p string) bool {
	for _, prefix := range []string{"/login", "/callback", "/device", "/portal"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// createsLoginState: the pages that store a login in progress, whose table
// is bounded (a full table, or a client over its rate, is a 503 or 429).
func createsLoginState(p string) bool {
	return strings.HasPrefix(p, "/login/") || p == "/login" || strings.HasPrefix(p, "/device")
}

// checkRedirect fails unless loc stays on the portal, goes to the identity
// provider, or to a CLI loopback listener over http.
func checkRedirect(t *testing.T, what, loc string, self, idp *url.URL) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("%s: redirect to %q, which does not parse: %v", what, loc, err)
	}
	if strings.ContainsAny(loc, "\r\n") {
		t.Fatalf("%s: redirect header with a line break: %q", what, loc)
	}
	if u.Scheme == "" && u.Host == "" {
		if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, "/\\") {
			t.Fatalf("%s: relative redirect %q may leave the portal", what, loc)
		}
		return
	}
	switch {
	case u.Scheme == "https" && u.Host == self.Host && u.User == nil:
	case u.Scheme == idp.Scheme && u.Host == idp.Host && u.User == nil:
	case u.Scheme == "http" && u.User == nil && (u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"):
	default:
		t.Fatalf("%s: redirect to %q leaves the portal, the IdP and the loopback", what, loc)
	}
}
