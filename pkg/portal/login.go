package portal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/store"
)

// attempt is a login in progress, from /login/<idp> (or /device) to
// /callback. It is stored under its state, and taken (so used once) by the
// callback.
type attempt struct {
	idp      string
	nonce    string
	verifier string // PKCE verifier towards the IdP
	binding  []byte // SHA-256 of the browser-binding cookie's value
	flow     string
	cluster  string
	cli      *cliParams // loopback flow
	device   string     // device flow: the device code's key
}

// cliParams are the CLI's parameters of a loopback login.
type cliParams struct {
	redirect  *url.URL
	challenge string // S256 of the CLI's verifier
	state     string
}

// A one-time code handed to the CLI's loopback listener is redeemed at
// /portal/api/token with the CLI's PKCE verifier (codeRecord). The first
// redemption claims it, and records the session it created; a second one
// revokes that session (RFC 6749 §4.1.2).

const loginCookiePrefix = "__Host-portcullis-login-"

// loginCookieName is per attempt, so that logins started in two tabs do not
// overwrite each other's binding.
func loginCookieName(state string) string { return loginCookiePrefix + sha256Hex(state)[:16] }

// serveLoginChooser lists the IdPs, or goes straight to the only one. The
// query (the CLI's parameters) is carried over.
func (p *Portal) serveLoginChooser(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	// OpenID Connect providers and LDAP directories (password.go).
	links := p.loginChoices(r.URL.RawQuery)
	switch len(links) {
	case 0:
		p.renderError(w, r, http.StatusServiceUnavailable, "No way to log in is configured",
			"This Portcullis has no identity provider to log in with. Tell your administrator.", "")
		return
	case 1:
		http.Redirect(w, r, links[0].URL, http.StatusFound)
		return
	}
	p.render(w, r, http.StatusOK, "login", &pageData{Title: "Log in", IdPs: links})
}

// serveLoginStart starts the authorization-code flow at one IdP.
func (p *Portal) serveLoginStart(w http.ResponseWriter, r *http.Request) {
	if d, ok := p.directory(strings.TrimPrefix(r.URL.Path, "/login/")); ok {
		p.servePasswordLogin(w, r, d) // an LDAP directory: password.go
		return
	}
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/login/")
	prov, ok := p.provider(name)
	if !ok || name == "" {
		p.renderError(w, r, http.StatusNotFound, "Unknown identity provider",
			"There is no identity provider of that name here.", "/login")
		return
	}
	q := r.URL.Query()
	att := &attempt{idp: prov.Name(), flow: flowBrowser, cluster: q.Get("cluster")}
	if att.cluster != "" && !p.d.Policy.Load().HasCluster(att.cluster) {
		p.renderError(w, r, http.StatusBadRequest, "Unknown cluster",
			fmt.Sprintf("Portcullis knows no cluster called %q.", truncate(att.cluster, 64)), "")
		return
	}
	if q.Has("cli_redirect") || q.Has("cli_challenge") || q.Has("cli_state") {
		cli, err := parseCLIParams(q)
		if err != nil {
			p.metrics.logins.WithLabelValues(flowLoopback, outcomeInvalidRequest).Inc()
			auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeInvalidRequest, "portcullis.dev/reason", err.Error())
			p.renderError(w, r, http.StatusBadRequest, "This login link is not valid", err.Error(), "")
			return
		}
		att.cli, att.flow = cli, flowLoopback
	}
	p.startAtIdP(w, r, prov, att)
}

