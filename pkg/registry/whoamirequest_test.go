package registry

import (
	"context"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

func TestWhoAmIRequest_AnswersWithTheAuthenticatedUser(t *testing.T) {
	r := NewWhoAmIRequestREST(testingclock.NewFakePassiveClock(time.Unix(1e9, 0)))
	ctx := request.WithUser(context.Background(), &user.DefaultInfo{
		Name: "alice", UID: "uid-1", Groups: []string{"devs", "system:authenticated"},
		Extra: map[string][]string{"portcullis.dev/idp": {"dex"}},
	})
	out, err := r.Create(ctx, &v1alpha1.WhoAmIRequest{}, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u := out.(*v1alpha1.WhoAmIRequest).Status.UserInfo
	if u.Username != "alice" || u.UID != "uid-1" || len(u.Groups) != 2 || u.Extra["portcullis.dev/idp"][0] != "dex" {
		t.Errorf("userInfo = %+v", u)
	}

	planted := &v1alpha1.WhoAmIRequest{Status: v1alpha1.WhoAmIRequestStatus{UserInfo: v1alpha1.UserInfo{Username: "admin"}}}
	if _, err := r.Create(ctx, planted, nil, &metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("a request with a status: %v, want Invalid", err)
	}
	if _, err := r.Create(ctx, &v1alpha1.TokenCredentialRequest{}, nil, &metav1.CreateOptions{}); !apierrors.IsBadRequest(err) {
		t.Errorf("the wrong kind: %v, want BadRequest", err)
	}
}
