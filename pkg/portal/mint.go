package portal

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/token"
)

// effectiveIdentity is the session's identity with the operator's group
// mappings applied (the identity the policy and tokens see).
func (p *Portal) effectiveIdentity(id session.User) *identity.Identity {
	out := (&identity.Identity{
		Username:         id.Username,
		UID:              id.UID,
		Groups:           id.Groups,
		Extra:            id.Extra,
		Email:            id.Email,
		IdentityProvider: id.IdentityProvider,
	}).Clone()
	// Apply also works on a nil mapper (no mappings).
	p.d.Groups().Apply(out)
	return out
}

func sessionUser(s store.Session) session.User {
	return session.User{
		Username:         s.Username,
		UID:              s.UID,
		Groups:           s.Groups,
		Extra:            s.Extra,
		Email:            s.Email,
		IdentityProvider: s.IdentityProvider,
	}
}

// admission is the policy's decision for each cluster.
type admission struct {
	admitted []string
	reasons  map[string]string // cluster → why (denials and admissions)
}

func (a admission) allowed(cluster string) bool { return slices.Contains(a.admitted, cluster) }

// admit evaluates the access policy of every cluster for id.
func (p *Portal) admit(ctx context.Context, id *identity.Identity) admission {
	pol := p.d.Policy.Load()
	a := admission{reasons: map[string]string{}}
	now := p.now()
	for _, c := range pol.Clusters() {
		d, _ := pol.Evaluate(ctx, c, id, p.d.Store, now)
		a.reasons[c] = d.Reason
		if d.Allowed {
			a.admitted = append(a.admitted, c)
		}
	}
	return a
}

// deniedError is a refusal by the access policy.
type deniedError struct{ reason string }

func (e *deniedError) Error() string { return e.reason }

// minted is a cluster token as handed out.
type minted struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// mint issues a cluster token of session s for cluster, after the policy
// (with time-bound grants) admits the user. The token expires after the
// cluster's token lifetime, and never after the session.
func (p *Portal) mint(ctx context.Context, s store.Session, cluster string) (minted, error) {
	id := p.effectiveIdentity(sessionUser(s))
	pol := p.d.Policy.Load()
	now := p.now()
	res := pol.Decide(ctx, cluster, id, p.d.Store, now)
	if !res.Allowed {
		return minted{}, &deniedError{reason: res.Reason}
	}
	return p.mintAdmitted(ctx, s, id, cluster, res)
}

// mintAdmitted mints for a user the policy admitted to cluster (res), with
// the time-bound grants' extra groups. The token expires after the
// cluster's token lifetime, and never after the session nor after a
// time-bound grant that applies (its groups would outlive it in the token;
// the exchange caps the same way).
func (p *Portal) mintAdmitted(ctx context.Context, s store.Session, id *identity.Identity, cluster string, res policy.Result) (minted, error) {
	extra := res.ExtraGroups
	now := p.now()
	exp := now.Add(p.tokenLifetime(cluster))
	if !s.ExpiresAt.IsZero() && exp.After(s.ExpiresAt) {
		exp = s.ExpiresAt
	}
	if !res.GrantsEnd.IsZero() && exp.After(res.GrantsEnd) {
		exp = res.GrantsEnd
	}
	groups := slices.Clone(id.Groups)
	for _, g := range extra {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	subject := id.UID
	if subject == "" {
		subject = id.Username
	}
	var ext map[string][]string
	for k, v := range id.Extra {
		if strings.HasPrefix(k, "portcullis.dev/") {
			continue // ours to set, never the IdP's
		}
		if ext == nil {
			ext = map[string][]string{}
		}
		ext[k] = slices.Clone(v)
	}
	raw, claims, err := p.d.Minter.Mint(ctx, token.Claims{
		Subject:          subject,
		Username:         id.Username,
		UID:              id.UID,
		Groups:           groups,
		Extra:            ext,
		Audience:         []string{cluster},
		SessionID:        s.ID,
		IdentityProvider: id.IdentityProvider,
		Email:            id.Email,
		Expiry:           exp,
	})
	if err != nil {
		return minted{}, fmt.Errorf("minting a token for cluster %q: %w", cluster, err)
	}
	return minted{Token: raw, ExpiresAt: claims.Expiry.UTC()}, nil
}

func (p *Portal) tokenLifetime(cluster string) time.Duration {
	cfg := p.d.Config()
	for i := range cfg.Clusters {
		if c := &cfg.Clusters[i]; c.Name == cluster && c.TokenLifetime != nil && c.TokenLifetime.Duration > 0 {
			return c.TokenLifetime.Duration
		}
	}
	if d := cfg.Tokens.Lifetime.Duration; d > 0 {
		return d
	}
	return 15 * time.Minute
}
