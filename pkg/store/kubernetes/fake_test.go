package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"portcullis.dev/portcullis/pkg/store"
)

func newFake(t *testing.T, objs ...runtime.Object) (*Store, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	s, err := New(context.Background(), cs, Options{Namespace: "portcullis", SyncTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, cs
}

func TestErrorMapping(t *testing.T) {
	s := &Store{host: "https://api.example:6443", namespace: "ns"}
	gr := schema.GroupResource{Resource: "secrets"}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want error
		text string
	}{
		{"not found", apierrors.NewNotFound(gr, "x"), store.ErrNotFound, ""},
		{"already exists", apierrors.NewAlreadyExists(gr, "x"), store.ErrAlreadyExists, ""},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("changed")), store.ErrConflict, ""},
		{"503", apierrors.NewServiceUnavailable("etcd down"), store.ErrUnavailable, "Kubernetes API at https://api.example:6443"},
		{"504", apierrors.NewTimeoutError("slow", 1), store.ErrUnavailable, "unreachable"},
		{"500", apierrors.NewInternalError(errors.New("etcdserver: leader changed")), store.ErrUnavailable, ""},
		{"429", apierrors.NewTooManyRequests("busy", 1), store.ErrUnavailable, ""},
		{"connection refused", &url.Error{Op: "Get", URL: "https://api.example:6443/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, store.ErrUnavailable, "connection refused"},
		{"request timeout", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), store.ErrUnavailable, ""},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("no RBAC")), nil, "secrets and configmaps in namespace ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.apiError(ctx, tc.err)
			if tc.want != nil && !errors.Is(got, tc.want) {
				t.Errorf("apiError(%v) = %v, want an error wrapping %v", tc.err, got, tc.want)
			}
			if tc.want != store.ErrUnavailable && errors.Is(got, store.ErrUnavailable) {
				t.Errorf("apiError(%v) = %v wraps ErrUnavailable", tc.err, got)
			}
			if !strings.Contains(got.Error(), tc.text) {
				t.Errorf("apiError(%v) = %q, want it to say %q", tc.err, got, tc.text)
			}
		})
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if got := s.apiError(cctx, &url.Error{Op: "Get", URL: "x", Err: context.Canceled}); !errors.Is(got, context.Canceled) || errors.Is(got, store.ErrUnavailable) {
		t.Errorf("apiError with the caller's context cancelled = %v, want context.Canceled and not ErrUnavailable", got)
	}
}

func TestObjectLayout(t *testing.T) {
	s, cs := newFake(t)
	ctx := context.Background()
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.CreateSession(ctx, store.Session{ID: "sess-1", Username: "alice", UpstreamRefreshToken: "secret", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, store.Revocation{ID: "jti-1", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets("portcullis").Get(ctx, "portcullis-session-edin6spd64", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != "portcullis.dev/session" || sec.Labels[LabelManagedBy] != "portcullis" || sec.Labels[LabelKind] != "session" ||
		sec.Annotations[AnnotationID] != "sess-1" || sec.Annotations[AnnotationExpiresAt] != "2030-01-02T03:04:05Z" || len(sec.Data["session.json"]) == 0 {
		t.Errorf("session secret = %+v", sec)
	}
	cm, err := cs.CoreV1().ConfigMaps("portcullis").Get(ctx, "portcullis-revocation-d9q6ib9h", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels[LabelKind] != "revocation" || !strings.Contains(cm.Data["revocation.json"], `"id":"jti-1"`) {
		t.Errorf("revocation configmap = %+v", cm)
	}
}

func TestWritesFailWithErrUnavailableWhileTheAPIServerIsDown(t *testing.T) {
	s, cs := newFake(t)
	ctx := context.Background()
	if err := s.Revoke(ctx, store.Revocation{ID: "jti-1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	down := &url.Error{Op: "Post", URL: "https://api", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	cs.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, down })
	if err := s.CreateSession(ctx, store.Session{ID: "s", ExpiresAt: time.Now().Add(time.Hour)}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("CreateSession = %v, want ErrUnavailable", err)
	}
	if revoked, err := s.IsRevoked(ctx, "jti-1"); err != nil || !revoked {
		t.Errorf("IsRevoked from the cache = %v, %v; want true, nil", revoked, err)
	}
}

func TestCacheIgnoresForeignAndBrokenObjects(t *testing.T) {
	bad := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "portcullis-revocation-c4", Namespace: "portcullis",
		Labels: map[string]string{LabelManagedBy: ManagedByValue, LabelKind: "revocation"}}, Data: map[string]string{"revocation.json": `{"id":"b"}`}}
	broken := bad.DeepCopy()
	broken.Name = "portcullis-revocation-c8"
	broken.Data = map[string]string{"revocation.json": "{"}
	s, _ := newFake(t, bad, broken)
	revs, err := s.ListRevocations(context.Background())
	if err != nil || len(revs) != 0 {
		t.Errorf("ListRevocations = %v, %v; want nothing (one object holds another ID, one does not decode)", revs, err)
	}
}

func TestGarbageCollectSkipsABrokenSession(t *testing.T) {
	broken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "portcullis-session-c4", Namespace: "portcullis",
		Labels: map[string]string{LabelManagedBy: ManagedByValue, LabelKind: "session", LabelSessionEnds: "0"}},
		Data: map[string][]byte{"session.json": []byte("{")}}
	s, _ := newFake(t, broken)
	ctx := context.Background()
	now := time.Now()
	for _, sess := range []store.Session{
		{ID: "ended", ExpiresAt: now.Add(-time.Hour)},
		{ID: "idle", ExpiresAt: now.Add(time.Hour), LastUsedAt: now.Add(-2 * time.Hour), IdleTimeout: time.Hour},
		{ID: "live", ExpiresAt: now.Add(time.Hour), LastUsedAt: now, IdleTimeout: time.Hour},
	} {
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.GarbageCollect(ctx, now)
	if err != nil || n != 2 {
		t.Fatalf("GarbageCollect = %d, %v; want 2, nil (the broken object logged and skipped)", n, err)
	}
	if _, err := s.GetSession(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListSessions(ctx); err == nil || strings.Contains(err.Error(), "{") {
		t.Errorf("ListSessions with a broken object = %v; want an error naming it (and not quoting it)", err)
	}
}
