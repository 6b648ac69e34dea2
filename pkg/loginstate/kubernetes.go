package loginstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/clock"

	kstore "portcullis.dev/portcullis/pkg/store/kubernetes"
)

// The Secrets carry the state store's labels and expiry annotation
// (pkg/store/kubernetes owns them), kind login-state, and the login's kind.
const (
	LabelLoginKind       = "portcullis.dev/login-kind"
	secretType           = corev1.SecretType("portcullis.dev/login-state")
	kindLoginState       = "login-state"
	dataKey              = "data"
	namePrefix           = "portcullis-login-"
	maxConflictRetries   = 64
	listPageSize         = 500
	loginStateSelector   = kstore.LabelKind + "=" + kindLoginState
	expiryTimeFormatting = time.RFC3339Nano
)

// Kubernetes is a Store on Secrets in one namespace, shared by every replica
// that uses the same namespace. Entries go straight to the API (no cache):
// a login makes a handful of requests, and every step must see the last.
type Kubernetes struct {
	client    kubernetes.Interface
	namespace string
	clock     clock.PassiveClock
	// unavailable wraps an error the API server gave for reasons of its own
	// (unreachable, overloaded), so callers can answer 503.
	unavailable func(error) error
}

// NewKubernetes returns a Store on Secrets in namespace. unavailable, if not
// nil, wraps errors that mean the API server could not be reached.
func NewKubernetes(client kubernetes.Interface, namespace string, clk clock.PassiveClock, unavailable func(error) error) *Kubernetes {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if unavailable == nil {
		unavailable = func(err error) error { return err }
	}
	return &Kubernetes{client: client, namespace: namespace, clock: clk, unavailable: unavailable}
}

// secretName is a valid, fixed-length object name for kind/key; the key
// itself (a one-time secret or its hash) never appears in the API.
func secretName(kind Kind, key string) string {
	sum := sha256.Sum256([]byte(string(kind) + "\x00" + key))
	return namePrefix + string(kind) + "-" + hex.EncodeToString(sum[:20])
}

func (k *Kubernetes) secrets() typedcorev1.SecretInterface {
	return k.client.CoreV1().Secrets(k.namespace)
}

func expiryOf(s *corev1.Secret) time.Time {
	t, err := time.Parse(expiryTimeFormatting, s.Annotations[kstore.AnnotationExpiresAt])
	if err != nil {
		return time.Time{} // unreadable: treated as expired
	}
	return t
}

func (k *Kubernetes) live(s *corev1.Secret) bool {
	return s.Type == secretType && k.clock.Now().Before(expiryOf(s))
}

// mapErr turns API errors into this package's.
func (k *Kubernetes) mapErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return ErrNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("loginstate: %s: %w", what, err)
	}
	return k.unavailable(fmt.Errorf("loginstate: %s: %w", what, err))
}

// Create implements Store.
func (k *Kubernetes) Create(ctx context.Context, kind Kind, key string, data []byte, expires time.Time) error {
	obj := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        secretName(kind, key),
			Namespace:   k.namespace,
			Labels:      map[string]string{kstore.LabelManagedBy: kstore.ManagedByValue, kstore.LabelKind: kindLoginState, LabelLoginKind: string(kind)},
			Annotations: map[string]string{kstore.AnnotationExpiresAt: expires.UTC().Format(expiryTimeFormatting)},
		},
		Type: secretType,
		Data: map[string][]byte{dataKey: data},
	}
	for range maxConflictRetries {
		_, err := k.secrets().Create(ctx, obj, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			return k.mapErr("creating a "+string(kind), err)
		}
		// Taken: by a live entry (refuse) or an expired one nobody
		// collected yet (replace it).
		cur, err := k.secrets().Get(ctx, obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return k.mapErr("creating a "+string(kind), err)
		}
		if k.live(cur) {
			return ErrExists
		}
		if err := k.deleteExact(ctx, cur); err != nil && !errors.Is(err, ErrNotFound) && !apierrors.IsConflict(err) {
			return k.mapErr("replacing an expired "+string(kind), err)
		}
	}
	return k.unavailable(fmt.Errorf("loginstate: creating a %s: too many concurrent changes", kind))
}

