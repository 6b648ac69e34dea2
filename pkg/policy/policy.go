package policy

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/store"
)

// Decision is the outcome of an access check.
type Decision struct {
	Allowed bool
	// Reason says why, for people: audit logs, TokenReview statuses, and the
	// user's error message. It names the user and cluster, never a token.
	Reason string
}

// GrantLister lists time-bound grants; store.Store satisfies it.
//
// Evaluate lists grants at each decision, so ListGrants must be cheap: it is
// the store's job to keep them in memory (grants are few and small).
type GrantLister interface {
	ListGrants(ctx context.Context) ([]store.Grant, error)
}

// Policy is the access policy of one configuration. It is immutable and safe
// for concurrent use. A nil *Policy denies everything.
type Policy struct {
	clusters map[string]*clusterAccess
	names    []string // in configuration order
}

type clusterAccess struct {
	name         string
	shown        string // show(name), for reasons
	allUsers     bool
	users        sets.Set[string]
	groups       sets.Set[string]
	emailDomains sets.Set[string] // lower case
}

// New builds the policy of cfg (taken to be validated already).
func New(cfg *v1alpha1.PortcullisConfiguration) *Policy {
	p := &Policy{clusters: map[string]*clusterAccess{}}
	if cfg == nil {
		return p
	}
	for _, c := range cfg.Clusters {
		a := &clusterAccess{
			name:         c.Name,
			shown:        show(c.Name),
			allUsers:     c.Access.AllUsers,
			users:        sets.New(c.Access.Users...),
			groups:       sets.New(c.Access.Groups...),
			emailDomains: sets.New[string](),
		}
		for _, d := range c.Access.EmailDomains {
			a.emailDomains.Insert(strings.ToLower(d))
		}
		if _, dup := p.clusters[c.Name]; !dup {
			p.names = append(p.names, c.Name)
		}
		p.clusters[c.Name] = a
	}
	return p
}

// HasCluster reports whether the policy knows cluster.
func (p *Policy) HasCluster(cluster string) bool {
	if p == nil {
		return false
	}
	_, ok := p.clusters[cluster]
	return ok
}

// Clusters returns the names of the clusters, in configuration order.
func (p *Policy) Clusters() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.names)
}

// admit decides by the static policy alone whether id may reach cluster: it
// may if the cluster admits all users, or names the user, or one of the
// user's groups, or the domain of the user's (verified) email, compared
// case-insensitively. Users and groups are compared exactly.
func (p *Policy) admit(cluster string, id *identity.Identity) Decision {
	a, d, ok := p.lookup(cluster, id)
	if !ok {
		return d
	}
	return a.admit(id)
}

// lookup finds the cluster's access, or the denial when there is nothing to
// decide on.
func (p *Policy) lookup(cluster string, id *identity.Identity) (*clusterAccess, Decision, bool) {
	switch {
	case p == nil:
		return nil, deny("no access policy is loaded"), false
	case id == nil || id.Username == "":
		return nil, deny("no authenticated user"), false
	}
	a, ok := p.clusters[cluster]
	if !ok {
		// Quoted: the name comes from a request path.
		return nil, deny("unknown cluster " + strconv.Quote(truncate(cluster))), false
	}
	return a, Decision{}, true
}

func (a *clusterAccess) admit(id *identity.Identity) Decision {
	// Reasons are joined rather than formatted: admit runs at every review
	// and proxied request.
	cluster := a.shown
	if a.allUsers {
		return allow("cluster " + cluster + " admits all authenticated users")
	}
	if a.users.Has(id.Username) {
		return allow("user " + show(id.Username) + " is admitted to cluster " + cluster + " by name")
	}
	for _, g := range id.Groups {
		if a.groups.Has(g) {
			return allow("user " + show(id.Username) + " is admitted to cluster " + cluster + " as a member of group " + show(g))
		}
	}
	if at := strings.LastIndexByte(id.Email, '@'); at > 0 {
		if domain := strings.ToLower(id.Email[at+1:]); a.emailDomains.Has(domain) {
			return allow("user " + show(id.Username) + " is admitted to cluster " + cluster + " by email domain " + show(domain))
		}
	}
	return deny("user " + show(id.Username) + " is not admitted to cluster " + cluster + " by policy")
}

// Evaluate decides whether id may reach cluster at now, by the static policy
// and the time-bound grants of grants (which may be nil).
//
// A grant is active when NotBefore <= now < ExpiresAt; an active grant for
// the user's username on cluster admits the user even if the static policy
// does not, and its groups are returned as extraGroups (without duplicates,
// nor groups the identity already has) for the caller to add. If the grants
// cannot be listed, the decision is the static policy's, with no extra
// groups: a store failure never admits anyone.
func (p *Policy) Evaluate(ctx context.Context, cluster string, id *identity.Identity, grants GrantLister, now time.Time) (Decision, []string) {
	r := p.Decide(ctx, cluster, id, grants, now)
	return r.Decision, r.ExtraGroups
}

// Result is Decide's answer.
type Result struct {
	Decision
	// ExtraGroups are the active grants' groups (see Evaluate).
	ExtraGroups []string
	// GrantsEnd is the earliest end of the grants active for the user on
	// the cluster (zero when none is): a token carrying their groups, or
	// admitted by one of them, must expire by then, as a group baked into a
	// token stays until the token expires.
	GrantsEnd time.Time
}

// Decide is Evaluate with the end of the grants it used.
func (p *Policy) Decide(ctx context.Context, cluster string, id *identity.Identity, grants GrantLister, now time.Time) Result {
	a, d, ok := p.lookup(cluster, id)
	if !ok {
		return Result{Decision: d}
	}
	d = a.admit(id)
	if grants == nil {
		return Result{Decision: d}
	}
	list, err := grants.ListGrants(ctx)
	if err != nil {
		klog.ErrorS(err, "Listing time-bound grants failed; deciding by the static policy alone", "cluster", cluster, "user", id.Username)
		if !d.Allowed {
			d.Reason += " (time-bound grants could not be checked)"
		}
		return Result{Decision: d}
	}
	var (
		extra []string
		seen  sets.Set[string] // made at the first active grant
		by    *store.Grant
		end   time.Time
	)
	for i := range list {
		g := &list[i]
		if g.Cluster != cluster || g.Username != id.Username || now.Before(g.NotBefore) || !now.Before(g.ExpiresAt) {
			continue
		}
		if by == nil || g.ExpiresAt.After(by.ExpiresAt) {
			by = g
		}
		if end.IsZero() || g.ExpiresAt.Before(end) {
			end = g.ExpiresAt
		}
		if seen == nil {
			seen = sets.New(id.Groups...)
		}
		for _, group := range g.Groups {
			if group != "" && !seen.Has(group) {
				seen.Insert(group)
				extra = append(extra, group)
			}
		}
	}
	if by != nil && !d.Allowed {
		d = allow(fmt.Sprintf("user %s is admitted to cluster %s by grant %s until %s",
			show(id.Username), show(cluster), show(by.ID), by.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	return Result{Decision: d, ExtraGroups: extra, GrantsEnd: end}
}

func allow(reason string) Decision { return Decision{Allowed: true, Reason: reason} }
func deny(reason string) Decision  { return Decision{Reason: reason} }

// show makes a name from the configuration or an IdP fit to be put in a
// reason: plain names as they are, odd ones quoted, long ones cut.
func show(s string) string {
	s = truncate(s)
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) || r == '"' }) {
		return strconv.Quote(s)
	}
	return s
}

func truncate(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
