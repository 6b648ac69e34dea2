package authn

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/jwtpeek"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/token"
)

// Extra keys Portcullis adds to every user it authenticates, so that
// kube-apiserver's own audit log shows where an identity came from.
const (
	ExtraIdentityProvider = "portcullis.dev/idp"
	ExtraSessionID        = "portcullis.dev/sid"
	ExtraTokenID          = "portcullis.dev/jti"
	ExtraCluster          = "portcullis.dev/cluster"
)

// Short reasons given to callers (TokenReview status.error, proxy 401s).
const (
	ReasonNotOurs        = "token not issued by Portcullis or a trusted identity provider"
	ReasonUnknownCluster = "unknown cluster"
	ReasonInternal       = "internal error"
)

// Error is an authentication failure with a reason safe to show the caller.
type Error struct {
	Reason string
	// Denied is true when the token was valid but the policy refused the user.
	Denied bool
	// Internal is true when the failure is Portcullis's fault (store down,
	// IdP keys not loaded yet), not the client's.
	Internal bool
	// Unavailable is true (with Internal) when the token could not be
	// checked because something Portcullis depends on cannot be reached
	// right now (an identity provider's discovery document or signing
	// keys): nothing is known about the token, and the same request may
	// succeed in a moment. Callers answer 503, never "bad token".
	Unavailable bool
}

func (e *Error) Error() string { return e.Reason }

// IsUnavailable reports whether err is, or holds, an *Error with
// Unavailable set.
func IsUnavailable(err error) bool { return Unavailable(err) != nil }

// Unavailable returns the *Error with Unavailable set that err is or holds,
// looking into aggregates (an authenticator union's error lists what each
// authenticator said), or nil.
func Unavailable(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) && ae.Unavailable {
		return ae
	}
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		for _, e := range agg.Errors() {
			if ae := Unavailable(e); ae != nil {
				return ae
			}
		}
	}
	return nil
}

// Result is an authenticated user for a cluster.
type Result struct {
	User    *user.DefaultInfo
	Cluster string
	// Source is "portcullis" for cluster tokens, else "idp:<name>".
	Source string
	Email  string
	// Expiry is when the token stops being valid (zero if unknown).
	Expiry time.Time
}

// GrantLister lists time-bound grants; store.Store satisfies it.
type GrantLister = policy.GrantLister

// Authenticator authenticates bearer tokens for clusters.
type Authenticator struct {
	IssuerURL string
	Verifier  *token.Verifier
	IdPs      *identity.Providers
	Groups    func() *identity.GroupMapper
	Policy    *policy.Holder
	Grants    GrantLister
	Clock     clock.PassiveClock
}

// Authenticate verifies raw for cluster and applies the central policy.
// Errors are always *Error. When the token is valid but the policy refuses
// the user, both the Result and an *Error with Denied set are returned.
func (a *Authenticator) Authenticate(ctx context.Context, cluster, raw string) (*Result, error) {
	pol := a.Policy.Load()
	if !pol.HasCluster(cluster) {
		return nil, &Error{Reason: ReasonUnknownCluster + " " + quote(cluster)}
	}
	// No token Portcullis or kube-apiserver accepts is this large: refuse it
	// before hashing or parsing it.
	if len(raw) > token.MaxTokenSize {
		return nil, &Error{Reason: token.ReasonTooLarge}
	}
	var (
		id  *identity.Identity
		res = &Result{Cluster: cluster}
		// Portcullis's extras have one value each: they share one backing
		// array (full slice expressions, so that an append to one cannot
		// overwrite the next).
		values = make([]string, 0, 4)
		one    = func(v string) []string {
			values = append(values, v)
			n := len(values)
			return values[n-1 : n : n]
		}
		ext = make(map[string][]string, 4)
		// ownGroups: id.Groups are this call's own (Verify returns a copy
		// of its cached claims), so they need no copy.
		ownGroups bool
	)
	ext[ExtraCluster] = one(cluster)
	// A token the verifier has cached is ours without parsing it (and is
	// checked with the same lookup); the verifier still checks everything.
	digest := token.Digest(raw)
	audiences := []string{cluster}
	claims, ours, err := a.Verifier.VerifyCached(ctx, &digest, audiences)
	if !ours && a.looksLikeOurs(raw) {
		claims, err = a.Verifier.VerifyDigest(ctx, raw, &digest, audiences)
		ours = true
	}
	if ours {
		if err != nil {
			var ve *token.VerifyError
			if errors.As(err, &ve) {
				return nil, &Error{Reason: ve.Reason}
			}
			klog.ErrorS(err, "Verifying a cluster token failed", "cluster", cluster)
			return nil, &Error{Reason: ReasonInternal, Internal: true}
		}
		id = &identity.Identity{
			Username:         claims.Username,
			UID:              claims.UID,
			Groups:           claims.Groups,
			Extra:            claims.Extra,
			Email:            claims.Email,
			IdentityProvider: claims.IdentityProvider,
		}
		ownGroups = true // Verify returns a copy of the cached claims
		res.Source, res.Expiry = "portcullis", claims.Expiry
		if claims.SessionID != "" {
			ext[ExtraSessionID] = one(claims.SessionID)
		}
		ext[ExtraTokenID] = one(claims.ID)
	} else {
		if a.IdPs == nil {
			return nil, &Error{Reason: ReasonNotOurs}
		}
		got, ok, err := a.IdPs.AuthenticateBearer(ctx, raw)
		switch {
		case errors.Is(err, identity.ErrNotReady):
			// The IdP's discovery document or keys cannot be fetched: the
			// token may well be good. A refusal would be cached by
			// kube-apiserver and shown to the user as a bad token.
			klog.V(2).InfoS("An identity provider could not verify a token now", "cluster", cluster, "reason", err.Error())
			return nil, &Error{Reason: err.Error(), Internal: true, Unavailable: true}
		case err != nil:
			return nil, &Error{Reason: err.Error()}
		case !ok:
			return nil, &Error{Reason: ReasonNotOurs}
		}
		id = got
		if a.Groups != nil {
			if m := a.Groups(); m != nil {
				m.Apply(id)
			}
		}
		res.Source = "idp:" + id.IdentityProvider
	}
	if id.IdentityProvider != "" {
		ext[ExtraIdentityProvider] = one(id.IdentityProvider)
	}
	now := time.Now()
	if a.Clock != nil {
		now = a.Clock.Now()
	}
	decision, extraGroups := pol.Evaluate(ctx, cluster, id, a.Grants, now)
	// Clipped, so that an extra group is appended to a new array, never
	// into the claims' spare capacity.
	groups := slices.Clip(id.Groups)
	if !ownGroups {
		groups = slices.Clone(groups)
	}
	for _, g := range extraGroups {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for k, v := range id.Extra {
		if _, reserved := ext[k]; !reserved && !strings.HasPrefix(k, "portcullis.dev/") {
			ext[k] = v
		}
	}
	res.User = &user.DefaultInfo{Name: id.Username, UID: id.UID, Groups: groups, Extra: ext}
	res.Email = id.Email
	if !decision.Allowed {
		// The token is good but the user may not use this cluster: callers
		// that answer 403 rather than 401 need to know who was refused.
		return res, &Error{Reason: decision.Reason, Denied: true}
	}
	return res, nil
}

// looksLikeOurs peeks at the unverified "iss" to route the token to the right
// verifier. It decides nothing else: whichever verifier is chosen checks the
// signature and every claim.
func (a *Authenticator) looksLikeOurs(raw string) bool {
	iss, ok := jwtpeek.Issuer(raw)
	return ok && iss == a.IssuerURL
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + s + `"`
}