// startAtIdP stores att under a new state, binds it to this browser with a
// cookie, and redirects to the IdP's authorization endpoint.
func (p *Portal) startAtIdP(w http.ResponseWriter, r *http.Request, prov *identity.Provider, att *attempt) {
	taken, ok := p.allowStart(r, 1)
	if !ok {
		p.tooManyStarts(w, r, att.flow)
		return
	}
	oc, f := p.oauth2Config(prov)
	if f != nil {
		taken.Refund()
		p.metrics.logins.WithLabelValues(att.flow, f.outcome).Inc()
		p.renderFailure(w, r, f, "")
		return
	}
	state := randomToken(32)
	binding := randomToken(32)
	att.nonce = randomToken(32)
	att.verifier = oauth2.GenerateVerifier()
	att.binding = sha256Bytes(binding)
	if err := p.createRecord(r.Context(), loginstate.KindAttempt, state, att.record(), p.now().Add(attemptTTL)); err != nil {
		taken.Refund()
		f := stateFailure(err)
		p.metrics.logins.WithLabelValues(att.flow, f.outcome).Inc()
		p.renderFailure(w, r, f, "")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     loginCookieName(state),
		Value:    binding,
		Path:     "/",
		MaxAge:   int(attemptTTL / time.Second),
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteLaxMode,
	})
	target := oc.AuthCodeURL(state, oidc.Nonce(att.nonce), oauth2.S256ChallengeOption(att.verifier))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusFound)
}

// parseCLIParams checks the CLI's loopback parameters.
func parseCLIParams(q url.Values) (*cliParams, error) {
	redirect, err := parseLoopbackRedirect(q.Get("cli_redirect"))
	if err != nil {
		return nil, err
	}
	challenge := q.Get("cli_challenge")
	if !isS256Challenge(challenge) {
		return nil, errors.New("cli_challenge must be a PKCE S256 code challenge (43 base64url characters)")
	}
	state := q.Get("cli_state")
	if state == "" || len(state) > 256 {
		return nil, errors.New("cli_state is required (at most 256 characters)")
	}
	return &cliParams{redirect: redirect, challenge: challenge, state: state}, nil
}

// parseLoopbackRedirect accepts only the loopback redirects of RFC 8252 §7.3:
// http, the IP literal 127.0.0.1 or [::1], any port, any path; no user
// information and no fragment. "localhost" is refused (§8.3: it may resolve
// to something else).
func parseLoopbackRedirect(raw string) (*url.URL, error) {
	const allowed = "the redirect must be http://127.0.0.1:<port>/<path> or http://[::1]:<port>/<path> (a loopback listener of the portcullis CLI)"
	if raw == "" || len(raw) > 2048 {
		return nil, errors.New(allowed)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New(allowed)
	}
	host, port := u.Hostname(), u.Port()
	switch {
	case host == "127.0.0.1" && (u.Host == "127.0.0.1" || u.Host == net.JoinHostPort(host, port)):
	case host == "::1" && (u.Host == "[::1]" || u.Host == net.JoinHostPort(host, port)):
	default:
		return nil, errors.New(allowed)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return nil, errors.New(allowed)
		}
	}
	return u, nil
}

