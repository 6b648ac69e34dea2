package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/jwtpeek"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

// loginResult is an identity an IdP asserted, not yet a session.
type loginResult struct {
	id                   session.User
	upstreamRefreshToken string
}

func (p *Portal) redirectURL() string { return p.d.IssuerURL + "/callback" }

func (p *Portal) provider(name string) (*identity.Provider, bool) {
	return p.d.IdPs.Get(name)
}

// oauth2Config returns prov's OAuth2 client, or a failure page when the IdP
// cannot be used right now.
func (p *Portal) oauth2Config(prov *identity.Provider) (*oauth2.Config, *failure) {
	oc, err := prov.OAuth2Config(p.redirectURL())
	if err != nil {
		if errors.Is(err, identity.ErrNotReady) {
			return nil, fail(http.StatusServiceUnavailable, outcomeUnavailable, "temporarily_unavailable",
				"The identity provider cannot be reached",
				fmt.Sprintf("Portcullis could not reach %s. Try again in a minute; if it keeps failing, tell your administrator.", prov.DisplayName()))
		}
		// The cause is the operator's (a client secret file that cannot be
		// read, ...): it goes to the log, never to an anonymous page, which
		// would show file paths and OS errors to anyone.
		klog.ErrorS(err, "An identity provider cannot be used to log in: check its configuration", "identityProvider", prov.Name())
		return nil, fail(http.StatusServiceUnavailable, outcomeError, "server_error",
			"Logins through this identity provider are not set up",
			fmt.Sprintf("%s cannot be used to log in right now because of a problem in Portcullis's configuration. Tell your administrator (the server's log says what is wrong).", prov.DisplayName()))
	}
	return oc, nil
}

// idpContext makes golang.org/x/oauth2 and go-oidc use prov's HTTP client
// (which trusts the IdP's configured CA).
func idpContext(ctx context.Context, prov *identity.Provider) context.Context {
	return oidc.ClientContext(ctx, prov.HTTPClient())
}

// exchangeCode redeems an IdP authorization code with the PKCE verifier and
// resolves the identity, checking the nonce.
func (p *Portal) exchangeCode(ctx context.Context, prov *identity.Provider, code, verifier, nonce string) (*loginResult, *failure) {
	oc, f := p.oauth2Config(prov)
	if f != nil {
		return nil, f
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := oc.Exchange(idpContext(ctx, prov), code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			if re.ErrorCode == "invalid_grant" {
				return nil, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_grant",
					"The login could not be completed",
					fmt.Sprintf("%s did not accept this login any more (it may have taken too long, or been used already). Start again.", prov.DisplayName()))
			}
			if re.ErrorCode == "" && re.Response != nil && re.Response.StatusCode >= 500 {
				return nil, fail(http.StatusBadGateway, outcomeUnavailable, "temporarily_unavailable",
					"The identity provider cannot be reached",
					fmt.Sprintf("Portcullis could not complete the login with %s (it answered %s). Try again in a minute.", prov.DisplayName(), re.Response.Status))
			}
			return nil, fail(http.StatusBadGateway, outcomeIdPError, "server_error",
				"The identity provider refused to complete the login",
				fmt.Sprintf("%s answered %s. Try again; if it keeps failing, tell your administrator.", prov.DisplayName(), describeRetrieveError(re)))
		}
		return nil, fail(http.StatusBadGateway, outcomeUnavailable, "temporarily_unavailable",
			"The identity provider cannot be reached",
			fmt.Sprintf("Portcullis could not complete the login with %s. Try again in a minute.", prov.DisplayName()))
	}
	id, f := p.identityFromToken(ctx, prov, tok, nonce)
	if f != nil {
		return nil, f
	}
	return &loginResult{id: id, upstreamRefreshToken: tok.RefreshToken}, nil
}

func describeRetrieveError(re *oauth2.RetrieveError) string {
	if re.ErrorCode != "" {
		return strings.Map(printable, truncate(re.ErrorCode, 64))
	}
	if re.Response != nil {
		return re.Response.Status
	}
	return "an error"
}

