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

// AccessGrantREST lists, creates (break-glass) and revokes time-bound
// grants. Grantees see their own; approvers and direct granters of a
// cluster see and may revoke its grants; a grantee may give theirs up.
type AccessGrantREST struct {
	accessDeps
}

var (
	_ rest.Creater              = (*AccessGrantREST)(nil)
	_ rest.Getter               = (*AccessGrantREST)(nil)
	_ rest.Lister               = (*AccessGrantREST)(nil)
	_ rest.GracefulDeleter      = (*AccessGrantREST)(nil)
	_ rest.Scoper               = (*AccessGrantREST)(nil)
	_ rest.SingularNameProvider = (*AccessGrantREST)(nil)
	_ rest.TableConvertor       = (*AccessGrantREST)(nil)
)

// NewAccessGrantREST returns the storage of accessgrants.
func NewAccessGrantREST(st AccessStore, config func() *configv1alpha1.PortcullisConfiguration, clk clock.PassiveClock, notify func(AccessEvent)) *AccessGrantREST {
	return &AccessGrantREST{newAccessDeps(st, config, clk, notify)}
}

// New implements rest.Storage.
func (r *AccessGrantREST) New() runtime.Object { return &v1alpha1.AccessGrant{} }

// NewList implements rest.Lister.
func (r *AccessGrantREST) NewList() runtime.Object { return &v1alpha1.AccessGrantList{} }

// Destroy implements rest.Storage.
func (r *AccessGrantREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *AccessGrantREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *AccessGrantREST) GetSingularName() string { return "accessgrant" }

// ConvertToTable implements rest.TableConvertor.
func (r *AccessGrantREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	return accessGrantTable(obj, r.clock.Now())
}

func (r *AccessGrantREST) manages(cluster string, u user.Info) bool {
	return r.policy.isApprover(cluster, u) || r.policy.isDirectGranter(cluster, u)
}

// live returns the grant with this name if it has not ended and the
// caller may see it.
func (r *AccessGrantREST) live(ctx context.Context, name string, caller user.Info) (store.Grant, error) {
	notFound := apierrors.NewNotFound(v1alpha1.Resource("accessgrants"), name)
	all, err := r.store.ListGrants(ctx)
	if err != nil {
		klog.ErrorS(err, "Listing grants failed")
		return store.Grant{}, storeErr(err, "reading grant "+name)
	}
	now := r.clock.Now()
	for _, g := range all {
		if g.ID != name {
			continue
		}
		if !now.Before(g.ExpiresAt) || (g.Username != caller.GetName() && !r.manages(g.Cluster, caller)) {
			return store.Grant{}, notFound
		}
		return g, nil
	}
	return store.Grant{}, notFound
}

// Get returns one live grant the caller may see.
func (r *AccessGrantREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	g, err := r.live(ctx, name, caller)
	if err != nil {
		return nil, err
	}
	return accessGrantObject(&g), nil
}