func isS256Challenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// serveCallback is the IdP's redirect back.
func (p *Portal) serveCallback(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		p.metrics.logins.WithLabelValues(flowBrowser, outcomeInvalidRequest).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeInvalidRequest, "portcullis.dev/reason", "callback without state")
		p.renderError(w, r, http.StatusBadRequest, "This login link is not valid",
			"The identity provider sent you back without the login's state. Start again.", "/login")
		return
	}
	rec, err := takeRecord[attemptRecord](r.Context(), p.d.Logins, loginstate.KindAttempt, state)
	if err != nil && !errors.Is(err, loginstate.ErrNotFound) {
		f := stateFailure(err)
		p.metrics.logins.WithLabelValues(flowBrowser, f.outcome).Inc()
		p.renderFailure(w, r, f, "/login")
		return
	}
	var att *attempt
	if err == nil {
		if att, err = rec.attempt(); err != nil {
			p.renderFailure(w, r, stateFailure(err), "/login")
			return
		}
	}
	if att == nil {
		p.metrics.logins.WithLabelValues(flowBrowser, outcomeInvalidRequest).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeInvalidRequest, "portcullis.dev/reason", "unknown, expired or replayed state")
		p.renderError(w, r, http.StatusBadRequest, "This login has expired or was already completed",
			"Logins must be completed within 10 minutes, and each one only once. Start again.", "/login")
		return
	}
	cookieName := loginCookieName(state)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	c, err := r.Cookie(cookieName)
	if err != nil || !constantTimeEqual(string(sha256Bytes(c.Value)), string(att.binding)) {
		p.metrics.logins.WithLabelValues(att.flow, outcomeInvalidRequest).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeInvalidRequest, "portcullis.dev/idp", att.idp, "portcullis.dev/reason", "state not bound to this browser")
		p.renderError(w, r, http.StatusBadRequest, "This login was started in another browser",
			"For your safety, a login must end in the browser it started in. Start again here.", "/login")
		return
	}
	prov, ok := p.provider(att.idp)
	if !ok {
		p.renderError(w, r, http.StatusBadRequest, "Unknown identity provider",
			"The identity provider of this login is no longer configured. Start again.", "/login")
		return
	}

	if e := q.Get("error"); e != "" {
		desc := strings.Map(printable, truncate(q.Get("error_description"), 200))
		f := fail(http.StatusBadGateway, outcomeIdPError, "server_error", "The identity provider could not log you in",
			fmt.Sprintf("%s answered %q%s. Try again; if it keeps failing, tell your administrator.", prov.DisplayName(), truncate(e, 64), withColon(desc)))
		if e == "access_denied" {
			f = fail(http.StatusForbidden, outcomeIdPError, "access_denied", "The identity provider refused the login",
				fmt.Sprintf("%s did not let you log in%s.", prov.DisplayName(), withColon(desc)))
		}
		p.loginFailed(w, r, att, f)
		return
	}
	code := q.Get("code")
	if code == "" {
		p.loginFailed(w, r, att, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request",
			"This login link is not valid", "The identity provider sent you back without a code. Start again."))
		return
	}
	res, f := p.exchangeCode(r.Context(), prov, code, att.verifier, att.nonce)
	if f != nil {
		p.loginFailed(w, r, att, f)
		return
	}
	id := p.effectiveIdentity(res.id)
	adm := p.admit(r.Context(), id)
	if len(adm.admitted) == 0 || (att.cluster != "" && !adm.allowed(att.cluster)) {
		reason := fmt.Sprintf("You are logged in as %s, but the access policy admits you to no cluster.", id.Username)
		if att.cluster != "" {
			reason = adm.reasons[att.cluster] + "."
		}
		auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, outcomeDenied, "portcullis.dev/flow", att.flow, "portcullis.dev/reason", reason)
		p.loginFailed(w, r, att, fail(http.StatusForbidden, outcomeDenied, "access_denied", "Access denied", reason))
		return
	}
	auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, outcomeSuccess, "portcullis.dev/flow", att.flow)
	p.metrics.logins.WithLabelValues(att.flow, outcomeSuccess).Inc()
	klog.V(2).InfoS("Login at identity provider", "user", id.Username, "identityProvider", id.IdentityProvider, "flow", att.flow)

	switch att.flow {
	case flowLoopback:
		code := randomToken(32)
		rec := codeRecord{Result: recordOf(res), Challenge: att.cli.challenge, Redirect: att.cli.redirect.String(), Cluster: att.cluster}
		if err := p.createRecord(r.Context(), loginstate.KindCode, sha256Hex(code), rec, p.now().Add(codeTTL)); err != nil {
			p.renderFailure(w, r, stateFailure(err), "")
			return
		}
		p.redirectToCLI(w, r, att.cli, url.Values{"code": {code}})
	case flowDevice:
		approved, err := p.devices.approve(r.Context(), att.device, res, p.now())
		if err != nil {
			p.renderFailure(w, r, stateFailure(err), "")
			return
		}
		if !approved {
			p.renderError(w, r, http.StatusBadRequest, "This device code has expired",
				"The device stopped waiting for this login. Start the login on the device again.", "")
			return
		}
		p.render(w, r, http.StatusOK, "device_done", &pageData{Title: "Device logged in", User: userViewOf(id, nil)})
	default:
		s, tok, err := p.sessions.CreateFrom(r.Context(), res.id, res.upstreamRefreshToken, originOf(r))
		if err != nil {
			klog.ErrorS(err, "Creating a session failed", "user", id.Username)
			status := http.StatusInternalServerError
			if errors.Is(err, store.ErrUnavailable) {
				status = http.StatusServiceUnavailable
			}
			p.renderError(w, r, status, "Portcullis could not log you in",
				"Your login was accepted but could not be saved. Try again; if it keeps failing, tell your administrator.", "/login")
			return
		}
		auditOutcome(r.Context(), "portcullis.dev/session", s.ID)
		setSessionCookie(w, tok, s.ExpiresAt)
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
	}
}

