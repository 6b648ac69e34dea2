package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/identity"
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
}

func (e *Error) Error() string { return e.Reason }

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
	Clock     func() time.Time

	// ours remembers tokens the Portcullis verifier accepted, so that their
	// next presentations skip looksLikeOurs.
	ours routeMemo
}

// Authenticate verifies raw for cluster and applies the central policy.
// Errors are always *Error. When the token is valid but the policy refuses
// the user, both the Result and an *Error with Denied set are returned.
func (a *Authenticator) Authenticate(ctx context.Context, cluster, raw string) (*Result, error) {
	pol := a.Policy.Load()
	if !pol.HasCluster(cluster) {
		return nil, &Error{Reason: ReasonUnknownCluster + " " + quote(cluster)}
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
	key, memoizable := routeKey(raw)
	if a.ours.contains(a.IssuerURL, &key) || a.looksLikeOurs(raw) {
		claims, err := a.Verifier.Verify(ctx, raw, []string{cluster})
		if err != nil {
			var ve *token.VerifyError
			if errors.As(err, &ve) {
				return nil, &Error{Reason: ve.Reason}
			}
			klog.ErrorS(err, "Verifying a cluster token failed", "cluster", cluster)
			return nil, &Error{Reason: ReasonInternal, Internal: true}
		}
		if memoizable {
			a.ours.add(a.IssuerURL, &key)
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
		now = a.Clock()
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
	iss, ok := UnverifiedIssuer(raw)
	return ok && iss == a.IssuerURL
}

// maxRoutedToken is the largest token looksLikeOurs reads; larger ones are
// never ours.
const maxRoutedToken = 64 << 10

// routeKey is the key of raw in routeMemo, and whether raw may be memoized
// (it is not too large to be ours).
func routeKey(raw string) ([sha256.Size]byte, bool) {
	if len(raw) > maxRoutedToken {
		return [sha256.Size]byte{}, false
	}
	// Most tokens fit on the stack: no copy of the token on the heap.
	var buf [2048]byte
	if len(raw) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], raw)]), true
	}
	return sha256.Sum256([]byte(raw)), true
}

// routeMemoSize bounds routeMemo: the tokens of a few thousand active users
// and controllers (about 50 bytes each).
const routeMemoSize = 16384

const routeMemoShards = 16

// routeMemo is a bounded set of the SHA-256 of tokens that looksLikeOurs
// accepted and the Portcullis verifier then verified, for one issuer. It
// caches a pure function of the token (its unverified "iss" equals the
// issuer), so a hit decides exactly what looksLikeOurs would, only without
// base64- and JSON-decoding the payload: it routes, and decides nothing else
// (the verifier still checks everything on every presentation). Only tokens
// that verified are added, so garbage cannot fill it; when a shard is full an
// arbitrary entry is dropped, which costs one looksLikeOurs.
type routeMemo struct {
	once   sync.Once
	issuer string
	shards [routeMemoShards]routeShard
}

type routeShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]struct{}
}

func (m *routeMemo) init(issuer string) {
	m.once.Do(func() {
		m.issuer = issuer
		for i := range m.shards {
			m.shards[i].m = make(map[[sha256.Size]byte]struct{})
		}
	})
}

func (m *routeMemo) shard(key *[sha256.Size]byte) *routeShard {
	return &m.shards[key[0]%routeMemoShards]
}

// contains reports whether the token whose key is key was added for issuer.
func (m *routeMemo) contains(issuer string, key *[sha256.Size]byte) bool {
	m.init(issuer)
	if issuer != m.issuer {
		return false
	}
	s := m.shard(key)
	s.mu.RLock()
	_, ok := s.m[*key]
	s.mu.RUnlock()
	return ok
}

func (m *routeMemo) add(issuer string, key *[sha256.Size]byte) {
	m.init(issuer)
	if issuer != m.issuer {
		return
	}
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*key]; ok {
		return
	}
	if len(s.m) >= routeMemoSize/routeMemoShards {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[*key] = struct{}{}
}

// UnverifiedIssuer returns the "iss" claim of a compact JWS without verifying
// anything; for routing only.
func UnverifiedIssuer(raw string) (string, bool) {
	payload, ok := unverifiedPayload(raw)
	if !ok {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return "", false
	}
	return c.Iss, true
}

func unverifiedPayload(raw string) ([]byte, bool) {
	if len(raw) > maxRoutedToken {
		return nil, false
	}
	_, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return nil, false
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	return b, err == nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + s + `"`
}

// UnverifiedAudiences returns the "aud" claim of a compact JWS without
// verifying anything; for routing only.
func UnverifiedAudiences(raw string) []string {
	payload, ok := unverifiedPayload(raw)
	if !ok {
		return nil
	}
	var c struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload, &c) != nil || len(c.Aud) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(c.Aud, &many)
	return many
}