// identityFromToken verifies the ID token of a token response (with the
// provider's claim mappings and rules), checks its nonce when one is
// expected, and adds the userinfo groups when the IdP is configured for them.
func (p *Portal) identityFromToken(ctx context.Context, prov *identity.Provider, tok *oauth2.Token, nonce string) (session.User, *failure) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return session.User{}, fail(http.StatusBadGateway, outcomeIdPError, "server_error",
			"The identity provider did not say who you are",
			fmt.Sprintf("%s returned no ID token. Tell your administrator (is the openid scope requested?).", prov.DisplayName()))
	}
	id, err := prov.VerifyIDToken(ctx, raw)
	if err != nil {
		var ve *identity.VerifyError
		if errors.As(err, &ve) && ve.NotReady {
			return session.User{}, fail(http.StatusServiceUnavailable, outcomeUnavailable, "temporarily_unavailable",
				"The identity provider's keys are not loaded yet",
				"Portcullis cannot check logins from "+prov.DisplayName()+" yet. Try again in a minute.")
		}
		return session.User{}, fail(http.StatusForbidden, outcomeIdPError, "access_denied",
			"Your identity could not be accepted",
			err.Error()+".")
	}
	if nonce != "" {
		got, _ := jwtpeek.StringClaim(raw, "nonce") // verified above: the payload is trustworthy
		if !constantTimeEqual(got, nonce) {
			return session.User{}, fail(http.StatusBadRequest, outcomeInvalidRequest, "invalid_grant",
				"This login response does not belong to this login",
				"The identity provider's answer was made for another login attempt. Start again.")
		}
	}
	groups := id.Groups
	if ui, err := prov.UserInfoGroups(idpContext(ctx, prov), oauth2.StaticTokenSource(tok)); err != nil {
		return session.User{}, fail(http.StatusBadGateway, outcomeIdPError, "server_error",
			"Your groups could not be read",
			err.Error()+". Try again; if it keeps failing, tell your administrator.")
	} else {
		for _, g := range ui {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	return session.User{
		Username:         id.Username,
		UID:              id.UID,
		Groups:           groups,
		Extra:            id.Extra,
		Email:            id.Email,
		IdentityProvider: prov.Name(),
	}, nil
}

// upstreamRefresh refreshes a session at its IdP: a refused grant ends the
// session (the user was removed or their grant revoked); anything else keeps
// it and fails this refresh.
func (p *Portal) upstreamRefresh(ctx context.Context, s store.Session) (*session.Upstream, error) {
	if d, ok := p.directory(s.IdentityProvider); ok {
		return p.directoryRefresh(ctx, d, s) // an LDAP directory: password.go
	}
	prov, ok := p.provider(s.IdentityProvider)
	if !ok {
		return nil, fmt.Errorf("%w: identity provider %q is no longer configured", session.ErrUpstreamRefused, s.IdentityProvider)
	}
	oc, f := p.oauth2Config(prov)
	if f != nil {
		return nil, errors.New(f.message)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := oc.TokenSource(idpContext(ctx, prov), &oauth2.Token{RefreshToken: s.UpstreamRefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return nil, fmt.Errorf("%w: %s answered invalid_grant", session.ErrUpstreamRefused, prov.Name())
		}
		if errors.As(err, &re) {
			return nil, fmt.Errorf("%s answered %s", prov.Name(), describeRetrieveError(re))
		}
		return nil, fmt.Errorf("%s could not be reached", prov.Name())
	}
	up := &session.Upstream{RefreshToken: tok.RefreshToken}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		id, f := p.identityFromToken(ctx, prov, tok, "")
		if f != nil {
			if f.status == http.StatusForbidden {
				return nil, fmt.Errorf("%w: %s", session.ErrUpstreamRefused, f.message)
			}
			return nil, errors.New(f.message)
		}
		if id.Username != s.Username {
			return nil, fmt.Errorf("%w: the identity provider now names another user", session.ErrUpstreamRefused)
		}
		up.User = &id
	}
	return up, nil
}