// List returns the live grants the caller may see, ending soonest first.
// Field selectors: spec.username, spec.cluster.
func (r *AccessGrantREST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	if options != nil && options.FieldSelector != nil {
		for _, req := range options.FieldSelector.Requirements() {
			switch req.Field {
			case "metadata.name", "spec.username", "spec.cluster":
			default:
				return nil, apierrors.NewBadRequest(fmt.Sprintf("field selector %q is not supported for access grants: use metadata.name, spec.username or spec.cluster", req.Field))
			}
		}
	}
	all, err := r.store.ListGrants(ctx)
	if err != nil {
		klog.ErrorS(err, "Listing grants failed")
		return nil, storeErr(err, "listing grants")
	}
	now := r.clock.Now()
	out := &v1alpha1.AccessGrantList{Items: []v1alpha1.AccessGrant{}}
	for i := range all {
		g := &all[i]
		if !now.Before(g.ExpiresAt) || (g.Username != caller.GetName() && !r.manages(g.Cluster, caller)) {
			continue
		}
		obj := accessGrantObject(g)
		if options != nil && options.FieldSelector != nil && !options.FieldSelector.Matches(fields.Set{"metadata.name": obj.Name, "spec.username": obj.Spec.Username, "spec.cluster": obj.Spec.Cluster}) {
			continue
		}
		if options != nil && options.LabelSelector != nil && !options.LabelSelector.Empty() {
			continue
		}
		out.Items = append(out.Items, *obj)
	}
	slices.SortFunc(out.Items, func(a, b v1alpha1.AccessGrant) int {
		if c := a.Status.ExpirationTimestamp.Compare(b.Status.ExpirationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Create grants directly, without a request: only members of the cluster's
// justInTime.directGrantGroups may (break-glass), and only requestable
// groups, for at most maxDuration. It is audited like an approval.
func (r *AccessGrantREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.AccessGrant)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected an AccessGrant, got %T", obj))
	}
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	spec := field.NewPath("spec")
	errs := r.policy.checkAsk(in.Spec.Cluster, in.Spec.Groups, in.Spec.Duration.Duration, in.Spec.Reason, spec)
	if strings.TrimSpace(in.Spec.Username) == "" {
		errs = append(errs, field.Required(spec.Child("username"), "name the user who gets the groups"))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.Kind("AccessGrant"), in.Name, errs)
	}
	if !r.policy.isDirectGranter(in.Spec.Cluster, caller) {
		return nil, apierrors.NewForbidden(v1alpha1.Resource("accessgrants"), in.Name, fmt.Errorf("user %s may not grant directly on cluster %s (clusters[].justInTime.directGrantGroups): create an AccessRequest instead (portcullis request)", quoteName(caller.GetName()), quoteName(in.Spec.Cluster)))
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	now := r.clock.Now()
	g := store.Grant{
		ID: newAccessID("g-"), Username: in.Spec.Username, Cluster: in.Spec.Cluster, Groups: slices.Clone(in.Spec.Groups),
		Reason: in.Spec.Reason, GrantedBy: caller.GetName(), CreatedAt: now, NotBefore: now, ExpiresAt: now.Add(in.Spec.Duration.Duration),
	}
	if options != nil && dryrun.IsDryRun(options.DryRun) {
		return accessGrantObject(&g), nil
	}
	if err := r.store.CreateGrant(ctx, g); err != nil {
		klog.ErrorS(err, "Creating a direct grant failed", "grantee", g.Username, "cluster", g.Cluster)
		return nil, storeErr(err, "creating the grant")
	}
	e := AccessEvent{Type: "Granted", Name: g.ID, Requester: g.Username, Actor: caller.GetName(), Cluster: g.Cluster, Groups: g.Groups, Reason: g.Reason, NotBefore: g.NotBefore, ExpiresAt: g.ExpiresAt}
	auditAccess(ctx, e)
	r.notify(e)
	return accessGrantObject(&g), nil
}

// Delete revokes a grant: from then on its groups are gone from every
// decision (proxy and exchange at once; webhook mode at kube-apiserver's
// next review). Its request, if any, becomes Revoked.
func (r *AccessGrantREST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, false, err
	}
	g, err := r.live(ctx, name, caller)
	if err != nil {
		return nil, false, err
	}
	obj := accessGrantObject(&g)
	if deleteValidation != nil {
		if err := deleteValidation(ctx, obj); err != nil {
			return nil, false, err
		}
	}
	if options != nil && dryrun.IsDryRun(options.DryRun) {
		return obj, true, nil
	}
	switch err := r.store.DeleteGrant(ctx, name); {
	case errors.Is(err, store.ErrNotFound):
		return nil, false, apierrors.NewNotFound(v1alpha1.Resource("accessgrants"), name)
	case err != nil:
		klog.ErrorS(err, "Revoking a grant failed", "grant", name)
		return nil, false, storeErr(err, "revoking grant "+name+" (it is still active)")
	}
	now := r.clock.Now()
	_, err = r.store.UpdateAccessRequest(ctx, name, func(req *store.AccessRequest) error {
		req.State, req.DecidedBy, req.DecidedAt, req.DecisionReason = store.AccessRequestRevoked, caller.GetName(), now, "grant revoked"
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		klog.ErrorS(err, "Marking the request of a revoked grant failed; the grant is revoked", "grant", name)
	}
	e := AccessEvent{Type: "Revoked", Name: name, Requester: g.Username, Actor: caller.GetName(), Cluster: g.Cluster, Groups: g.Groups, Reason: g.Reason, NotBefore: g.NotBefore, ExpiresAt: g.ExpiresAt}
	auditAccess(ctx, e)
	r.notify(e)
	return obj, true, nil
}
