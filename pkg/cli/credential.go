package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"portcullis.dev/portcullis/pkg/portalapi"
)

// credentialOptions say what a command may do to get a token.
type credentialOptions struct {
	cacheDir string
	// interactive allows a login when there is no usable session.
	interactive bool
	noBrowser   bool
	// forceLogin logs in anew even with a session.
	forceLogin bool
	// lockTimeout bounds the wait for another process's login.
	lockTimeout time.Duration
	// browserCommand and listenAddresses are passed to the browser login.
	browserCommand  string
	listenAddresses []string
}

// credential is a token for one cluster.
type credential struct {
	token     string
	expiresAt time.Time
	session   portalapi.SessionInfo
}

// errNeedLogin says a login is needed and not allowed here; its text tells
// the person what to run.
type errNeedLogin struct {
	t      *target
	reason string
}

func (e *errNeedLogin) Error() string {
	return fmt.Sprintf("%s, and portcullis cannot log you in here because kubectl is not running interactively (no terminal).\nLog in from a terminal with:\n\n  %s\n\nthen run the command again (or give the plugin --browser-command to log in through a browser without a terminal).", e.reason, loginCommand(e.t))
}

// loginCommand is the command a person runs to log in to t.
func loginCommand(t *target) string {
	name := t.name
	if name == "" {
		name = "portcullis"
	}
	parts := []string{name, "login", "--server=" + t.server}
	if t.cluster != "" {
		parts = append(parts, "--cluster="+t.cluster)
	}
	if t.caFile != "" {
		parts = append(parts, "--certificate-authority="+t.caFile)
	}
	if t.idp != "" {
		parts = append(parts, "--idp="+t.idp)
	}
	if t.device {
		parts = append(parts, "--device")
	}
	if t.cacheDir != "" {
		parts = append(parts, "--cache-dir="+t.cacheDir)
	}
	return strings.Join(parts, " ")
}

// getCredential returns a token for t.cluster: from the cache, by a refresh,
// or by a login when that is allowed. Processes share the work through the
// cache lock.
func (d *Deps) getCredential(ctx context.Context, t *target, opts credentialOptions) (*credential, error) {
	cache, err := d.openCache(opts.cacheDir)
	if err != nil {
		return nil, err
	}
	lockTimeout := opts.lockTimeout
	if lockTimeout == 0 {
		lockTimeout = loginTimeout + time.Minute
	}
	lctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	unlock, err := cache.lock(lctx, t.server, func() {
		if opts.interactive {
			fmt.Fprintln(d.Stderr, "Waiting for another portcullis command (a login may be in progress)...")
		}
	})
	if err != nil {
		return nil, err
	}
	defer unlock()

	entry, err := cache.load(t.server)
	if err != nil {
		return nil, err
	}
	now := d.Clock.Now()
	if !opts.forceLogin {
		if tok, ok := entry.Tokens[t.cluster]; ok && tok.fresh(now) {
			d.debugf(1, "using the cached token for cluster %s (valid until %s)", t.cluster, tok.ExpiresAt.Format(time.RFC3339))
			return &credential{token: tok.Token, expiresAt: tok.ExpiresAt, session: entry.Session}, nil
		}
	}
	if !opts.forceLogin && t.cluster != "" {
		if tok, ok := entry.Tokens[t.cluster]; ok && tok.Exchanged {
			return d.reExchange(ctx, cache, entry, t, tok)
		}
		if src := d.Getenv(idTokenFileEnv); entry.RefreshToken == "" && src != "" && src != "-" {
			return d.exchangeAndCache(ctx, cache, entry, t, src)
		}
	}
	client, err := d.newPortalClient(t)
	if err != nil {
		return nil, err
	}
	reason := fmt.Sprintf("you are not logged in to %s", t.server)
	if entry.RefreshToken != "" && !opts.forceLogin {
		d.debugf(1, "refreshing the session at %s for cluster %s", t.server, t.cluster)
		resp, err := client.refresh(ctx, entry.RefreshToken, t.cluster)
		switch {
		case err == nil:
			entry.apply(resp, now)
			if err := cache.save(entry); err != nil {
				return nil, err
			}
			return entry.credential(t.cluster)
		case sessionEnded(err):
			reason = fmt.Sprintf("your session at %s has ended (%v)", t.server, err)
			entry = &cacheEntry{Server: t.server}
			if err := cache.save(entry); err != nil {
				return nil, err
			}
		case isDenied(err):
			return nil, fmt.Errorf("portcullis denied access to cluster %q: %v", t.cluster, err)
		default:
			// The server or its IdP is down: a token that has not expired
			// yet is better than nothing.
			if tok, ok := entry.Tokens[t.cluster]; ok && tok.usable(now) {
				fmt.Fprintf(d.Stderr, "Warning: could not refresh the session (%v); using the current token until %s.\n", err, tok.ExpiresAt.Local().Format(time.Kitchen))
				return &credential{token: tok.Token, expiresAt: tok.ExpiresAt, session: entry.Session}, nil
			}
			return nil, fmt.Errorf("refreshing your session at %s: %w", t.server, err)
		}
	}
	if !opts.interactive && !d.passwordInEnv() { // CI: password.go
		d.debugf(1, "a login is needed (%s) and not allowed here", reason)
		return nil, &errNeedLogin{t: t, reason: reason}
	}
	d.debugf(1, "logging in to %s", t.server)
	if entry.RefreshToken != "" && opts.forceLogin {
		// The old session is replaced: end it rather than leave it behind.
		if _, err := client.logout(ctx, entry.RefreshToken); err != nil {
			fmt.Fprintf(d.Stderr, "Warning: could not end the previous session: %v\n", err)
		}
	}
	resp, err := d.login(ctx, client, loginOptions{noBrowser: opts.noBrowser, browserCommand: opts.browserCommand, listenAddresses: opts.listenAddresses})
	if err != nil {
		if isDenied(err) {
			return nil, fmt.Errorf("portcullis denied the login: %v", err)
		}
		return nil, fmt.Errorf("logging in to %s: %w", t.server, err)
	}
	entry = &cacheEntry{Server: t.server}
	entry.apply(resp, d.Clock.Now())
	if err := cache.save(entry); err != nil {
		return nil, err
	}
	if t.cluster == "" {
		return &credential{session: entry.Session}, nil
	}
	return entry.credential(t.cluster)
}

// apply records a token response.
func (e *cacheEntry) apply(resp *portalapi.TokenResponse, now time.Time) {
	if resp.RefreshToken != "" {
		e.RefreshToken = resp.RefreshToken
	}
	if resp.Session.Username != "" {
		clusters := e.Session.Clusters
		e.Session = resp.Session
		if len(resp.Session.Clusters) <= 1 && len(clusters) > 1 {
			// A refresh names only its cluster: keep what login said.
			e.Session.Clusters = clusters
		}
	}
	if e.Tokens == nil {
		e.Tokens = map[string]cachedToken{}
	}
	for cluster, tok := range resp.ClusterTokens {
		e.Tokens[cluster] = cachedToken{Token: tok.Token, IssuedAt: now, ExpiresAt: tok.ExpiresAt}
	}
}

func (e *cacheEntry) credential(cluster string) (*credential, error) {
	tok, ok := e.Tokens[cluster]
	if !ok {
		return nil, errors.New("portcullis returned no token for cluster " + cluster)
	}
	return &credential{token: tok.Token, expiresAt: tok.ExpiresAt, session: e.Session}, nil
}
