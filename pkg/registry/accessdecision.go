package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/store"
)

// Decisions an AccessRequestDecision may carry.
const (
	DecisionApprove = "Approve"
	DecisionDeny    = "Deny"
)

// AccessRequestDecisionREST approves or denies access requests. Who may is
// the cluster's justInTime policy, read at the time of the decision; the
// requester's own approval never counts unless the policy allows it.
type AccessRequestDecisionREST struct {
	accessDeps
}

var (
	_ rest.Creater              = (*AccessRequestDecisionREST)(nil)
	_ rest.Scoper               = (*AccessRequestDecisionREST)(nil)
	_ rest.SingularNameProvider = (*AccessRequestDecisionREST)(nil)
)

// NewAccessRequestDecisionREST returns the storage of accessrequestdecisions.
func NewAccessRequestDecisionREST(st AccessStore, config func() *configv1alpha1.PortcullisConfiguration, clk clock.PassiveClock, notify func(AccessEvent)) *AccessRequestDecisionREST {
	return &AccessRequestDecisionREST{newAccessDeps(st, config, clk, notify)}
}

// New implements rest.Storage.
func (r *AccessRequestDecisionREST) New() runtime.Object { return &v1alpha1.AccessRequestDecision{} }

// Destroy implements rest.Storage.
func (r *AccessRequestDecisionREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *AccessRequestDecisionREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *AccessRequestDecisionREST) GetSingularName() string { return "accessrequestdecision" }

// errDecision carries a refusal out of the store's update function.
type errDecision struct{ err error }

func (e errDecision) Error() string { return e.err.Error() }

// Create applies one decision.
func (r *AccessRequestDecisionREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.AccessRequestDecision)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected an AccessRequestDecision, got %T", obj))
	}
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if in.Spec.RequestName == "" {
		errs = append(errs, field.Required(spec.Child("requestName"), "name the AccessRequest to decide (portcullis requests lists them)"))
	}
	if in.Spec.Decision != DecisionApprove && in.Spec.Decision != DecisionDeny {
		errs = append(errs, field.NotSupported(spec.Child("decision"), in.Spec.Decision, []string{DecisionApprove, DecisionDeny}))
	}
	if len(in.Spec.Reason) > maxAccessReasonLength {
		errs = append(errs, field.TooLong(spec.Child("reason"), "", maxAccessReasonLength))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.Kind("AccessRequestDecision"), in.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	out := &v1alpha1.AccessRequestDecision{
		ObjectMeta: metav1.ObjectMeta{Name: in.Name, GenerateName: in.GenerateName},
		Spec:       in.Spec,
	}
	if out.Name == "" && out.GenerateName != "" {
		out.Name = names.SimpleNameGenerator.GenerateName(out.GenerateName)
	}
	dryRun := options != nil && dryrun.IsDryRun(options.DryRun)
	updated, required, err := r.Decide(ctx, caller, in.Spec, dryRun)
	if err != nil {
		return nil, err
	}
	out.CreationTimestamp = metav1.NewTime(r.clock.Now())
	out.Status = accessRequestStatus(&updated, required, r.clock.Now())
	return out, nil
}

