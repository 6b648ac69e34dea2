package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/store"
)

// AccessRequestREST creates, reads and lists access requests. Anyone
// authenticated may ask for themselves; they see their own requests, and
// approvers see those of the clusters they approve for.
type AccessRequestREST struct {
	accessDeps
}

var (
	_ rest.Creater              = (*AccessRequestREST)(nil)
	_ rest.Getter               = (*AccessRequestREST)(nil)
	_ rest.Lister               = (*AccessRequestREST)(nil)
	_ rest.Scoper               = (*AccessRequestREST)(nil)
	_ rest.SingularNameProvider = (*AccessRequestREST)(nil)
	_ rest.TableConvertor       = (*AccessRequestREST)(nil)
)

// NewAccessRequestREST returns the storage of accessrequests.
func NewAccessRequestREST(st AccessStore, config func() *configv1alpha1.PortcullisConfiguration, clk clock.PassiveClock, notify func(AccessEvent)) *AccessRequestREST {
	return &AccessRequestREST{newAccessDeps(st, config, clk, notify)}
}

// New implements rest.Storage.
func (r *AccessRequestREST) New() runtime.Object { return &v1alpha1.AccessRequest{} }

// NewList implements rest.Lister.
func (r *AccessRequestREST) NewList() runtime.Object { return &v1alpha1.AccessRequestList{} }

// Destroy implements rest.Storage.
func (r *AccessRequestREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *AccessRequestREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *AccessRequestREST) GetSingularName() string { return "accessrequest" }

// ConvertToTable implements rest.TableConvertor.
func (r *AccessRequestREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	return accessRequestTable(obj, r.clock.Now())
}

func (r *AccessRequestREST) required(cluster string) int {
	if j := r.policy.cluster(cluster); j != nil {
		return j.ApprovalsRequired
	}
	return 0
}

// Create records a pending request for the caller.
func (r *AccessRequestREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.AccessRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected an AccessRequest, got %T", obj))
	}
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	spec := field.NewPath("spec")
	errs := r.policy.checkAsk(in.Spec.Cluster, in.Spec.Groups, in.Spec.Duration.Duration, in.Spec.Reason, spec)
	if in.Spec.Username != "" && in.Spec.Username != caller.GetName() {
		errs = append(errs, field.Forbidden(spec.Child("username"), "is the requester, set by the server: you may only ask for yourself; leave it empty"))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.Kind("AccessRequest"), in.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	now := r.clock.Now()
	req := store.AccessRequest{
		ID:           newAccessID("ar-"),
		Username:     caller.GetName(),
		Cluster:      in.Spec.Cluster,
		Groups:       slices.Clone(in.Spec.Groups),
		Duration:     in.Spec.Duration.Duration,
		Reason:       in.Spec.Reason,
		State:        store.AccessRequestPending,
		CreatedAt:    now,
		PendingUntil: now.Add(AccessRequestPendingTimeout),
		ExpiresAt:    now.Add(AccessRequestPendingTimeout + AccessRecordRetention),
	}
	if options != nil && dryrun.IsDryRun(options.DryRun) {
		return accessRequestObject(&req, r.required(req.Cluster), now), nil
	}
	if err := r.store.CreateAccessRequest(ctx, req); err != nil {
		klog.ErrorS(err, "Storing an access request failed", "requester", req.Username, "cluster", req.Cluster)
		return nil, storeErr(err, "storing the access request")
	}
	e := AccessEvent{Type: "Created", Name: req.ID, Requester: req.Username, Actor: req.Username, Cluster: req.Cluster, Groups: req.Groups, Reason: req.Reason}
	auditAccess(ctx, e)
	r.notify(e)
	return accessRequestObject(&req, r.required(req.Cluster), now), nil
}

// Get returns one request the caller may see; others do not exist for them.
func (r *AccessRequestREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	req, err := r.store.GetAccessRequest(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, apierrors.NewNotFound(v1alpha1.Resource("accessrequests"), name)
	case err != nil:
		klog.ErrorS(err, "Reading an access request failed", "name", name)
		return nil, storeErr(err, "reading access request "+name)
	}
	if req.Username != caller.GetName() && !r.policy.isApprover(req.Cluster, caller) {
		return nil, apierrors.NewNotFound(v1alpha1.Resource("accessrequests"), name)
	}
	return accessRequestObject(&req, r.required(req.Cluster), r.clock.Now()), nil
}

// List returns the requests the caller may see, newest first. Field
// selectors: spec.username, spec.cluster, status.phase.
func (r *AccessRequestREST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	if options != nil && options.FieldSelector != nil {
		for _, req := range options.FieldSelector.Requirements() {
			switch req.Field {
			case "metadata.name", "spec.username", "spec.cluster", "status.phase":
			default:
				return nil, apierrors.NewBadRequest(fmt.Sprintf("field selector %q is not supported for access requests: use metadata.name, spec.username, spec.cluster or status.phase", req.Field))
			}
		}
	}
	all, err := r.store.ListAccessRequests(ctx)
	if err != nil {
		klog.ErrorS(err, "Listing access requests failed")
		return nil, storeErr(err, "listing access requests")
	}
	now := r.clock.Now()
	out := &v1alpha1.AccessRequestList{Items: []v1alpha1.AccessRequest{}}
	for i := range all {
		req := &all[i]
		if req.Username != caller.GetName() && !r.policy.isApprover(req.Cluster, caller) {
			continue
		}
		obj := accessRequestObject(req, r.required(req.Cluster), now)
		if options != nil && options.FieldSelector != nil && !options.FieldSelector.Matches(accessRequestFields(obj)) {
			continue
		}
		if options != nil && options.LabelSelector != nil && !options.LabelSelector.Empty() {
			continue // requests carry no labels
		}
		out.Items = append(out.Items, *obj)
	}
	slices.SortFunc(out.Items, func(a, b v1alpha1.AccessRequest) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

func accessRequestFields(o *v1alpha1.AccessRequest) fields.Set {
	return fields.Set{"metadata.name": o.Name, "spec.username": o.Spec.Username, "spec.cluster": o.Spec.Cluster, "status.phase": string(o.Status.Phase)}
}

// Decidable returns the pending requests caller may decide, oldest first:
// those of clusters caller approves for, but their own only where
// self-approval is allowed (they may still deny it through the API).
func (r *AccessRequestREST) Decidable(ctx context.Context, caller user.Info) ([]store.AccessRequest, error) {
	all, err := r.store.ListAccessRequests(ctx)
	if err != nil {
		klog.ErrorS(err, "Listing access requests failed")
		return nil, storeErr(err, "listing access requests")
	}
	now := r.clock.Now()
	var out []store.AccessRequest
	for _, req := range all {
		j := r.policy.cluster(req.Cluster)
		if phase(&req, now) != v1alpha1.AccessRequestPending || !r.policy.isApprover(req.Cluster, caller) || (req.Username == caller.GetName() && !j.AllowSelfApproval) {
			continue
		}
		out = append(out, req)
	}
	slices.SortFunc(out, func(a, b store.AccessRequest) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}
