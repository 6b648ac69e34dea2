package registry

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/store"
)

// Audit annotations of every access request and grant transition: who asked,
// who decided, why, where, what and for when.
const (
	AnnotationAccessRequest    = "portcullis.dev/access-request"
	AnnotationAccessTransition = "portcullis.dev/access-transition"
	AnnotationAccessRequester  = "portcullis.dev/access-requester"
	AnnotationAccessApprover   = "portcullis.dev/access-approver"
	AnnotationAccessReason     = "portcullis.dev/access-reason"
	AnnotationAccessDecision   = "portcullis.dev/access-decision-reason"
	AnnotationAccessCluster    = "portcullis.dev/access-cluster"
	AnnotationAccessGroups     = "portcullis.dev/access-groups"
	AnnotationAccessWindow     = "portcullis.dev/access-window"
)

// Lifetimes of access requests.
const (
	// AccessRequestPendingTimeout is how long a request waits for its
	// approvals before it expires.
	AccessRequestPendingTimeout = 24 * time.Hour
	// AccessRecordRetention is how long a request is kept (and listed)
	// after it can no longer change anything: its grant's end or its
	// expiry as a pending request.
	AccessRecordRetention = 7 * 24 * time.Hour
	maxAccessReasonLength = 1024
)

// AccessStore is the part of pkg/store.Store the access APIs use.
type AccessStore interface {
	CreateAccessRequest(ctx context.Context, r store.AccessRequest) error
	GetAccessRequest(ctx context.Context, id string) (store.AccessRequest, error)
	UpdateAccessRequest(ctx context.Context, id string, update func(*store.AccessRequest) error) (store.AccessRequest, error)
	ListAccessRequests(ctx context.Context) ([]store.AccessRequest, error)
	CreateGrant(ctx context.Context, g store.Grant) error
	ListGrants(ctx context.Context) ([]store.Grant, error)
	DeleteGrant(ctx context.Context, id string) error
}

// AccessEvent is one transition of an access request or grant, for
// notifications.
type AccessEvent struct {
	// Type is Created, Approved (the last needed approval), Approval (one
	// of several), Denied, Granted (a direct grant) or Revoked.
	Type      string    `json:"type"`
	Name      string    `json:"name"`
	Requester string    `json:"requester"`
	Actor     string    `json:"actor"`
	Cluster   string    `json:"cluster"`
	Groups    []string  `json:"groups"`
	Reason    string    `json:"reason"`
	Decision  string    `json:"decisionReason,omitempty"`
	NotBefore time.Time `json:"notBefore,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitempty"`
}

// accessPolicy answers, from the live configuration only, who may do what
// with access requests on each cluster. Nothing in a request changes it.
type accessPolicy struct {
	config func() *configv1alpha1.PortcullisConfiguration
}

func (p accessPolicy) cluster(name string) *configv1alpha1.JustInTimeAccess {
	cfg := p.config()
	if cfg == nil {
		return nil
	}
	for i := range cfg.Clusters {
		if cfg.Clusters[i].Name == name {
			return cfg.Clusters[i].JustInTime
		}
	}
	return nil
}

// isApprover reports whether u may decide requests for cluster.
func (p accessPolicy) isApprover(cluster string, u user.Info) bool {
	j := p.cluster(cluster)
	return j != nil && member(u, j.Approvers.Users, j.Approvers.Groups)
}

// isDirectGranter reports whether u may grant on cluster without a request.
func (p accessPolicy) isDirectGranter(cluster string, u user.Info) bool {
	j := p.cluster(cluster)
	return j != nil && member(u, nil, j.DirectGrantGroups)
}

