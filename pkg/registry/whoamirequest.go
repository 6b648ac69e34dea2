package registry

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/validation"
)

// WhoAmIRequestREST answers who the caller is.
type WhoAmIRequestREST struct {
	clock clock.PassiveClock
}

var (
	_ rest.Creater              = (*WhoAmIRequestREST)(nil)
	_ rest.Scoper               = (*WhoAmIRequestREST)(nil)
	_ rest.SingularNameProvider = (*WhoAmIRequestREST)(nil)
	_ rest.TableConvertor       = (*WhoAmIRequestREST)(nil)
)

// NewWhoAmIRequestREST returns the storage of whoamirequests.
func NewWhoAmIRequestREST(clk clock.PassiveClock) *WhoAmIRequestREST {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &WhoAmIRequestREST{clock: clk}
}

// New implements rest.Storage.
func (r *WhoAmIRequestREST) New() runtime.Object { return &v1alpha1.WhoAmIRequest{} }

// Destroy implements rest.Storage.
func (r *WhoAmIRequestREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *WhoAmIRequestREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *WhoAmIRequestREST) GetSingularName() string { return "whoamirequest" }

// ConvertToTable implements rest.TableConvertor.
func (r *WhoAmIRequestREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	return whoAmIRequestTable(obj)
}

// Create answers with the user the handler chain authenticated.
func (r *WhoAmIRequestREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.WhoAmIRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected a WhoAmIRequest, got %T", obj))
	}
	if errs := validation.ValidateWhoAmIRequest(in); len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.Kind("WhoAmIRequest"), in.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	u, ok := request.UserFrom(ctx)
	if !ok {
		// The handler chain always authenticates (anonymous at least).
		return nil, apierrors.NewInternalError(fmt.Errorf("no user in the request context"))
	}
	out := &v1alpha1.WhoAmIRequest{
		ObjectMeta: metav1.ObjectMeta{Name: in.Name, GenerateName: in.GenerateName, CreationTimestamp: metav1.NewTime(r.clock.Now())},
		Status: v1alpha1.WhoAmIRequestStatus{UserInfo: v1alpha1.UserInfo{
			Username: u.GetName(),
			UID:      u.GetUID(),
			Groups:   slices.Clone(u.GetGroups()),
		}},
	}
	if extra := u.GetExtra(); len(extra) > 0 {
		out.Status.UserInfo.Extra = make(map[string]v1alpha1.ExtraValue, len(extra))
		for k, v := range extra {
			out.Status.UserInfo.Extra[k] = slices.Clone(v)
		}
	}
	return out, nil
}
