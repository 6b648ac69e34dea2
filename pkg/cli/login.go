package cli

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"portcullis.dev/portcullis/pkg/portalapi"
)

// loginTimeout bounds a login: the person has this long to finish at the
// identity provider.
const loginTimeout = 5 * time.Minute

// loginOptions say how to log in.
type loginOptions struct {
	noBrowser bool
	// browserCommand, when set, opens the login page (--browser-command).
	browserCommand string
	// listenAddresses are where the redirect listener may listen, tried in
	// order (--listen-address); 127.0.0.1 on any free port when empty.
	listenAddresses []string
}

// login runs a login flow and returns the portal's token response.
func (d *Deps) login(ctx context.Context, c *portalClient, opts loginOptions) (*portalapi.TokenResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	if c.t.device {
		return d.deviceLogin(ctx, c)
	}
	// Before sending a person to a browser: is the server there, trusted,
	// and does it know the cluster and IdP asked for?
	info, err := c.clusters(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkNames(c.t, info); err != nil {
		return nil, err
	}
	if idp, ok := d.passwordIdP(c.t, info); ok {
		return d.passwordLogin(ctx, c, idp) // an LDAP directory: password.go
	}
	return d.loopbackLogin(ctx, c, opts)
}

func checkNames(t *target, info *portalapi.ClustersResponse) error {
	if t.cluster != "" {
		var names []string
		found := false
		for _, c := range info.Clusters {
			names = append(names, c.Name)
			found = found || c.Name == t.cluster
		}
		if !found {
			return fmt.Errorf("%s has no cluster %q (it has: %s)", t.server, t.cluster, strings.Join(names, ", "))
		}
	}
	if t.idp != "" {
		var names []string
		found := false
		for _, p := range info.IdentityProviders {
			names = append(names, p.Name)
			found = found || p.Name == t.idp
		}
		if !found {
			return fmt.Errorf("%s has no identity provider %q (it has: %s)", t.server, t.idp, strings.Join(names, ", "))
		}
	}
	return nil
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// loopbackLogin is the browser flow with a loopback redirect (RFC 8252): a
// listener on 127.0.0.1 gets Portcullis's one-time code, which is redeemed
// with the PKCE verifier only this process knows.
func (d *Deps) loopbackLogin(ctx context.Context, c *portalClient, opts loginOptions) (*portalapi.TokenResponse, error) {
	ln, err := listenLoopback(opts.listenAddresses)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://%s/callback", ln.Addr().String())
	d.debugf(1, "waiting for the login's redirect on %s", redirect)
	verifier := oauth2.GenerateVerifier()
	state := randomString(24)
	q := url.Values{
		"cli_redirect":  {redirect},
		"cli_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
		"cli_state":     {state},
	}
	if c.t.cluster != "" {
		q.Set("cluster", c.t.cluster)
	}
	path := "/login"
	if c.t.idp != "" {
		path += "/" + url.PathEscape(c.t.idp)
	}
	loginURL := c.t.server + path + "?" + q.Encode()

	type result struct {
		resp *portalapi.TokenResponse
		err  error
	}
	done := make(chan result, 1)
	finish := func(r result) {
		select {
		case done <- r:
		default:
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(p.Get("state")), []byte(state)) != 1 {
			// Not our login (a stale tab, or someone else's request): ignore.
			writeLoopbackPage(w, http.StatusBadRequest, "This login does not belong to the waiting portcullis command. Start the login again.")
			return
		}
		if e := p.Get("error"); e != "" {
			msg := p.Get("error_description")
			if msg == "" {
				msg = e
			}
			writeLoopbackPage(w, http.StatusForbidden, msg)
			err := &apiError{OAuthError: portalapi.OAuthError{Code: e, Description: msg}}
			finish(result{err: err})
			return
		}
		resp, err := c.exchange(r.Context(), p.Get("code"), verifier, redirect, c.t.cluster)
		if err != nil {
			writeLoopbackPage(w, http.StatusBadGateway, "The login could not be completed: "+err.Error())
			finish(result{err: err})
			return
		}
		http.Redirect(w, r, c.t.server+portalapi.PathCLIComplete, http.StatusSeeOther)
		finish(result{resp: resp})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	open := d.OpenBrowser
	if opts.browserCommand != "" {
		open = func(u string) error { return startBrowserCommand(opts.browserCommand, u, d.Stderr) }
	}
	if opts.noBrowser {
		fmt.Fprintf(d.Stderr, "To log in to %s, open this address in a browser on this computer:\n\n  %s\n\n", c.t.server, loginURL)
	} else if err := open(loginURL); err != nil {
		fmt.Fprintf(d.Stderr, "Could not open a browser (%v). To log in to %s, open this address in a browser on this computer:\n\n  %s\n\n(on a computer without a browser, use --device)\n", err, c.t.server, loginURL)
	} else {
		fmt.Fprintf(d.Stderr, "Opening your browser to log in to %s. If it does not open, visit:\n\n  %s\n\n", c.t.server, loginURL)
	}
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("the login was not completed within %v", loginTimeout)
	}
}

func writeLoopbackPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Portcullis login</title></head><body><main><h1>Login not completed</h1><p role="alert">%s</p><p>Return to your terminal.</p></main></body></html>`, html.EscapeString(msg))
}

// deviceLogin is the device flow (RFC 8628) served by Portcullis: the person
// opens the address shown on any device and enters the code.
func (d *Deps) deviceLogin(ctx context.Context, c *portalClient) (*portalapi.TokenResponse, error) {
	dc, err := c.deviceCode(ctx, c.t.cluster)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(d.Stderr, "To log in to %s, open this address in a browser on any device:\n\n  %s\n\nand enter the code %s (or open %s).\n\n", c.t.server, dc.VerificationURI, dc.UserCode, dc.VerificationURIComplete)
	interval := time.Duration(dc.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second
	}
	deadline := time.Now().Add(time.Duration(dc.ExpiresIn) * time.Second)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the device login was not completed within %v", loginTimeout)
		case <-time.After(interval):
		}
		resp, err := c.deviceToken(ctx, dc.DeviceCode, c.t.cluster)
		if err == nil {
			return resp, nil
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			return nil, err
		}
		switch ae.Code {
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second
		case "expired_token":
			return nil, errors.New("the code expired before the login was completed; run the command again")
		default:
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the code expired before the login was completed; run the command again")
		}
	}
}