// loginFailed ends a failed login: the CLI's loopback gets the error (so
// the terminal says what happened), a device is told it was refused, and a
// browser sees a page.
func (p *Portal) loginFailed(w http.ResponseWriter, r *http.Request, att *attempt, f *failure) {
	p.metrics.logins.WithLabelValues(att.flow, f.outcome).Inc()
	auditOutcome(r.Context(), "portcullis.dev/outcome", f.outcome, "portcullis.dev/idp", att.idp, "portcullis.dev/flow", att.flow)
	switch att.flow {
	case flowLoopback:
		code := f.oauth
		if code == "" {
			code = "server_error"
		}
		p.redirectToCLI(w, r, att.cli, url.Values{"error": {code}, "error_description": {f.title + ": " + f.message}})
		return
	case flowDevice:
		if f.outcome == outcomeDenied || f.oauth == "access_denied" {
			if err := p.devices.deny(r.Context(), att.device, f.title+": "+f.message, p.now()); err != nil {
				klog.ErrorS(err, "Telling a device its login was refused failed")
			}
		}
	}
	p.renderFailure(w, r, f, "/login")
}

func (p *Portal) redirectToCLI(w http.ResponseWriter, r *http.Request, cli *cliParams, params url.Values) {
	u := *cli.redirect
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	q.Set("state", cli.state)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func withColon(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// serveCLIComplete is where the CLI sends the browser once it has its tokens.
func (p *Portal) serveCLIComplete(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	p.render(w, r, http.StatusOK, "cli_complete", &pageData{Title: "Login complete"})
}

// redeemCode exchanges a CLI's one-time code for its login result.
func (p *Portal) redeemCode(ctx context.Context, code, verifier, redirect string) (*codeRecord, *failure) {
	invalid := fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_grant", "Invalid code",
		"the code is unknown, expired or already used, or does not match the verifier or redirect URI; log in again")
	if code == "" || verifier == "" {
		return nil, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "Missing parameters", "code and code_verifier are required")
	}
	key := sha256Hex(code)
	var (
		got             *codeRecord
		replayed        bool
		replayedSession string
	)
	challenge := oauth2.S256ChallengeFromVerifier(verifier)
	_, err := updateRecord(ctx, p.d.Logins, loginstate.KindCode, key, func(cur *codeRecord) bool {
		got, replayed, replayedSession = nil, false, ""
		if cur.Claimed {
			replayed, replayedSession = true, cur.RedeemedSession
			return false
		}
		if !constantTimeEqual(challenge, cur.Challenge) || redirect != cur.Redirect {
			// One attempt per code: a wrong verifier burns it.
			return false
		}
		cp := *cur
		got = &cp
		cur.Claimed = true
		return true // kept until it expires, to detect a second use
	})
	if err != nil && !errors.Is(err, loginstate.ErrNotFound) {
		return nil, stateFailure(err)
	}
	if replayed {
		if replayedSession != "" {
			klog.InfoS("A one-time login code was used twice: revoking the session it created", "session", replayedSession)
			if s, err := p.d.Store.GetSession(ctx, replayedSession); err == nil {
				if err := p.sessions.End(ctx, s, "one-time login code used twice", "portcullis"); err != nil {
					klog.ErrorS(err, "Revoking a session after code reuse", "session", replayedSession)
				}
			}
		}
		invalid.outcome = outcomeCodeReplayed
		return nil, invalid
	}
	if got == nil {
		return nil, invalid
	}
	return got, nil
}

// markRedeemed records the session a code created, and drops the result
// it held (the tokens are handed out).
func (p *Portal) markRedeemed(ctx context.Context, code, sid string) {
	_, err := updateRecord(ctx, p.d.Logins, loginstate.KindCode, sha256Hex(code), func(c *codeRecord) bool {
		c.RedeemedSession, c.Result = sid, nil
		return true
	})
	if err != nil && !errors.Is(err, loginstate.ErrNotFound) {
		klog.ErrorS(err, "Recording the session a one-time code created", "session", sid)
	}
}
