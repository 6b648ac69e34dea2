package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/ldap"
	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

// Password logins, for identity providers that are LDAP directories
// (pkg/ldap): the portal asks for the user name and password itself, on
// its own page (GET and POST /login/<idp>, CSRF-protected like the device
// page) or, for the CLI, as JSON at portalapi.PathPassword. Either way the
// result is the same session as an OpenID Connect login's, whose "upstream
// refresh token" is the user's DN: each refresh looks the user up in the
// directory again (directoryRefresh).
//
// The password is never logged, audited, echoed into a page or put into an
// error; every refusal says only "invalid username or password"; attempts
// are rate-limited per user name and per client address.

const (
	flowPassword    = "password"     // the portal's password page
	flowPasswordCLI = "password_cli" // the JSON endpoint of the CLI

	outcomeInvalidCredentials = "invalid_credentials"
	outcomeRateLimited        = "rate_limited"

	// invalidCredentials is the one message of every refused password login.
	invalidCredentials = "Invalid username or password."
	// passwordLoginTimeout bounds one login at the directory.
	passwordLoginTimeout = 30 * time.Second
)

// directory returns the LDAP directory called name.
func (p *Portal) directory(name string) (*ldap.Directory, bool) {
	return p.d.Directories.Get(name)
}

// loginChoices are the identity providers people can log in with, in
// configuration order, linking to /login/<idp> with query carried over.
func (p *Portal) loginChoices(rawQuery string) []idpLink {
	var out []idpLink
	add := func(name, display string) {
		u := "/login/" + url.PathEscape(name)
		if rawQuery != "" {
			u += "?" + rawQuery
		}
		out = append(out, idpLink{Name: name, DisplayName: display, URL: u})
	}
	for _, idp := range p.d.Config().IdentityProviders {
		if prov, ok := p.provider(idp.Name); ok {
			add(prov.Name(), prov.DisplayName())
		} else if d, ok := p.directory(idp.Name); ok {
			add(d.Name(), d.DisplayName())
		}
	}
	if len(out) == 0 {
		// Providers that are not (or no longer) in the live configuration.
		for _, prov := range p.d.IdPs.List() {
			add(prov.Name(), prov.DisplayName())
		}
		for _, d := range p.d.Directories.List() {
			add(d.Name(), d.DisplayName())
		}
	}
	return out
}

// idpInfos are the identity providers for the CLI (/portal/api/clusters),
// with their kind.
func (p *Portal) idpInfos() []portalapi.IdPInfo {
	var out []portalapi.IdPInfo
	for _, l := range p.loginChoices("") {
		kind := portalapi.IdPTypeOIDC
		if _, ok := p.directory(l.Name); ok {
			kind = portalapi.IdPTypeLDAP
		}
		out = append(out, portalapi.IdPInfo{Name: l.Name, DisplayName: l.DisplayName, Type: kind})
	}
	return out
}

