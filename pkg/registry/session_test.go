package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/token"
)

func sessionNames(t *testing.T, obj runtime.Object, err error) string {
	t.Helper()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, s := range obj.(*v1alpha1.SessionList).Items {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

func TestSession_ListShowsLiveSessionsOldestFirstWithoutSecrets(t *testing.T) {
	f := newFixture(t)
	f.addSession("s-new", "bob", time.Minute)
	f.addSession("s-old", "alice", time.Hour)
	ended := f.addSession("s-ended", "carol", 2*time.Hour)
	if _, err := f.store.UpdateSession(context.Background(), ended.ID, func(s *store.Session) error {
		s.ExpiresAt = f.clock().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := NewSessionREST(f.store, f.sessions(), f.clk)

	obj, err := r.List(withUser("admin"), &metainternalversion.ListOptions{})
	if got := sessionNames(t, obj, err); got != "s-old,s-new" {
		t.Errorf("sessions = %s, want s-old,s-new (live ones, oldest first)", got)
	}
	s := obj.(*v1alpha1.SessionList).Items[0]
	if s.Spec.Username != "alice" || s.Spec.IdentityProvider != "dex" || s.Spec.Email != "alice@example.com" || s.Spec.ClientAddress != "192.0.2.1" ||
		s.Status.ExpirationTimestamp == nil || s.Status.LastUsedTime == nil || s.Status.IdleExpirationTimestamp == nil {
		t.Errorf("session = %+v, want its identity and times", s)
	}

	table, err := r.ConvertToTable(context.Background(), obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Rows) != 2 || table.Rows[0].Cells[1] != "alice" {
		t.Errorf("table rows = %+v", table.Rows)
	}
}

func TestSession_ListSelectors(t *testing.T) {
	f := newFixture(t)
	f.addSession("s-1", "alice", time.Hour)
	f.addSession("s-2", "bob", time.Minute)
	r := NewSessionREST(f.store, f.sessions(), f.clk)
	for _, tc := range []struct {
		name   string
		fields string
		labels string
		want   string
	}{
		{name: "by user name", fields: "spec.username=bob", want: "s-2"},
		{name: "by name", fields: "metadata.name=s-1", want: "s-1"},
		{name: "excluding a user", fields: "spec.username!=bob", want: "s-1"},
		{name: "by a label no session has", labels: "team=blue", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := &metainternalversion.ListOptions{}
			if tc.fields != "" {
				opts.FieldSelector = fields.ParseSelectorOrDie(tc.fields)
			}
			if tc.labels != "" {
				opts.LabelSelector = labels.SelectorFromSet(labels.Set{"team": "blue"})
			}
			obj, err := r.List(context.Background(), opts)
			if got := sessionNames(t, obj, err); got != tc.want {
				t.Errorf("sessions = %q, want %q", got, tc.want)
			}
		})
	}
	_, err := r.List(context.Background(), &metainternalversion.ListOptions{FieldSelector: fields.ParseSelectorOrDie("spec.email=x")})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "spec.username") {
		t.Errorf("unsupported field selector: %v, want 400 naming the supported fields", err)
	}
}

func TestSession_DeleteRevokesTheSessionAndItsTokens(t *testing.T) {
	f := newFixture(t)
	f.addSession("s-1", "alice", time.Hour)
	tok := f.mint("alice", "dev", "s-1", 10*time.Minute)
	r := NewSessionREST(f.store, f.sessions(), f.clk)

	// Dry run changes nothing.
	if _, _, err := r.Delete(withUser("admin"), "s-1", nil, &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify.Verify(context.Background(), tok, []string{"dev"}); err != nil {
		t.Fatalf("a dry-run delete revoked the session: %v", err)
	}

	obj, now, err := r.Delete(withUser("admin"), "s-1", nil, &metav1.DeleteOptions{})
	if err != nil || !now {
		t.Fatalf("Delete: %v, immediately=%v", err, now)
	}
	if obj.(*v1alpha1.Session).Spec.Username != "alice" {
		t.Errorf("Delete returned %+v, want the deleted session", obj)
	}
	if _, err := f.verify.Verify(context.Background(), tok, []string{"dev"}); err == nil {
		t.Errorf("a token of the deleted session still verifies")
	}
	revs, err := f.store.ListRevocations(context.Background())
	if err != nil || len(revs) != 1 || revs[0].ID != "s-1" || revs[0].RevokedBy != "admin" || !revs[0].ExpiresAt.Equal(f.clock().Add(24*time.Hour+5*time.Minute)) {
		t.Errorf("revocations = %+v (%v), want s-1 by admin, kept for tokens.maxLifetime and the revocation skew, as logout keeps it", revs, err)
	}
	if _, err := r.Get(context.Background(), "s-1", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Get after Delete: %v, want NotFound", err)
	}
	if _, _, err := r.Delete(withUser("admin"), "s-1", nil, &metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("second Delete: %v, want NotFound", err)
	}
}

func TestSession_DeleteHonoursPreconditionsAndAdmission(t *testing.T) {
	f := newFixture(t)
	f.addSession("s-1", "alice", time.Hour)
	r := NewSessionREST(f.store, f.sessions(), f.clk)
	uid := types.UID("not-this-one")
	if _, _, err := r.Delete(withUser("admin"), "s-1", nil, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); !apierrors.IsConflict(err) {
		t.Errorf("mismatched UID precondition: %v, want Conflict", err)
	}
	deny := func(ctx context.Context, obj runtime.Object) error {
		return apierrors.NewForbidden(v1alpha1.Resource("sessions"), "s-1", nil)
	}
	if _, _, err := r.Delete(withUser("admin"), "s-1", deny, &metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("admission refusal: %v, want Forbidden", err)
	}
	if _, err := r.Get(context.Background(), "s-1", &metav1.GetOptions{}); err != nil {
		t.Errorf("a refused delete deleted the session: %v", err)
	}
}

func TestSession_GetRejectsUnknownAndEndedSessions(t *testing.T) {
	f := newFixture(t)
	f.addSession("s-1", "alice", time.Hour)
	r := NewSessionREST(f.store, f.sessions(), f.clk)
	if obj, err := r.Get(context.Background(), "s-1", &metav1.GetOptions{}); err != nil || obj.(*v1alpha1.Session).Name != "s-1" {
		t.Fatalf("Get: %v %v", obj, err)
	}
	for _, name := range []string{"nope", "", strings.Repeat("x", 300)} {
		if _, err := r.Get(context.Background(), name, &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Get(%.10q): %v, want NotFound", name, err)
		}
	}
	f.advance(2 * time.Hour) // idle timeout is 1h
	if _, err := r.Get(context.Background(), "s-1", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Get of an idle-expired session: %v, want NotFound", err)
	}
}

// A session deleted through the API must keep its revocation as long as
// logout does: until the last token of the session can no longer verify,
// including the verifier's leeway on exp. Before the Session API and logout
// shared pkg/session's code, the API's revocation was collected at exactly
// tokens.maxLifetime, and a token could verify again inside the leeway.
func TestSession_DeletedSessionsTokensStayRefusedInsideTheVerifiersLeeway(t *testing.T) {
	f := newFixture(t)
	f.addSession("s-1", "alice", time.Hour)
	maxLifetime := f.cfg.Tokens.MaxLifetime.Duration
	tok := f.mint("alice", "dev", "s-1", maxLifetime)
	r := NewSessionREST(f.store, f.sessions(), f.clk)
	if _, _, err := r.Delete(withUser("admin"), "s-1", nil, &metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	f.advance(maxLifetime + token.DefaultLeeway/2)
	if _, err := f.store.GarbageCollect(context.Background(), f.clock()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify.Verify(context.Background(), tok, []string{"dev"}); err == nil {
		t.Errorf("a token of a deleted session verifies again once the store collected garbage inside the verifier's leeway")
	}
}
