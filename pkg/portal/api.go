package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/pkg/proxy"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

func (p *Portal) sessionInfo(s store.Session, id *identity.Identity, adm admission) portalapi.SessionInfo {
	info := portalapi.SessionInfo{
		ID:               s.ID,
		Username:         id.Username,
		UID:              id.UID,
		Email:            id.Email,
		IdentityProvider: id.IdentityProvider,
		Groups:           id.Groups,
		Clusters:         adm.admitted,
		CreatedAt:        s.CreatedAt.UTC(),
		ExpiresAt:        s.ExpiresAt.UTC(),
	}
	if s.IdleTimeout > 0 {
		idle := s.LastUsedAt.Add(s.IdleTimeout)
		if idle.Before(s.ExpiresAt) {
			info.IdleExpiresAt = idle.UTC()
		}
	}
	return info
}

// serveToken redeems a CLI's one-time code: it creates the session and mints
// the token(s).
func (p *Portal) serveToken(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	var code, verifier, redirect, cluster, grantType string
	if err := decodeRequest(w, r, map[string]*string{
		"grant_type": &grantType, "code": &code, "code_verifier": &verifier, "redirect_uri": &redirect, "cluster": &cluster,
	}); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if grantType != "" && grantType != "authorization_code" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code is accepted here")
		return
	}
	c, f := p.redeemCode(r.Context(), code, verifier, redirect)
	if f != nil {
		auditOutcome(r.Context(), "portcullis.dev/outcome", f.outcome, "portcullis.dev/flow", flowLoopback)
		writeOAuthError(w, f.status, f.oauth, f.message)
		return
	}
	if cluster == "" {
		cluster = c.Cluster
	}
	resp, f := p.createSession(r.Context(), r, c.Result.result(), cluster)
	if f != nil {
		auditOutcome(r.Context(), "portcullis.dev/outcome", f.outcome, "portcullis.dev/flow", flowLoopback)
		writeOAuthError(w, f.status, f.oauth, f.message)
		return
	}
	p.markRedeemed(r.Context(), code, resp.Session.ID)
	writeJSON(w, http.StatusOK, resp)
}

// createSession turns a login into a session with tokens for cluster (or,
// when empty, for every cluster the policy admits the user to). The policy
// is checked before anything is created.
func (p *Portal) createSession(ctx context.Context, r *http.Request, res *loginResult, cluster string) (*portalapi.TokenResponse, *failure) {
	id := p.effectiveIdentity(res.id)
	adm := p.admit(ctx, id)
	clusters := adm.admitted
	if cluster != "" {
		if !p.d.Policy.Load().HasCluster(cluster) {
			return nil, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "Unknown cluster", fmt.Sprintf("there is no cluster %q", truncate(cluster, 64)))
		}
		if !adm.allowed(cluster) {
			auditIdentity(ctx, id.Username, id.IdentityProvider, id.Groups, outcomeDenied, "portcullis.dev/cluster", cluster)
			return nil, fail(http.StatusForbidden, outcomeDenied, "access_denied", "Access denied", adm.reasons[cluster])
		}
		clusters = []string{cluster}
	}
	if len(clusters) == 0 {
		auditIdentity(ctx, id.Username, id.IdentityProvider, id.Groups, outcomeDenied)
		return nil, fail(http.StatusForbidden, outcomeDenied, "access_denied", "Access denied", fmt.Sprintf("the access policy admits %s to no cluster", id.Username))
	}
	s, refresh, err := p.sessions.CreateFrom(ctx, res.id, res.upstreamRefreshToken, originOf(r))
	if err != nil {
		klog.ErrorS(err, "Creating a session failed", "user", id.Username)
		return nil, fail(http.StatusInternalServerError, outcomeError, "server_error", "Internal error", "the session could not be saved; try again")
	}
	resp := &portalapi.TokenResponse{TokenType: "Bearer", RefreshToken: refresh, ClusterTokens: map[string]portalapi.ClusterToken{}}
	for _, c := range clusters {
		m, err := p.mint(ctx, s, c)
		if err != nil {
			// Nothing half-made: the session goes with the failure.
			if endErr := p.sessions.End(ctx, s, "login failed", "portcullis"); endErr != nil {
				klog.ErrorS(endErr, "Removing the session of a failed login", "session", s.ID)
			}
			var denied *deniedError
			if errors.As(err, &denied) {
				return nil, fail(http.StatusForbidden, outcomeDenied, "access_denied", "Access denied", denied.reason)
			}
			klog.ErrorS(err, "Minting a cluster token failed", "cluster", c)
			return nil, fail(http.StatusInternalServerError, outcomeError, "server_error", "Internal error", "the token could not be minted; try again")
		}
		resp.ClusterTokens[c] = portalapi.ClusterToken(m)
	}
	primary := clusters[0]
	resp.Cluster = primary
	resp.AccessToken = resp.ClusterTokens[primary].Token
	resp.ExpiresIn = int64(resp.ClusterTokens[primary].ExpiresAt.Sub(p.now()).Seconds())
	resp.Session = p.sessionInfo(s, id, adm)
	auditIdentity(ctx, id.Username, id.IdentityProvider, id.Groups, outcomeSuccess, "portcullis.dev/session", s.ID)
	return resp, nil
}