// servePasswordLogin is /login/<idp> of an LDAP directory: the form (GET)
// and its submission (POST).
func (p *Portal) servePasswordLogin(w http.ResponseWriter, r *http.Request, d *ldap.Directory) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	data := &pageData{Title: "Log in with " + d.DisplayName(), SelectedIdP: d.Name(), Action: "/login/" + url.PathEscape(d.Name())}
	var params url.Values
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			p.renderError(w, r, http.StatusBadRequest, "The form could not be read", "Go back and try again.", data.Action)
			return
		}
		params = r.PostForm
	} else {
		params = r.URL.Query()
	}
	// The login's parameters (cluster, the CLI's loopback redirect) travel
	// in hidden fields, checked again on submission.
	flow := flowPassword
	cluster := params.Get("cluster")
	var cli *cliParams
	for _, k := range []string{"cluster", "cli_redirect", "cli_challenge", "cli_state"} {
		if v := params.Get(k); v != "" {
			data.Hidden = append(data.Hidden, hiddenField{Name: k, Value: v})
		}
	}
	if cluster != "" && !p.d.Policy.Load().HasCluster(cluster) {
		p.renderError(w, r, http.StatusBadRequest, "Unknown cluster",
			fmt.Sprintf("Portcullis knows no cluster called %q.", truncate(cluster, 64)), "")
		return
	}
	if params.Has("cli_redirect") || params.Has("cli_challenge") || params.Has("cli_state") {
		c, err := parseCLIParams(params)
		if err != nil {
			p.metrics.logins.WithLabelValues(flowLoopback, outcomeInvalidRequest).Inc()
			auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeInvalidRequest, "portcullis.dev/reason", err.Error())
			p.renderError(w, r, http.StatusBadRequest, "This login link is not valid", err.Error(), "")
			return
		}
		cli, flow = c, flowLoopback
	}
	if r.Method != http.MethodPost {
		data.CSRF = p.csrfToken(w, r)
		p.render(w, r, http.StatusOK, "password", data)
		return
	}

	username := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	if len(username) <= ldap.MaxUsernameLength {
		data.Username = username
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" || !constantTimeEqual(c.Value, r.PostForm.Get("csrf")) {
		data.CSRF = p.csrfToken(w, r)
		data.Error = "This form has expired. Enter your password again."
		p.render(w, r, http.StatusBadRequest, "password", data)
		return
	}
	data.CSRF = c.Value
	res, f := p.passwordLogin(r, d, flow, username, password)
	if f != nil {
		p.metrics.logins.WithLabelValues(flow, f.outcome).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", f.outcome, "portcullis.dev/idp", d.Name(), "portcullis.dev/flow", flow)
		if f.outcome == outcomeInvalidCredentials {
			data.Error = f.message
			p.render(w, r, f.status, "password", data)
			return
		}
		p.renderFailure(w, r, f, data.Action)
		return
	}
	id := p.effectiveIdentity(res.id)
	adm := p.admit(r.Context(), id)
	if len(adm.admitted) == 0 || (cluster != "" && !adm.allowed(cluster)) {
		reason := fmt.Sprintf("You are logged in as %s, but the access policy admits you to no cluster.", id.Username)
		if cluster != "" {
			reason = adm.reasons[cluster] + "."
		}
		auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, outcomeDenied, "portcullis.dev/flow", flow, "portcullis.dev/reason", reason)
		p.metrics.logins.WithLabelValues(flow, outcomeDenied).Inc()
		f := fail(http.StatusForbidden, outcomeDenied, "access_denied", "Access denied", reason)
		if cli != nil {
			p.redirectToCLI(w, r, cli, url.Values{"error": {f.oauth}, "error_description": {f.title + ": " + f.message}})
			return
		}
		p.renderFailure(w, r, f, "")
		return
	}
	auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, outcomeSuccess, "portcullis.dev/flow", flow)
	p.metrics.logins.WithLabelValues(flow, outcomeSuccess).Inc()
	klog.V(2).InfoS("Login with a password at an LDAP directory", "user", id.Username, "identityProvider", id.IdentityProvider, "flow", flow)

	if cli != nil {
		code := randomToken(32)
		rec := codeRecord{Result: recordOf(res), Challenge: cli.challenge, Redirect: cli.redirect.String(), Cluster: cluster}
		if err := p.createRecord(r.Context(), loginstate.KindCode, sha256Hex(code), rec, p.now().Add(codeTTL)); err != nil {
			p.renderFailure(w, r, stateFailure(err), "")
			return
		}
		p.redirectToCLI(w, r, cli, url.Values{"code": {code}})
		return
	}
	s, tok, err := p.sessions.Create(r.Context(), res.id, res.upstreamRefreshToken, clientAddress(r))
	if err != nil {
		klog.ErrorS(err, "Creating a session failed", "user", id.Username)
		p.renderError(w, r, http.StatusInternalServerError, "Portcullis could not log you in",
			"Your login was accepted but could not be saved. Try again; if it keeps failing, tell your administrator.", data.Action)
		return
	}
	auditOutcome(r.Context(), "portcullis.dev/session", s.ID)
	setSessionCookie(w, tok, s.ExpiresAt)
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
}

// servePasswordAPI is the CLI's password login: JSON (or a form) with
// username, password, and optionally idp and cluster; the answer is the
// token response of the loopback flow's /portal/api/token.
func (p *Portal) servePasswordAPI(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	var username, password, idp, cluster string
	if err := decodeRequest(w, r, map[string]*string{"username": &username, "password": &password, "idp": &idp, "cluster": &cluster}); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	failed := func(f *failure) {
		p.metrics.logins.WithLabelValues(flowPasswordCLI, f.outcome).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", f.outcome, "portcullis.dev/idp", idp, "portcullis.dev/flow", flowPasswordCLI)
		if f.status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "60")
		}
		writeOAuthError(w, f.status, f.oauth, f.message)
	}
	var d *ldap.Directory
	switch ds := p.d.Directories.List(); {
	case idp != "":
		var ok bool
		if d, ok = p.directory(idp); !ok {
			failed(fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "",
				fmt.Sprintf("there is no LDAP identity provider %q here (password logins are only for LDAP directories)", truncate(idp, 64))))
			return
		}
	case len(ds) == 1:
		d, idp = ds[0], ds[0].Name()
	case len(ds) == 0:
		failed(fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "", "this Portcullis has no LDAP identity provider to log in to with a password"))
		return
	default:
		failed(fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "", "idp is required: this Portcullis has several LDAP identity providers"))
		return
	}
	if username == "" || password == "" {
		failed(fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "", "username and password are required"))
		return
	}
	res, f := p.passwordLogin(r, d, flowPasswordCLI, username, password)
	if f != nil {
		failed(f)
		return
	}
	resp, f := p.createSession(r.Context(), r, res, cluster)
	if f != nil {
		failed(f)
		return
	}
	p.metrics.logins.WithLabelValues(flowPasswordCLI, outcomeSuccess).Inc()
	auditOutcome(r.Context(), "portcullis.dev/flow", flowPasswordCLI)
	writeJSON(w, http.StatusOK, resp)
}

