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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/validation"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

// Audit annotations of a session revocation.
const (
	AnnotationSession     = "portcullis.dev/session"
	AnnotationSessionUser = "portcullis.dev/session-user"
)

// SessionREST lists and revokes login sessions. Who may is the delegated
// authorizer's decision (the cluster's RBAC on sessions: get, list, delete).
type SessionREST struct {
	store    Store
	sessions SessionEnder
	clock    clock.PassiveClock
}

var (
	_ rest.Getter               = (*SessionREST)(nil)
	_ rest.Lister               = (*SessionREST)(nil)
	_ rest.GracefulDeleter      = (*SessionREST)(nil)
	_ rest.Scoper               = (*SessionREST)(nil)
	_ rest.SingularNameProvider = (*SessionREST)(nil)
	_ rest.TableConvertor       = (*SessionREST)(nil)
)

// NewSessionREST returns the storage of sessions.
func NewSessionREST(st Store, sessions SessionEnder, clk clock.PassiveClock) *SessionREST {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &SessionREST{store: st, sessions: sessions, clock: clk}
}

// New implements rest.Storage.
func (r *SessionREST) New() runtime.Object { return &v1alpha1.Session{} }

// NewList implements rest.Lister.
func (r *SessionREST) NewList() runtime.Object { return &v1alpha1.SessionList{} }

// Destroy implements rest.Storage.
func (r *SessionREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *SessionREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *SessionREST) GetSingularName() string { return "session" }

// ConvertToTable implements rest.TableConvertor.
func (r *SessionREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	return sessionTable(obj, r.clock.Now())
}

// Get returns one live session.
func (r *SessionREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	sess, err := r.get(ctx, name)
	if err != nil {
		return nil, err
	}
	return sessionObject(sess), nil
}

func (r *SessionREST) get(ctx context.Context, name string) (store.Session, error) {
	if errs := validation.ValidateSessionName(name); len(errs) > 0 {
		return store.Session{}, apierrors.NewNotFound(v1alpha1.Resource("sessions"), name)
	}
	sess, err := r.store.GetSession(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Session{}, apierrors.NewNotFound(v1alpha1.Resource("sessions"), name)
	case err != nil:
		klog.ErrorS(err, "Reading a session failed", "session", name)
		return store.Session{}, apierrors.NewInternalError(fmt.Errorf("reading session %s from the store failed", name))
	case sess.Expired(r.clock.Now()):
		// Ended sessions wait in the store for garbage collection; they are
		// gone as far as anyone can tell.
		return store.Session{}, apierrors.NewNotFound(v1alpha1.Resource("sessions"), name)
	}
	return sess, nil
}

// List returns the live sessions, oldest first. Label selectors match the
// sessions' (absent) labels; field selectors may use metadata.name,
// spec.username and spec.identityProvider.
func (r *SessionREST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	labelSel, fieldSel := labels.Everything(), fields.Everything()
	if options != nil {
		if options.LabelSelector != nil {
			labelSel = options.LabelSelector
		}
		if options.FieldSelector != nil {
			fieldSel = options.FieldSelector
		}
	}
	for _, req := range fieldSel.Requirements() {
		if !sessionFields[req.Field] {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("field selector %q is not supported for sessions: use %s", req.Field, strings.Join(sessionFieldNames(), ", ")))
		}
	}
	all, err := r.store.ListSessions(ctx)
	if err != nil {
		klog.ErrorS(err, "Listing sessions failed")
		return nil, apierrors.NewInternalError(errors.New("listing sessions from the store failed"))
	}
	now := r.clock.Now()
	out := &v1alpha1.SessionList{Items: []v1alpha1.Session{}}
	for _, s := range all {
		if s.Expired(now) {
			continue
		}
		obj := sessionObject(s)
		if !labelSel.Matches(labels.Set(obj.Labels)) || !fieldSel.Matches(sessionFieldSet(obj)) {
			continue
		}
		out.Items = append(out.Items, *obj)
	}
	slices.SortFunc(out.Items, func(a, b v1alpha1.Session) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

var sessionFields = map[string]bool{"metadata.name": true, "spec.username": true, "spec.identityProvider": true}

func sessionFieldNames() []string {
	var out []string
	for f := range sessionFields {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

func sessionFieldSet(s *v1alpha1.Session) fields.Set {
	return fields.Set{"metadata.name": s.Name, "spec.username": s.Spec.Username, "spec.identityProvider": s.Spec.IdentityProvider}
}

// Delete revokes a session: its ID is revoked (so every token minted for
// it fails verification from now on, on every replica sharing the store)
// and the session is deleted (so it cannot be refreshed). It ends the session
// through pkg/session, as logout does, so the revocation is kept as long.
// The revocation is written first: if deleting fails afterwards, the session
// is still dead.
func (r *SessionREST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	sess, err := r.get(ctx, name)
	if err != nil {
		return nil, false, err
	}
	obj := sessionObject(sess)
	if options != nil && options.Preconditions != nil {
		if p := options.Preconditions; (p.UID != nil && *p.UID != obj.UID) || (p.ResourceVersion != nil && *p.ResourceVersion != obj.ResourceVersion) {
			return nil, false, apierrors.NewConflict(v1alpha1.Resource("sessions"), name, errors.New("the precondition does not match the session"))
		}
	}
	if deleteValidation != nil {
		if err := deleteValidation(ctx, obj); err != nil {
			return nil, false, err
		}
	}
	if options != nil && dryrun.IsDryRun(options.DryRun) {
		return obj, true, nil
	}
	revokedBy := ""
	if u, ok := request.UserFrom(ctx); ok {
		revokedBy = u.GetName()
	}
	switch err := r.sessions.End(ctx, sess, "session deleted through the Session API", revokedBy); {
	case errors.Is(err, session.ErrNotDeleted):
		// Revoked already: it is dead, only its record remains.
		klog.ErrorS(err, "Deleting a revoked session failed; garbage collection will remove it", "session", name)
	case err != nil:
		klog.ErrorS(err, "Revoking a session failed", "session", name)
		return nil, false, apierrors.NewInternalError(fmt.Errorf("revoking session %s failed; it is still valid", name))
	}
	audit.AddAuditAnnotations(ctx, AnnotationSession, name, AnnotationSessionUser, sess.Username)
	klog.InfoS("Revoked a session", "session", name, "sessionUser", sess.Username, "revokedBy", revokedBy)
	return obj, true, nil
}

// sessionObject is the API view of a stored session: never its refresh
// token hashes nor the upstream refresh token.
func sessionObject(s store.Session) *v1alpha1.Session {
	obj := &v1alpha1.Session{
		ObjectMeta: metav1.ObjectMeta{
			Name:              s.ID,
			CreationTimestamp: metav1.NewTime(s.CreatedAt),
		},
		Spec: v1alpha1.SessionSpec{
			Username:         s.Username,
			UID:              s.UID,
			Groups:           slices.Clone(s.Groups),
			Email:            s.Email,
			IdentityProvider: s.IdentityProvider,
			ClientAddress:    s.ClientAddress,
		},
	}
	if !s.LastUsedAt.IsZero() {
		t := metav1.NewTime(s.LastUsedAt)
		obj.Status.LastUsedTime = &t
	}
	if s.IdleTimeout > 0 && !s.LastUsedAt.IsZero() {
		t := metav1.NewTime(s.LastUsedAt.Add(s.IdleTimeout))
		obj.Status.IdleExpirationTimestamp = &t
	}
	if !s.ExpiresAt.IsZero() {
		t := metav1.NewTime(s.ExpiresAt)
		obj.Status.ExpirationTimestamp = &t
	}
	return obj
}