// Decide applies caller's decision on the request spec names, by the
// cluster's policy, and returns the request as it now stands and how many
// approvals it needs. Errors are API errors (their messages are for people).
// The portal's approver page decides through it too.
func (r *AccessRequestDecisionREST) Decide(ctx context.Context, caller user.Info, spec v1alpha1.AccessRequestDecisionSpec, dryRun bool) (store.AccessRequest, int, error) {
	name := spec.RequestName
	notFound := apierrors.NewNotFound(v1alpha1.Resource("accessrequests"), name)
	cur, err := r.store.GetAccessRequest(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.AccessRequest{}, 0, notFound
	case err != nil:
		klog.ErrorS(err, "Reading an access request failed", "name", name)
		return store.AccessRequest{}, 0, storeErr(err, "reading access request "+name)
	}
	gr := v1alpha1.Resource("accessrequests")
	j := r.policy.cluster(cur.Cluster)
	switch {
	case !r.policy.isApprover(cur.Cluster, caller):
		if cur.Username != caller.GetName() {
			return store.AccessRequest{}, 0, notFound // not theirs to see either
		}
		return store.AccessRequest{}, 0, apierrors.NewForbidden(gr, name, fmt.Errorf("user %s is not an approver of cluster %s (clusters[].justInTime.approvers): ask one of them to decide", quoteName(caller.GetName()), quoteName(cur.Cluster)))
	case cur.Username == caller.GetName() && !j.AllowSelfApproval && spec.Decision == DecisionApprove:
		return store.AccessRequest{}, 0, apierrors.NewForbidden(gr, name, fmt.Errorf("you cannot approve your own request: cluster %s does not allow self-approval; ask another approver", quoteName(cur.Cluster)))
	}
	now := r.clock.Now()
	if dryRun {
		return cur, j.ApprovalsRequired, nil
	}
	var event AccessEvent
	updated, err := r.store.UpdateAccessRequest(ctx, name, func(req *store.AccessRequest) error {
		if p := phase(req, now); p != v1alpha1.AccessRequestPending {
			return errDecision{apierrors.NewConflict(gr, name, fmt.Errorf("the request is %s, not Pending: it can no longer be decided; ask for access again", p))}
		}
		event = AccessEvent{Name: req.ID, Requester: req.Username, Actor: caller.GetName(), Cluster: req.Cluster, Groups: req.Groups, Reason: req.Reason, Decision: spec.Reason}
		if spec.Decision == DecisionDeny {
			req.State, req.DecidedBy, req.DecidedAt, req.DecisionReason = store.AccessRequestDenied, caller.GetName(), now, spec.Reason
			req.ExpiresAt = now.Add(AccessRecordRetention)
			event.Type = "Denied"
			return nil
		}
		if slices.ContainsFunc(req.Approvals, func(a store.Approval) bool { return a.By == caller.GetName() }) {
			return errDecision{apierrors.NewConflict(gr, name, errors.New("you have approved this request already; it needs another approver"))}
		}
		// The policy may have changed since the request was made: what is
		// granted must be grantable now.
		if errs := r.policy.checkAsk(req.Cluster, req.Groups, req.Duration, req.Reason, field.NewPath("spec")); len(errs) > 0 {
			return errDecision{apierrors.NewConflict(gr, name, fmt.Errorf("the request no longer fits cluster %s's policy (%s); ask for access again", req.Cluster, errs.ToAggregate()))}
		}
		req.Approvals = append(req.Approvals, store.Approval{By: caller.GetName(), At: now, Reason: spec.Reason})
		if len(approvalsBy(req, j.AllowSelfApproval)) < j.ApprovalsRequired {
			event.Type = "Approval"
			return nil
		}
		req.State, req.DecidedBy, req.DecidedAt, req.DecisionReason = store.AccessRequestApproved, caller.GetName(), now, spec.Reason
		req.GrantID, req.NotBefore, req.GrantExpiresAt = req.ID, now, now.Add(req.Duration)
		req.ExpiresAt = req.GrantExpiresAt.Add(AccessRecordRetention)
		event.Type, event.NotBefore, event.ExpiresAt = "Approved", req.NotBefore, req.GrantExpiresAt
		return nil
	})
	var refusal errDecision
	switch {
	case errors.As(err, &refusal):
		return store.AccessRequest{}, 0, refusal.err
	case errors.Is(err, store.ErrNotFound):
		return store.AccessRequest{}, 0, notFound
	case err != nil:
		klog.ErrorS(err, "Recording an access decision failed", "name", name, "approver", caller.GetName())
		return store.AccessRequest{}, 0, storeErr(err, "recording the decision")
	}
	if event.Type == "Approved" {
		g := store.Grant{
			ID: updated.ID, Username: updated.Username, Cluster: updated.Cluster, Groups: slices.Clone(updated.Groups),
			Reason: updated.Reason, GrantedBy: caller.GetName(), CreatedAt: now, NotBefore: updated.NotBefore, ExpiresAt: updated.GrantExpiresAt,
		}
		if err := r.store.CreateGrant(ctx, g); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			klog.ErrorS(err, "Creating the grant of an approved access request failed; putting the request back to Pending", "name", name)
			_, rerr := r.store.UpdateAccessRequest(ctx, name, func(req *store.AccessRequest) error {
				req.State, req.DecidedBy, req.DecidedAt, req.DecisionReason = store.AccessRequestPending, "", now, ""
				req.GrantID, req.NotBefore, req.GrantExpiresAt = "", time.Time{}, time.Time{}
				req.Approvals = slices.DeleteFunc(req.Approvals, func(a store.Approval) bool { return a.By == caller.GetName() })
				return nil
			})
			if rerr != nil {
				klog.ErrorS(rerr, "Putting an access request back to Pending failed", "name", name)
			}
			return store.AccessRequest{}, 0, storeErr(err, "creating the grant")
		}
	}
	auditAccess(ctx, event)
	r.notify(event)
	return updated, j.ApprovalsRequired, nil
}

// approvalsBy returns the approvals that count: distinct approvers, and the
// requester only if self-approval is allowed.
func approvalsBy(req *store.AccessRequest, self bool) []string {
	var out []string
	for _, a := range req.Approvals {
		if (a.By != req.Username || self) && !slices.Contains(out, a.By) {
			out = append(out, a.By)
		}
	}
	return out
}