func member(u user.Info, users, groups []string) bool {
	if u == nil || u.GetName() == "" {
		return false
	}
	if slices.Contains(users, u.GetName()) {
		return true
	}
	for _, g := range u.GetGroups() {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// checkAsk validates what is asked for (groups, duration) against cluster's
// policy, with field paths under fld.
func (p accessPolicy) checkAsk(cluster string, groups []string, d time.Duration, reason string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if cluster == "" {
		return append(errs, field.Required(fld.Child("cluster"), "name the Portcullis cluster, e.g. prod"))
	}
	j := p.cluster(cluster)
	if j == nil {
		return append(errs, field.Invalid(fld.Child("cluster"), cluster, "this cluster accepts no access requests (it is unknown or has no justInTime policy); ask an administrator"))
	}
	gp := fld.Child("groups")
	if len(groups) == 0 {
		errs = append(errs, field.Required(gp, "name the groups you need, one of: "+strings.Join(j.RequestableGroups, ", ")))
	}
	seen := map[string]bool{}
	for i, g := range groups {
		switch {
		case seen[g]:
			errs = append(errs, field.Duplicate(gp.Index(i), g))
		case !slices.Contains(j.RequestableGroups, g):
			errs = append(errs, field.NotSupported(gp.Index(i), g, j.RequestableGroups))
		}
		seen[g] = true
	}
	dp := fld.Child("duration")
	switch {
	case d <= 0:
		errs = append(errs, field.Required(dp, "say how long you need the groups, e.g. 30m"))
	case d > j.MaxDuration.Duration:
		errs = append(errs, field.Invalid(dp, d.String(), fmt.Sprintf("must not exceed %s on cluster %s", j.MaxDuration.Duration, cluster)))
	}
	rp := fld.Child("reason")
	switch {
	case strings.TrimSpace(reason) == "":
		errs = append(errs, field.Required(rp, "say why (an incident or ticket), for the approvers and the audit log"))
	case len(reason) > maxAccessReasonLength:
		errs = append(errs, field.TooLong(rp, "", maxAccessReasonLength))
	case strings.ContainsFunc(reason, func(r rune) bool { return !unicode.IsPrint(r) }):
		errs = append(errs, field.Invalid(rp, reason, "must be printable text on one line"))
	}
	return errs
}

func callerOf(ctx context.Context) (user.Info, error) {
	u, ok := request.UserFrom(ctx)
	if !ok || u.GetName() == "" || u.GetName() == user.Anonymous {
		return nil, apierrors.NewUnauthorized("log in first: access requests are made and decided by authenticated users")
	}
	return u, nil
}

// newAccessID returns a fresh object name: prefix and 12 random base32
// characters (60 bits), a DNS label kubectl accepts.
func newAccessID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))[:12]
}

// storeErr maps a store failure to an API error that does not blame the
// client: 503 when the store is unreachable, 500 otherwise.
func storeErr(err error, what string) error {
	if errors.Is(err, store.ErrUnavailable) {
		return apierrors.NewServiceUnavailable("the state store is unreachable: " + what + " failed; retry")
	}
	return apierrors.NewInternalError(errors.New(what + " failed"))
}

func window(from, to time.Time) string {
	if from.IsZero() || to.IsZero() {
		return ""
	}
	return from.UTC().Format(time.RFC3339) + "/" + to.UTC().Format(time.RFC3339)
}

// auditAccess annotates the request's audit event with the transition and
// logs it, so the audit trail names requester, approver, reason, cluster,
// groups and window.
func auditAccess(ctx context.Context, e AccessEvent) {
	audit.AddAuditAnnotations(ctx,
		AnnotationAccessRequest, e.Name,
		AnnotationAccessTransition, e.Type,
		AnnotationAccessRequester, e.Requester,
		AnnotationAccessApprover, e.Actor,
		AnnotationAccessReason, e.Reason,
		AnnotationAccessDecision, e.Decision,
		AnnotationAccessCluster, e.Cluster,
		AnnotationAccessGroups, strings.Join(e.Groups, ","),
		AnnotationAccessWindow, window(e.NotBefore, e.ExpiresAt))
	klog.InfoS("Access "+strings.ToLower(e.Type), "name", e.Name, "requester", e.Requester, "actor", e.Actor,
		"cluster", e.Cluster, "groups", e.Groups, "reason", e.Reason, "decisionReason", e.Decision,
		"notBefore", e.NotBefore, "expiresAt", e.ExpiresAt)
}

func timePtr(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	m := metav1.NewTime(t)
	return &m
}

// phase is a stored request's phase at now: a pending request past its
// deadline, or an approved one past its window, has expired.
func phase(r *store.AccessRequest, now time.Time) v1alpha1.AccessRequestPhase {
	switch {
	case r.State == store.AccessRequestPending && !now.Before(r.PendingUntil):
		return v1alpha1.AccessRequestExpired
	case r.State == store.AccessRequestApproved && !r.GrantExpiresAt.IsZero() && !now.Before(r.GrantExpiresAt):
		return v1alpha1.AccessRequestExpired
	}
	return v1alpha1.AccessRequestPhase(r.State)
}