func (k *Kubernetes) deleteExact(ctx context.Context, s *corev1.Secret) error {
	uid, rv := s.UID, s.ResourceVersion
	err := k.secrets().Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	if apierrors.IsNotFound(err) {
		return ErrNotFound
	}
	return err
}

func (k *Kubernetes) getLive(ctx context.Context, kind Kind, key string) (*corev1.Secret, error) {
	s, err := k.secrets().Get(ctx, secretName(kind, key), metav1.GetOptions{})
	if err != nil {
		return nil, k.mapErr("reading a "+string(kind), err)
	}
	if !k.live(s) {
		return nil, ErrNotFound
	}
	return s, nil
}

// Get implements Store.
func (k *Kubernetes) Get(ctx context.Context, kind Kind, key string) ([]byte, time.Time, error) {
	s, err := k.getLive(ctx, kind, key)
	if err != nil {
		return nil, time.Time{}, err
	}
	return s.Data[dataKey], expiryOf(s), nil
}

// Take implements Store: a delete with the UID and resourceVersion read as
// preconditions, so of two replicas taking one entry only one succeeds.
func (k *Kubernetes) Take(ctx context.Context, kind Kind, key string) ([]byte, error) {
	for range maxConflictRetries {
		s, err := k.getLive(ctx, kind, key)
		if err != nil {
			return nil, err
		}
		err = k.deleteExact(ctx, s)
		switch {
		case err == nil:
			return s.Data[dataKey], nil
		case errors.Is(err, ErrNotFound):
			return nil, ErrNotFound // someone else took it
		case apierrors.IsConflict(err):
			continue // changed since read: read again
		default:
			return nil, k.mapErr("taking a "+string(kind), err)
		}
	}
	return nil, k.unavailable(fmt.Errorf("loginstate: taking a %s: too many concurrent changes", kind))
}

// Update implements Store.
func (k *Kubernetes) Update(ctx context.Context, kind Kind, key string, f func([]byte) ([]byte, bool, error)) ([]byte, error) {
	for attempt := range maxConflictRetries {
		s, err := k.getLive(ctx, kind, key)
		if err != nil {
			return nil, err
		}
		next, remove, err := f(s.Data[dataKey])
		if err != nil {
			return nil, err
		}
		if remove {
			err = k.deleteExact(ctx, s)
			if errors.Is(err, ErrNotFound) {
				return nil, ErrNotFound
			}
		} else {
			s.Data = map[string][]byte{dataKey: next}
			_, err = k.secrets().Update(ctx, s, metav1.UpdateOptions{})
		}
		switch {
		case err == nil:
			return next, nil
		case apierrors.IsConflict(err):
			backOff(ctx, attempt)
			continue
		default:
			return nil, k.mapErr("updating a "+string(kind), err)
		}
	}
	return nil, k.unavailable(fmt.Errorf("loginstate: updating a %s: too many concurrent changes", kind))
}

// Collect implements Store.
func (k *Kubernetes) Collect(ctx context.Context, now time.Time) (int, error) {
	n := 0
	opts := metav1.ListOptions{LabelSelector: loginStateSelector, Limit: listPageSize}
	for {
		list, err := k.secrets().List(ctx, opts)
		if err != nil {
			return n, k.mapErr("listing logins in progress", err)
		}
		for i := range list.Items {
			s := &list.Items[i]
			if now.Before(expiryOf(s)) {
				continue
			}
			if err := k.deleteExact(ctx, s); err == nil {
				n++
			} else if !errors.Is(err, ErrNotFound) && !apierrors.IsConflict(err) {
				return n, k.mapErr("deleting an expired login in progress", err)
			}
		}
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}

// backOff waits a little, more after each lost race, so that writers
// contending for one entry spread out instead of colliding again.
func backOff(ctx context.Context, attempt int) {
	d := time.Duration(1+rand.IntN(1+min(attempt, 20))) * 2 * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