// passwordLogin checks a user name and password at d, within the rate
// limits. Its failures are: invalid credentials (401, one message for every
// refusal), too many attempts (429), or the directory being unavailable
// (503, naming it).
func (p *Portal) passwordLogin(r *http.Request, d *ldap.Directory, flow, username, password string) (*loginResult, *failure) {
	now := p.now()
	// Both buckets are charged: a guesser spreading over user names meets
	// the client's limit, one spreading over addresses the user's.
	// Hashed: a key's size must not depend on what a client sends.
	userOK := p.passwordLimits.users.Allow(sha256Hex(d.Name()+"\x00"+strings.ToLower(username)), now)
	clientOK := p.passwordLimits.clients.Allow(clientAddress(r), now)
	if !userOK || !clientOK {
		return nil, fail(http.StatusTooManyRequests, outcomeRateLimited, "too_many_attempts", "Too many login attempts",
			"Too many login attempts. Wait a minute and try again.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), passwordLoginTimeout)
	defer cancel()
	res, err := d.Authenticate(ctx, username, password)
	switch {
	case err == nil:
	case errors.Is(err, ldap.ErrInvalidCredentials):
		return nil, fail(http.StatusUnauthorized, outcomeInvalidCredentials, "invalid_grant", "Login failed", invalidCredentials)
	default:
		// The directory (or Portcullis's account at it) is the problem,
		// not the person's password: say so, and which directory.
		klog.ErrorS(err, "A password login could not be checked", "identityProvider", d.Name())
		msg := fmt.Sprintf("The directory %s cannot be reached right now, so your password could not be checked. Try again in a minute; if it keeps failing, tell your administrator.", d.DisplayName())
		if errors.Is(err, ldap.ErrBindCredentials) {
			msg = fmt.Sprintf("Portcullis cannot use the directory %s: it refuses Portcullis's own account. Tell your administrator (the server's log says more).", d.DisplayName())
		}
		return nil, fail(http.StatusServiceUnavailable, outcomeUnavailable, "temporarily_unavailable", "The directory is unavailable", msg)
	}
	return &loginResult{id: sessionUserOf(res.Identity), upstreamRefreshToken: res.DN}, nil
}

func sessionUserOf(id identity.Identity) session.User {
	return session.User{
		Username:         id.Username,
		UID:              id.UID,
		Groups:           id.Groups,
		Extra:            id.Extra,
		Email:            id.Email,
		IdentityProvider: id.IdentityProvider,
	}
}

// directoryRefresh is the refresh of a session of an LDAP directory: the
// user is looked up again by DN, so a deleted or disabled account ends the
// session, and the groups are the directory's now.
func (p *Portal) directoryRefresh(ctx context.Context, d *ldap.Directory, s store.Session) (*session.Upstream, error) {
	ctx, cancel := context.WithTimeout(ctx, passwordLoginTimeout)
	defer cancel()
	res, err := d.Lookup(ctx, s.UpstreamRefreshToken)
	switch {
	case errors.Is(err, ldap.ErrUserGone):
		return nil, fmt.Errorf("%w: %s", session.ErrUpstreamRefused, err.Error())
	case err != nil:
		return nil, err
	case res.Identity.UID != s.UID || res.Identity.Username != s.Username:
		// Another entry now has the DN (deleted and created again).
		return nil, fmt.Errorf("%w: the directory entry %s now belongs to another user", session.ErrUpstreamRefused, s.UpstreamRefreshToken)
	}
	u := sessionUserOf(res.Identity)
	return &session.Upstream{User: &u}, nil
}
