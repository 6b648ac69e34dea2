package identity

import (
	"context"
	"errors"
	"fmt"

	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/jwtpeek"
)

// Providers are all the configured identity providers.
type Providers struct {
	list   []*Provider
	byName map[string]*Provider
}

// NewProviders makes a Provider for each of cfg.IdentityProviders. ctx bounds
// their life, as for NewProvider. No IdP may have Portcullis's own issuer.
func NewProviders(ctx context.Context, cfg *v1alpha1.PortcullisConfiguration) (*Providers, error) {
	ps := &Providers{byName: map[string]*Provider{}}
	if cfg == nil {
		return ps, nil
	}
	opts := providerOptions{compiler: authenticationcel.NewDefaultCompiler()}
	if cfg.IssuerURL != "" {
		opts.disallowedIssuers = []string{cfg.IssuerURL}
	}
	for _, idp := range cfg.IdentityProviders {
		if idp.IsLDAP() {
			continue // an LDAP directory: pkg/ldap
		}
		if _, dup := ps.byName[idp.Name]; dup {
			ps.Close()
			return nil, fmt.Errorf("identity provider %q is configured twice", idp.Name)
		}
		p, err := newProvider(ctx, idp, opts)
		if err != nil {
			ps.Close()
			return nil, err
		}
		ps.list = append(ps.list, p)
		ps.byName[p.Name()] = p
	}
	return ps, nil
}

// Get returns the provider called name.
func (ps *Providers) Get(name string) (*Provider, bool) {
	if ps == nil {
		return nil, false
	}
	p, ok := ps.byName[name]
	return p, ok
}

// List returns the providers in configuration order.
func (ps *Providers) List() []*Provider {
	if ps == nil {
		return nil
	}
	return append([]*Provider(nil), ps.list...)
}

// HealthCheck returns the errors of every provider not ready yet.
func (ps *Providers) HealthCheck() error {
	if ps == nil {
		return nil
	}
	var errs []error
	for _, p := range ps.list {
		if err := p.HealthCheck(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops every provider's background work.
func (ps *Providers) Close() {
	if ps == nil {
		return
	}
	for _, p := range ps.list {
		p.Close()
	}
}

// AuthenticateBearer verifies raw as an ID token of one of the providers
// that accept their ID tokens as bearer tokens. The token's unverified "iss"
// only picks the provider(s) to try; the chosen provider verifies everything.
//
// It returns (nil, false, nil) when raw is not a JWT or no such provider has
// its issuer, so the caller can try other authenticators; an error (a
// *VerifyError) when the provider it belongs to rejects it, or one wrapping
// ErrNotReady when a provider that might have accepted it could not verify
// it now (its IdP unreachable): the caller must not report that as a bad
// token. The identity is the IdP's: the caller applies the GroupMapper and
// the policy.
func (ps *Providers) AuthenticateBearer(ctx context.Context, raw string) (*Identity, bool, error) {
	if ps == nil {
		return nil, false, nil
	}
	iss, ok := jwtpeek.Issuer(raw)
	if !ok {
		return nil, false, nil
	}
	var firstErr error
	tried := false
	for _, p := range ps.list {
		if !p.AcceptsIDTokens() || p.Issuer() != iss {
			continue
		}
		tried = true
		// Several IdPs may share an issuer (e.g. different audiences): the
		// first that accepts the token wins.
		id, err := p.VerifyIDToken(ctx, raw)
		if err == nil {
			return id, true, nil
		}
		// A provider that could not verify now outranks one that refused:
		// it might have accepted the token.
		if firstErr == nil || (errors.Is(err, ErrNotReady) && !errors.Is(firstErr, ErrNotReady)) {
			firstErr = err
		}
	}
	if !tried {
		return nil, false, nil
	}
	return nil, false, firstErr
}