// serveRefresh rotates a refresh token and mints a token for one cluster.
func (p *Portal) serveRefresh(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	start := time.Now()
	defer func() { p.metrics.refreshDuration.Observe(time.Since(start).Seconds()) }()
	var refresh, cluster, grantType string
	if err := decodeRequest(w, r, map[string]*string{"grant_type": &grantType, "refresh_token": &refresh, "cluster": &cluster}); err != nil {
		p.refreshFailed(w, r, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "", err.Error()))
		return
	}
	if grantType != "" && grantType != "refresh_token" {
		p.refreshFailed(w, r, fail(http.StatusBadRequest, outcomeInvalidRequest, "unsupported_grant_type", "", "only refresh_token is accepted here"))
		return
	}
	pol := p.d.Policy.Load()
	if cluster == "" {
		if cs := pol.Clusters(); len(cs) == 1 {
			cluster = cs[0]
		} else {
			p.refreshFailed(w, r, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "", "cluster is required"))
			return
		}
	}
	if !pol.HasCluster(cluster) {
		p.refreshFailed(w, r, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_request", "", fmt.Sprintf("there is no cluster %q", truncate(cluster, 64))))
		return
	}
	var (
		tok minted
		id  *identity.Identity
	)
	authorize := func(ctx context.Context, s store.Session) error {
		id = p.effectiveIdentity(sessionUser(s))
		res := pol.Decide(ctx, cluster, id, p.d.Store, p.now())
		if !res.Allowed {
			return &deniedError{reason: res.Reason}
		}
		// Minted before the rotation is written: a failure to mint must not
		// cost the client its refresh token.
		var err error
		tok, err = p.mintAdmitted(ctx, s, id, cluster, res)
		return err
	}
	res, err := p.sessions.Refresh(r.Context(), refresh, p.upstreamRefresh, authorize)
	if err != nil {
		f := refreshFailure(err)
		if id != nil {
			p.metrics.refreshes.WithLabelValues(f.outcome).Inc()
			auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, f.outcome, "portcullis.dev/cluster", cluster, "portcullis.dev/reason", f.message)
			writeOAuthError(w, f.status, f.oauth, f.message)
			return
		}
		p.refreshFailed(w, r, f, "portcullis.dev/cluster", cluster)
		return
	}
	outcome := outcomeSuccess
	if res.Grace {
		outcome = outcomeGrace
	}
	p.metrics.refreshes.WithLabelValues(outcome).Inc()
	auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, outcome, "portcullis.dev/session", res.Session.ID, "portcullis.dev/cluster", cluster)
	writeJSON(w, http.StatusOK, &portalapi.TokenResponse{
		TokenType:     "Bearer",
		AccessToken:   tok.Token,
		ExpiresIn:     int64(tok.ExpiresAt.Sub(p.now()).Seconds()),
		RefreshToken:  res.RefreshToken,
		Cluster:       cluster,
		ClusterTokens: map[string]portalapi.ClusterToken{cluster: portalapi.ClusterToken(tok)},
		Session:       p.sessionInfo(res.Session, id, admission{admitted: []string{cluster}}),
	})
}