func accessRequestStatus(r *store.AccessRequest, required int, now time.Time) v1alpha1.AccessRequestStatus {
	st := v1alpha1.AccessRequestStatus{
		Phase:               phase(r, now),
		ApprovalsRequired:   int32(required),
		DecidedBy:           r.DecidedBy,
		DecisionTime:        timePtr(r.DecidedAt),
		DecisionReason:      r.DecisionReason,
		PendingUntil:        timePtr(r.PendingUntil),
		NotBefore:           timePtr(r.NotBefore),
		ExpirationTimestamp: timePtr(r.GrantExpiresAt),
	}
	for _, a := range r.Approvals {
		st.Approvals = append(st.Approvals, v1alpha1.AccessApproval{User: a.By, Time: metav1.NewTime(a.At), Reason: a.Reason})
	}
	return st
}

func accessRequestObject(r *store.AccessRequest, required int, now time.Time) *v1alpha1.AccessRequest {
	return &v1alpha1.AccessRequest{
		ObjectMeta: metav1.ObjectMeta{Name: r.ID, CreationTimestamp: metav1.NewTime(r.CreatedAt)},
		Spec: v1alpha1.AccessRequestSpec{
			Cluster:  r.Cluster,
			Groups:   slices.Clone(r.Groups),
			Duration: metav1.Duration{Duration: r.Duration},
			Reason:   r.Reason,
			Username: r.Username,
		},
		Status: accessRequestStatus(r, required, now),
	}
}

func accessGrantObject(g *store.Grant) *v1alpha1.AccessGrant {
	return &v1alpha1.AccessGrant{
		ObjectMeta: metav1.ObjectMeta{Name: g.ID, CreationTimestamp: metav1.NewTime(g.CreatedAt)},
		Spec: v1alpha1.AccessGrantSpec{
			Username: g.Username,
			Cluster:  g.Cluster,
			Groups:   slices.Clone(g.Groups),
			Duration: metav1.Duration{Duration: g.ExpiresAt.Sub(g.NotBefore)},
			Reason:   g.Reason,
		},
		Status: v1alpha1.AccessGrantStatus{
			GrantedBy:           g.GrantedBy,
			NotBefore:           timePtr(g.NotBefore),
			ExpirationTimestamp: timePtr(g.ExpiresAt),
		},
	}
}

func quoteName(s string) string { return strconv.Quote(s) }

// accessDeps are what the access storages share: the store, the live
// policy, the clock and the notifier of transitions.
type accessDeps struct {
	store  AccessStore
	policy accessPolicy
	clock  clock.PassiveClock
	notify func(AccessEvent)
}

// newAccessDeps fills in a real clock and a notifier that does nothing.
func newAccessDeps(st AccessStore, config func() *configv1alpha1.PortcullisConfiguration, clk clock.PassiveClock, notify func(AccessEvent)) accessDeps {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if notify == nil {
		notify = func(AccessEvent) {}
	}
	return accessDeps{store: st, policy: accessPolicy{config}, clock: clk, notify: notify}
}

// AccessService decides access requests outside the API (the portal's
// approvers' page), with the API's policy checks, audit and notifications.
type AccessService struct {
	requests  *AccessRequestREST
	decisions *AccessRequestDecisionREST
}

// NewAccessService returns the service over st and the live configuration.
func NewAccessService(st AccessStore, config func() *configv1alpha1.PortcullisConfiguration, clk clock.PassiveClock, notify func(AccessEvent)) *AccessService {
	return &AccessService{
		requests:  NewAccessRequestREST(st, config, clk, notify),
		decisions: NewAccessRequestDecisionREST(st, config, clk, notify),
	}
}

// Decidable returns the pending requests caller may decide.
func (s *AccessService) Decidable(ctx context.Context, caller user.Info) ([]store.AccessRequest, error) {
	return s.requests.Decidable(ctx, caller)
}

// Decide records caller's decision (DecisionApprove or DecisionDeny) on the
// request name.
func (s *AccessService) Decide(ctx context.Context, caller user.Info, name, decision, reason string) (store.AccessRequest, error) {
	req, _, err := s.decisions.Decide(ctx, caller, v1alpha1.AccessRequestDecisionSpec{RequestName: name, Decision: decision, Reason: reason}, false)
	return req, err
}
