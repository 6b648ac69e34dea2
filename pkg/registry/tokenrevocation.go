package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/validation"
	"portcullis.dev/portcullis/pkg/store"
)

// Audit annotations of a token revocation (besides AnnotationTokenID).
const (
	AnnotationRevocationReason  = "portcullis.dev/revocation-reason"
	AnnotationRevocationExpires = "portcullis.dev/revocation-expires"
)

// TokenRevoker revokes a cluster token by its ID (pkg/session.Manager), and
// keeps the revocation as long as a token the minter issues can live.
type TokenRevoker interface {
	RevokeTokenID(ctx context.Context, jti, reason, by string) (store.Revocation, error)
}

// TokenRevocationREST revokes cluster tokens by ID. Who may is the delegated
// authorizer's decision (the cluster's RBAC: create tokenrevocations).
type TokenRevocationREST struct {
	revoker TokenRevoker
}

var (
	_ rest.Creater              = (*TokenRevocationREST)(nil)
	_ rest.Scoper               = (*TokenRevocationREST)(nil)
	_ rest.SingularNameProvider = (*TokenRevocationREST)(nil)
	_ rest.TableConvertor       = (*TokenRevocationREST)(nil)
)

// NewTokenRevocationREST returns the storage of tokenrevocations.
func NewTokenRevocationREST(r TokenRevoker) *TokenRevocationREST {
	return &TokenRevocationREST{revoker: r}
}

// New implements rest.Storage.
func (r *TokenRevocationREST) New() runtime.Object { return &v1alpha1.TokenRevocation{} }

// Destroy implements rest.Storage.
func (r *TokenRevocationREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *TokenRevocationREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *TokenRevocationREST) GetSingularName() string { return "tokenrevocation" }

// ConvertToTable implements rest.TableConvertor.
func (r *TokenRevocationREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	tr, ok := obj.(*v1alpha1.TokenRevocation)
	if !ok {
		return nil, fmt.Errorf("cannot show a %T as a table of token revocations", obj)
	}
	expires := "<none>"
	if e := tr.Status.ExpirationTimestamp; e != nil {
		expires = e.UTC().Format(time.RFC3339)
	}
	return singleRow(tr, []metav1.TableColumnDefinition{
		{Name: "Token ID", Type: "string"},
		{Name: "Reason", Type: "string"},
		{Name: "Kept Until", Type: "string"},
	}, tr.Spec.TokenID, tr.Spec.Reason, expires)
}

// Create revokes the token named in the request and audits it.
func (r *TokenRevocationREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.TokenRevocation)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected a TokenRevocation, got %T", obj))
	}
	if errs := validation.ValidateTokenRevocation(in); len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.Kind("TokenRevocation"), in.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	out := &v1alpha1.TokenRevocation{
		ObjectMeta: metav1.ObjectMeta{Name: in.Name, GenerateName: in.GenerateName, Labels: in.Labels},
		Spec:       in.Spec,
	}
	if out.Name == "" && out.GenerateName != "" {
		out.Name = names.SimpleNameGenerator.GenerateName(out.GenerateName)
	}
	if options != nil && dryrun.IsDryRun(options.DryRun) {
		return out, nil
	}
	by := ""
	if u, ok := request.UserFrom(ctx); ok {
		by = u.GetName()
	}
	rev, err := r.revoker.RevokeTokenID(ctx, in.Spec.TokenID, in.Spec.Reason, by)
	if err != nil {
		klog.ErrorS(err, "Revoking a token failed", "jti", in.Spec.TokenID, "revokedBy", by)
		if errors.Is(err, store.ErrUnavailable) {
			return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("the state store is unreachable: token %s is NOT revoked; retry", in.Spec.TokenID))
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("token %s could not be revoked; it is still valid", in.Spec.TokenID))
	}
	revokedAt, expires := metav1.NewTime(rev.RevokedAt), metav1.NewTime(rev.ExpiresAt)
	out.CreationTimestamp = revokedAt
	out.Status = v1alpha1.TokenRevocationStatus{RevokedAt: &revokedAt, ExpirationTimestamp: &expires}
	audit.AddAuditAnnotations(ctx,
		AnnotationTokenID, in.Spec.TokenID,
		AnnotationRevocationReason, in.Spec.Reason,
		AnnotationRevocationExpires, rev.ExpiresAt.UTC().Format(time.RFC3339))
	klog.InfoS("Revoked a token", "jti", in.Spec.TokenID, "reason", in.Spec.Reason, "revokedBy", by, "keptUntil", rev.ExpiresAt)
	return out, nil
}
