package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/store"
)

func revocation(jti, reason string) *v1alpha1.TokenRevocation {
	return &v1alpha1.TokenRevocation{ObjectMeta: metav1.ObjectMeta{GenerateName: "leak-"}, Spec: v1alpha1.TokenRevocationSpec{TokenID: jti, Reason: reason}}
}

func TestTokenRevocation_RevokesATokenWithoutASessionByItsID(t *testing.T) {
	f := newFixture(t)
	r := NewTokenRevocationREST(f.sessions())
	tok := f.mint("robot", "dev", "", time.Hour) // no session: as mint or an exchanged ID token
	res, err := f.authn.Authenticate(context.Background(), "dev", tok)
	if err != nil {
		t.Fatal(err)
	}
	jti := res.User.Extra[authn.ExtraTokenID][0]

	obj, err := r.Create(withUser("admin"), revocation(jti, "leaked in a CI log"), nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := obj.(*v1alpha1.TokenRevocation)
	if out.Status.ExpirationTimestamp == nil || out.Status.ExpirationTimestamp.Time.Before(f.clock().Add(f.cfg.Tokens.MaxLifetime.Duration)) || out.Name == "" {
		t.Fatalf("revocation %+v: want a name and kept at least tokens.maxLifetime", out)
	}
	if _, err := f.authn.Authenticate(context.Background(), "dev", tok); err == nil {
		t.Fatal("the revoked token still authenticates")
	}
	revs, _ := f.store.ListRevocations(context.Background())
	if len(revs) != 1 || revs[0].RevokedBy != "admin" || revs[0].Reason != "leaked in a CI log" {
		t.Fatalf("stored revocations %+v", revs)
	}
}

func TestTokenRevocation_BadRequestsAreInvalidAndDryRunRevokesNothing(t *testing.T) {
	f := newFixture(t)
	r := NewTokenRevocationREST(f.sessions())
	for name, in := range map[string]*v1alpha1.TokenRevocation{
		"no token ID":        revocation("", "why"),
		"no reason":          revocation("abc", " "),
		"not a token ID":     revocation("abc def", "why"),
		"a status is preset": {Spec: v1alpha1.TokenRevocationSpec{TokenID: "abc", Reason: "why"}, Status: v1alpha1.TokenRevocationStatus{RevokedAt: &metav1.Time{}}},
	} {
		if _, err := r.Create(withUser("admin"), in, nil, &metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("%s: %v, want 422 Invalid", name, err)
		}
	}
	if _, err := r.Create(withUser("admin"), revocation("abc", "why"), nil, &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if revoked, _ := f.store.IsRevoked(context.Background(), "abc"); revoked {
		t.Fatal("a dry run revoked the token")
	}
}

type unavailableRevoker struct{}

func (unavailableRevoker) RevokeTokenID(context.Context, string, string, string) (store.Revocation, error) {
	return store.Revocation{}, errors.Join(store.ErrUnavailable, errors.New("apiserver down"))
}

func TestTokenRevocation_AStoreOutageIsA503(t *testing.T) {
	r := NewTokenRevocationREST(unavailableRevoker{})
	_, err := r.Create(withUser("admin"), revocation("abc", "why"), nil, &metav1.CreateOptions{})
	if !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("%v, want 503", err)
	}
}