// refreshFailure maps a session error to an OAuth error.
func refreshFailure(err error) *failure {
	var denied *deniedError
	switch {
	case errors.As(err, &denied):
		return fail(http.StatusForbidden, outcomeDenied, "access_denied", "", denied.reason)
	case errors.Is(err, session.ErrExpired):
		return fail(http.StatusBadRequest, outcomeExpired, "invalid_grant", "", "the session has expired; log in again")
	case errors.Is(err, session.ErrReused):
		return fail(http.StatusBadRequest, outcomeReuse, "invalid_grant", "", "this refresh token was already used; the session has been revoked for safety; log in again")
	case errors.Is(err, session.ErrUpstreamRefused):
		return fail(http.StatusBadRequest, outcomeUpstreamRefused, "invalid_grant", "", "the identity provider no longer accepts this session; log in again")
	case errors.Is(err, session.ErrInvalidToken):
		return fail(http.StatusBadRequest, outcomeInvalidToken, "invalid_grant", "", "the session does not exist or has ended; log in again")
	case errors.Is(err, session.ErrUpstreamUnavailable):
		// The error names the identity provider (or directory) and why; it
		// holds no secret.
		return fail(http.StatusServiceUnavailable, outcomeUnavailable, "temporarily_unavailable", "", truncate(err.Error(), 300)+"; try again shortly")
	case errors.Is(err, store.ErrUnavailable):
		klog.ErrorS(err, "Refreshing a session failed: the state store cannot be used")
		return fail(http.StatusServiceUnavailable, outcomeUnavailable, "temporarily_unavailable", "", "the state store cannot be written now, so the session was not refreshed; try again shortly")
	}
	klog.ErrorS(err, "Refreshing a session failed")
	return fail(http.StatusInternalServerError, outcomeError, "server_error", "", "internal error; try again")
}

func (p *Portal) refreshFailed(w http.ResponseWriter, r *http.Request, f *failure, kv ...string) {
	p.metrics.refreshes.WithLabelValues(f.outcome).Inc()
	auditOutcome(r.Context(), append([]string{"portcullis.dev/outcome", f.outcome}, kv...)...)
	writeOAuthError(w, f.status, f.oauth, f.message)
}

// serveSession says what a refresh token's session is, without using it up.
func (p *Portal) serveSession(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	var refresh string
	if err := decodeRequest(w, r, map[string]*string{"refresh_token": &refresh}); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s, err := p.sessions.Lookup(r.Context(), refresh)
	if err != nil {
		f := refreshFailure(err)
		writeOAuthError(w, f.status, f.oauth, f.message)
		return
	}
	id := p.effectiveIdentity(sessionUser(s))
	writeJSON(w, http.StatusOK, p.sessionInfo(s, id, p.admit(r.Context(), id)))
}

// serveLogout ends a session. As in RFC 7009, an unknown token is not an
// error: the client's goal (no usable session) is reached either way.
func (p *Portal) serveLogout(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	var refresh string
	if err := decodeRequest(w, r, map[string]*string{"refresh_token": &refresh}); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	revoked, err := p.logout(r, refresh)
	switch {
	case errors.Is(err, store.ErrUnavailable) && !errors.Is(err, session.ErrNotDeleted):
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the state store cannot be written now, so the session was not revoked; try again shortly")
		return
	case err != nil:
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "the session could not be revoked; try again")
		return
	}
	writeJSON(w, http.StatusOK, portalapi.LogoutResponse{Revoked: revoked})
}

// logout revokes the session of refresh; err is a server failure.
func (p *Portal) logout(r *http.Request, refresh string) (revoked bool, err error) {
	s, err := p.sessions.Revoke(r.Context(), refresh, "logout")
	switch {
	case errors.Is(err, session.ErrInvalidToken):
		p.metrics.logouts.WithLabelValues(outcomeNotFound).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeNotFound)
		return false, nil
	case err != nil:
		klog.ErrorS(err, "Logout failed")
		p.metrics.logouts.WithLabelValues(outcomeError).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeError)
		return false, err
	}
	id := p.effectiveIdentity(sessionUser(s))
	p.metrics.logouts.WithLabelValues(outcomeSuccess).Inc()
	auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, outcomeSuccess, "portcullis.dev/session", s.ID, "portcullis.dev/action", "logout")
	return true, nil
}

func (p *Portal) clusterInfos() []portalapi.ClusterInfo {
	cfg := p.d.Config()
	var out []portalapi.ClusterInfo
	for _, c := range cfg.Clusters {
		ci := portalapi.ClusterInfo{Name: c.Name, Mode: "webhook"}
		if c.Upstream != nil {
			ci.Mode, ci.Server = "proxy", p.d.IssuerURL+proxy.PathPrefix+c.Name
		} else if server, ca, ok := p.apiServer(c.Name); ok {
			// The cluster's own API server, so `portcullis kubeconfig`
			// needs no --api-server.
			ci.Server, ci.CertificateAuthorityData = server, ca
		}
		out = append(out, ci)
	}
	return out
}

func (p *Portal) serveClusters(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	resp := portalapi.ClustersResponse{Issuer: p.d.IssuerURL, Clusters: p.clusterInfos()}
	resp.IdentityProviders = p.idpInfos()
	if resp.Clusters == nil {
		resp.Clusters = []portalapi.ClusterInfo{}
	}
	writeJSON(w, http.StatusOK, resp)
}
