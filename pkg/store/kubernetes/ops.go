package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/store"
)

// maxAttempts bounds the read-modify-write retries of one call after
// conflicts with other replicas.
const maxAttempts = 20

// listPageSize is the page size of session lists.
const listPageSize = 500

// tombstoneMaxAge is how long a tombstone waits for its delete event.
const tombstoneMaxAge = time.Minute

// resource is the part of a typed client (SecretInterface,
// ConfigMapInterface) the store uses.
type resource[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// objType says how items are kept in one type of object.
type objType[T metav1.Object] struct {
	client func(*Store) resource[T]
	// build makes an object holding payload.
	build func(meta metav1.ObjectMeta, k kind, payload []byte) T
	// payload returns what an object holds.
	payload func(obj T, k kind) []byte
	// replace returns a copy of obj holding payload instead.
	replace func(obj T, k kind, payload []byte) T
}

var secrets = objType[*corev1.Secret]{
	client: func(s *Store) resource[*corev1.Secret] { return s.client.CoreV1().Secrets(s.namespace) },
	build: func(meta metav1.ObjectMeta, k kind, payload []byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: meta, Type: k.secretType, Data: map[string][]byte{k.dataKey: payload}}
	},
	payload: func(obj *corev1.Secret, k kind) []byte { return obj.Data[k.dataKey] },
	replace: func(obj *corev1.Secret, k kind, payload []byte) *corev1.Secret {
		obj = obj.DeepCopy()
		obj.Data = map[string][]byte{k.dataKey: payload}
		return obj
	},
}

var configMaps = objType[*corev1.ConfigMap]{
	client: func(s *Store) resource[*corev1.ConfigMap] { return s.client.CoreV1().ConfigMaps(s.namespace) },
	build: func(meta metav1.ObjectMeta, k kind, payload []byte) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{k.dataKey: string(payload)}}
	},
	payload: func(obj *corev1.ConfigMap, k kind) []byte { return []byte(obj.Data[k.dataKey]) },
	replace: func(obj *corev1.ConfigMap, k kind, payload []byte) *corev1.ConfigMap {
		obj = obj.DeepCopy()
		obj.Data = map[string]string{k.dataKey: string(payload)}
		return obj
	},
}

// call runs one request with the store's request timeout and maps its error.
func (s *Store) call(ctx context.Context, fn func(ctx context.Context) error) error {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.apiError(ctx, fn(rctx))
}

func (s *Store) meta(k kind, name, id string, expires time.Time) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: s.namespace,
		Labels:    map[string]string{LabelManagedBy: ManagedByValue, LabelKind: k.label},
		Annotations: map[string]string{
			AnnotationID:        id,
			AnnotationExpiresAt: expires.UTC().Format(time.RFC3339),
		},
	}
}

// backoff waits before retry attempt n (from 1) after a conflict.
func backoff(ctx context.Context, n int) error {
	d := time.Duration(min(n, 6)) * 5 * time.Millisecond
	d += time.Duration(rand.Int64N(int64(d)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// create writes a new object holding item and returns its version.
func create[T metav1.Object](s *Store, ctx context.Context, ot objType[T], k kind, id string, expires time.Time, item any, labels map[string]string) (string, error) {
	name, err := objectName(k, id)
	if err != nil {
		return "", err
	}
	if err := s.begin(ctx); err != nil {
		return "", err
	}
	payload, err := json.Marshal(item)
	if err != nil {
		return "", fmt.Errorf("encoding it: %w", err)
	}
	meta := s.meta(k, name, id, expires)
	for l, v := range labels {
		meta.Labels[l] = v
	}
	var created T
	err = s.call(ctx, func(ctx context.Context) (err error) {
		created, err = ot.client(s).Create(ctx, ot.build(meta, k, payload), metav1.CreateOptions{})
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("namespace %s does not exist; create it, or set store.kubernetes.namespace to an existing one", s.namespace)
	}
	if err != nil {
		return "", err
	}
	return created.GetResourceVersion(), nil
}

// get reads and decodes the item with this ID.
func get[T metav1.Object, I any](s *Store, ctx context.Context, ot objType[T], k kind, id string, idOf func(I) string) (I, T, error) {
	var item I
	var obj T
	if err := s.begin(ctx); err != nil {
		return item, obj, err
	}
	name, err := objectName(k, id)
	if err != nil {
		return item, obj, store.ErrNotFound // no such ID can have been stored
	}
	err = s.call(ctx, func(ctx context.Context) (err error) {
		obj, err = ot.client(s).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return item, obj, err
	}
	item, err = decode(k, obj, ot.payload(obj, k), idOf)
	return item, obj, err
}

// deleteVersion deletes the object only if it is still at version rv.
func deleteVersion[T metav1.Object](s *Store, ctx context.Context, ot objType[T], name, rv string) error {
	return s.call(ctx, func(ctx context.Context) error {
		return ot.client(s).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	})
}

// remove deletes the current version of the item with this ID and returns
// the version it deleted.
func remove[T metav1.Object, I any](s *Store, ctx context.Context, ot objType[T], k kind, id string, idOf func(I) string) (string, error) {
	if err := s.begin(ctx); err != nil {
		return "", err
	}
	name, err := objectName(k, id)
	if err != nil {
		return "", store.ErrNotFound
	}
	for attempt := 1; ; attempt++ {
		_, obj, err := get(s, ctx, ot, k, id, idOf)
		if err != nil {
			return "", err
		}
		rv := obj.GetResourceVersion()
		err = deleteVersion(s, ctx, ot, name, rv)
		if !errors.Is(err, store.ErrConflict) || attempt == maxAttempts {
			return rv, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return "", err
		}
	}
}

func keyID(k store.SigningKey) string  { return k.ID }
func sessionID(s store.Session) string { return s.ID }
func revID(r store.Revocation) string  { return r.ID }
func grantID(g store.Grant) string     { return g.ID }

// ListSigningKeys returns all signing keys, sorted by ID, from the cache.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("listing signing keys: %w", err)
	}
	return s.keys.list(cloneSigningKey), nil
}

// CreateSigningKey stores k in a Secret; it fails with store.ErrAlreadyExists
// if a key with the same ID exists.
func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	rv, err := create(s, ctx, secrets, kindSigningKey, k.ID, k.ExpireAt, k, nil)
	if err != nil {
		return fmt.Errorf("creating signing key %s: %w", k.ID, err)
	}
	s.keys.put(k.ID, cloneSigningKey(k), rv)
	return nil
}

// DeleteSigningKey deletes the key with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	rv, err := remove(s, ctx, secrets, kindSigningKey, id, keyID)
	if err != nil {
		return fmt.Errorf("deleting signing key %s: %w", id, err)
	}
	s.keys.tombstone(id, rv, time.Now())
	return nil
}

// sessionEnds is the value of LabelSessionEnds for sess: the Unix second in
// which it ends by age or idleness (never negative: a label value cannot
// start with '-').
func sessionEnds(sess store.Session) string {
	end := sess.ExpiresAt
	if sess.IdleTimeout > 0 {
		if idle := sess.LastUsedAt.Add(sess.IdleTimeout); idle.Before(end) {
			end = idle
		}
	}
	return strconv.FormatInt(max(end.Unix(), 0), 10)
}

// CreateSession stores sess in a Secret; it fails with
// store.ErrAlreadyExists if a session with the same ID exists.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	if _, err := create(s, ctx, secrets, kindSession, sess.ID, sess.ExpiresAt, sess, map[string]string{LabelSessionEnds: sessionEnds(sess), LabelSessionUser: userLabel(sess.Username)}); err != nil {
		return fmt.Errorf("creating session %s: %w", sess.ID, err)
	}
	return nil
}

// GetSession reads the session with the given ID from the API server, or
// fails with store.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	sess, _, err := get(s, ctx, secrets, kindSession, id, sessionID)
	if err != nil {
		return store.Session{}, fmt.Errorf("getting session %s: %w", id, err)
	}
	return sess, nil
}

// UpdateSession reads the session, calls update on it and writes the result
// only if nobody wrote the session meanwhile (the Secret's resourceVersion
// is unchanged), so concurrent updates, from this replica or another, never
// interleave. After a conflict it reads the session again and calls update
// again (so update may be called more than once, each time on fresh data),
// up to a bound. If update returns an error, nothing is written and that
// error is returned (wrapped). update must not change the session's ID.
func (s *Store) UpdateSession(ctx context.Context, id string, update func(*store.Session) error) (store.Session, error) {
	sess, err := s.updateSession(ctx, id, update)
	if err != nil {
		return store.Session{}, fmt.Errorf("updating session %s: %w", id, err)
	}
	return sess, nil
}

func (s *Store) updateSession(ctx context.Context, id string, update func(*store.Session) error) (store.Session, error) {
	if err := s.begin(ctx); err != nil {
		return store.Session{}, err
	}
	unlock, err := s.sessionLocks.lock(ctx, id)
	if err != nil {
		return store.Session{}, err
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		sess, obj, err := get(s, ctx, secrets, kindSession, id, sessionID)
		if err != nil {
			return store.Session{}, err
		}
		if err := update(&sess); err != nil {
			return store.Session{}, err
		}
		if sess.ID != id {
			return store.Session{}, fmt.Errorf("the update function changed the session ID to %q; IDs are immutable, create a new session instead", sess.ID)
		}
		payload, err := json.Marshal(sess)
		if err != nil {
			return store.Session{}, fmt.Errorf("encoding the updated session: %w", err)
		}
		next := secrets.replace(obj, kindSession, payload)
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[AnnotationExpiresAt] = sess.ExpiresAt.UTC().Format(time.RFC3339)
		if next.Labels == nil {
			next.Labels = map[string]string{}
		}
		next.Labels[LabelSessionEnds] = sessionEnds(sess)
		next.Labels[LabelSessionUser] = userLabel(sess.Username)
		err = s.call(ctx, func(ctx context.Context) error {
			_, err := s.client.CoreV1().Secrets(s.namespace).Update(ctx, next, metav1.UpdateOptions{})
			return err
		})
		if err == nil {
			// Decode again: the update function may keep references into
			// sess, and the caller's copy must not share them.
			var out store.Session
			if err := json.Unmarshal(payload, &out); err != nil {
				return store.Session{}, err
			}
			return out, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return store.Session{}, err
		}
		if attempt == maxAttempts {
			return store.Session{}, fmt.Errorf("still conflicting with other writers after %d attempts: %w", attempt, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return store.Session{}, err
		}
	}
}

// DeleteSession deletes the session with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	err := func() error {
		if err := s.begin(ctx); err != nil {
			return err
		}
		name, err := objectName(kindSession, id)
		if err != nil {
			return store.ErrNotFound
		}
		return s.call(ctx, func(ctx context.Context) error {
			return s.client.CoreV1().Secrets(s.namespace).Delete(ctx, name, metav1.DeleteOptions{})
		})
	}()
	if err != nil {
		return fmt.Errorf("deleting session %s: %w", id, err)
	}
	return nil
}

// ListSessions lists every session from the API server, in pages, sorted by
// ID.
func (s *Store) ListSessions(ctx context.Context) ([]store.Session, error) {
	var out []store.Session
	err := s.eachSession(ctx, selector(kindSession), false, func(sess store.Session, _ *corev1.Secret) error {
		out = append(out, sess)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	if out == nil {
		out = []store.Session{}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// eachSession calls fn for each session, page by page.
// With skipBad, an object that does not decode is logged and skipped rather
// than ending the listing.
func (s *Store) eachSession(ctx context.Context, labelSelector string, skipBad bool, fn func(store.Session, *corev1.Secret) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	opts := metav1.ListOptions{LabelSelector: labelSelector, Limit: listPageSize}
	for {
		var list *corev1.SecretList
		err := s.call(ctx, func(ctx context.Context) (err error) {
			list, err = s.client.CoreV1().Secrets(s.namespace).List(ctx, opts)
			return err
		})
		if err != nil {
			return err
		}
		for i := range list.Items {
			obj := &list.Items[i]
			sess, err := decode(kindSession, obj, obj.Data[kindSession.dataKey], sessionID)
			if err != nil && skipBad {
				klog.ErrorS(err, "Skipping a session object Portcullis cannot use; fix or delete it", "namespace", s.namespace, "name", obj.Name)
				continue
			}
			if err != nil {
				return err
			}
			if err := fn(sess, obj); err != nil {
				return err
			}
		}
		if list.Continue == "" {
			return nil
		}
		opts.Continue = list.Continue
	}
}

// Revoke records r in a ConfigMap. Revoking an ID that is already revoked
// succeeds and never shortens the revocation: the record with the later
// ExpiresAt is kept (a read-modify-write guarded by the resourceVersion).
func (s *Store) Revoke(ctx context.Context, r store.Revocation) error {
	if err := s.revoke(ctx, r); err != nil {
		if r.ID == "" {
			return fmt.Errorf("revoking: %w", err)
		}
		return fmt.Errorf("revoking %s: %w", r.ID, err)
	}
	return nil
}

func (s *Store) revoke(ctx context.Context, r store.Revocation) error {
	payload, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding the revocation: %w", err)
	}
	for attempt := 1; ; attempt++ {
		rv, err := create(s, ctx, configMaps, kindRevocation, r.ID, r.ExpiresAt, r, nil)
		if err == nil {
			s.revocations.put(r.ID, r, rv)
			return nil
		}
		if !errors.Is(err, store.ErrAlreadyExists) {
			return err
		}
		old, obj, err := get(s, ctx, configMaps, kindRevocation, r.ID, revID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue // deleted meanwhile: create it again
		case err != nil:
			return err
		case !r.ExpiresAt.After(old.ExpiresAt):
			// The stored revocation lasts at least as long: keep it, and
			// make sure this replica's view has it before returning.
			s.revocations.put(old.ID, old, obj.GetResourceVersion())
			return nil
		}
		next := configMaps.replace(obj, kindRevocation, payload)
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[AnnotationExpiresAt] = r.ExpiresAt.UTC().Format(time.RFC3339)
		var updated *corev1.ConfigMap
		err = s.call(ctx, func(ctx context.Context) (err error) {
			updated, err = s.client.CoreV1().ConfigMaps(s.namespace).Update(ctx, next, metav1.UpdateOptions{})
			return err
		})
		if err == nil {
			s.revocations.put(r.ID, r, updated.ResourceVersion)
			return nil
		}
		if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("still conflicting with other writers after %d attempts: %w", attempt, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// IsRevoked reports whether any of ids is revoked. It only reads this
// replica's cache (kept current by a watch), so it costs a map lookup per ID
// and keeps answering while the API server is unreachable. A revocation
// counts until GarbageCollect removes it.
func (s *Store) IsRevoked(ctx context.Context, ids ...string) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, fmt.Errorf("checking revocations: %w", err)
	}
	return s.revocations.has(ids), nil
}

// ListRevocations returns all revocations, sorted by ID, from the cache.
func (s *Store) ListRevocations(ctx context.Context) ([]store.Revocation, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("listing revocations: %w", err)
	}
	return s.revocations.list(func(r store.Revocation) store.Revocation { return r }), nil
}

// CreateGrant stores g in a ConfigMap; it fails with store.ErrAlreadyExists
// if a grant with the same ID exists.
func (s *Store) CreateGrant(ctx context.Context, g store.Grant) error {
	rv, err := create(s, ctx, configMaps, kindGrant, g.ID, g.ExpiresAt, g, nil)
	if err != nil {
		return fmt.Errorf("creating grant %s: %w", g.ID, err)
	}
	s.grants.put(g.ID, cloneGrant(g), rv)
	return nil
}

// ListGrants returns all grants, sorted by ID, from the cache.
func (s *Store) ListGrants(ctx context.Context) ([]store.Grant, error) {
	if err := s.begin(ctx); err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	return s.grants.list(cloneGrant), nil
}

// DeleteGrant deletes the grant with the given ID, or fails with
// store.ErrNotFound.
func (s *Store) DeleteGrant(ctx context.Context, id string) error {
	rv, err := remove(s, ctx, configMaps, kindGrant, id, grantID)
	if err != nil {
		return fmt.Errorf("deleting grant %s: %w", id, err)
	}
	s.grants.tombstone(id, rv, time.Now())
	return nil
}

// GarbageCollect deletes sessions that have Expired at now, revocations and
// grants whose ExpiresAt is not after now, and signing keys whose ExpireAt is
// not after now. It returns how many it deleted.
//
// Keys, revocations and grants are chosen from the cache, sessions from a
// list; each is deleted only if unchanged since (a precondition on its
// resourceVersion), so an item another replica just extended or refreshed is
// kept, and an item another replica deleted first is not counted. Replicas
// may collect at the same time.
func (s *Store) GarbageCollect(ctx context.Context, now time.Time) (int, error) {
	n, err := s.collect(ctx, now)
	if err != nil {
		return n, fmt.Errorf("collecting garbage: %w", err)
	}
	return n, nil
}

func (s *Store) collect(ctx context.Context, now time.Time) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	n := 0
	// deleted reports whether a delete removed the object; losing a race
	// with another replica is not an error.
	deleted := func(err error) (bool, error) {
		switch {
		case err == nil:
			n++
			return true, nil
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
			return false, nil
		default:
			return false, err
		}
	}
	for _, v := range s.keys.matching(func(k store.SigningKey) bool { return !now.Before(k.ExpireAt) }) {
		name, _ := objectName(kindSigningKey, v.id)
		if ok, err := deleted(deleteVersion(s, ctx, secrets, name, v.rv)); err != nil {
			return n, err
		} else if ok {
			s.keys.tombstone(v.id, v.rv, now)
		}
	}
	for _, v := range s.revocations.matching(func(r store.Revocation) bool { return !now.Before(r.ExpiresAt) }) {
		name, _ := objectName(kindRevocation, v.id)
		if ok, err := deleted(deleteVersion(s, ctx, configMaps, name, v.rv)); err != nil {
			return n, err
		} else if ok {
			s.revocations.tombstone(v.id, v.rv, now)
		}
	}
	for _, v := range s.grants.matching(func(g store.Grant) bool { return !now.Before(g.ExpiresAt) }) {
		name, _ := objectName(kindGrant, v.id)
		if ok, err := deleted(deleteVersion(s, ctx, configMaps, name, v.rv)); err != nil {
			return n, err
		} else if ok {
			s.grants.tombstone(v.id, v.rv, now)
		}
	}
	reqs, err := s.listRequests(ctx)
	if err != nil {
		return n, err
	}
	for _, v := range reqs {
		if !now.Before(v.item.ExpiresAt) {
			name, _ := objectName(kindRequest, v.id)
			if _, err := deleted(deleteVersion(s, ctx, configMaps, name, v.rv)); err != nil {
				return n, err
			}
		}
	}
	// Only sessions whose end label is at or before now's second are
	// listed; Expired decides exactly.
	var expired []*corev1.Secret
	ended := fmt.Sprintf("%s,%s<%d", selector(kindSession), LabelSessionEnds, now.Unix()+1)
	err = s.eachSession(ctx, ended, true, func(sess store.Session, obj *corev1.Secret) error {
		if sess.Expired(now) {
			expired = append(expired, obj)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	for _, obj := range expired {
		if _, err := deleted(deleteVersion(s, ctx, secrets, obj.Name, obj.ResourceVersion)); err != nil {
			return n, err
		}
	}
	wall := time.Now()
	s.keys.sweep(wall, tombstoneMaxAge)
	s.revocations.sweep(wall, tombstoneMaxAge)
	s.grants.sweep(wall, tombstoneMaxAge)
	return n, nil
}

func cloneSigningKey(k store.SigningKey) store.SigningKey {
	if k.PrivateKeyPEM != nil {
		k.PrivateKeyPEM = append([]byte{}, k.PrivateKeyPEM...)
	}
	return k
}

func cloneGrant(g store.Grant) store.Grant {
	if g.Groups != nil {
		g.Groups = append([]string{}, g.Groups...)
	}
	return g
}

func requestID(r store.AccessRequest) string { return r.ID }

// CreateAccessRequest stores r in a ConfigMap; it fails with
// store.ErrAlreadyExists if a request with the same ID exists.
func (s *Store) CreateAccessRequest(ctx context.Context, r store.AccessRequest) error {
	if _, err := create(s, ctx, configMaps, kindRequest, r.ID, r.ExpiresAt, r, nil); err != nil {
		return fmt.Errorf("creating access request %s: %w", r.ID, err)
	}
	return nil
}

// GetAccessRequest reads the request with the given ID from the API server,
// or fails with store.ErrNotFound.
func (s *Store) GetAccessRequest(ctx context.Context, id string) (store.AccessRequest, error) {
	r, _, err := get(s, ctx, configMaps, kindRequest, id, requestID)
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("getting access request %s: %w", id, err)
	}
	return r, nil
}

// UpdateAccessRequest reads the request, calls update on it and writes the
// result only if nobody wrote it meanwhile (resourceVersion), reading and
// calling update again after a conflict, up to a bound.
func (s *Store) UpdateAccessRequest(ctx context.Context, id string, update func(*store.AccessRequest) error) (store.AccessRequest, error) {
	r, err := s.updateRequest(ctx, id, update)
	if err != nil {
		return store.AccessRequest{}, fmt.Errorf("updating access request %s: %w", id, err)
	}
	return r, nil
}

func (s *Store) updateRequest(ctx context.Context, id string, update func(*store.AccessRequest) error) (store.AccessRequest, error) {
	for attempt := 1; ; attempt++ {
		r, obj, err := get(s, ctx, configMaps, kindRequest, id, requestID)
		if err != nil {
			return store.AccessRequest{}, err
		}
		if err := update(&r); err != nil {
			return store.AccessRequest{}, err
		}
		if r.ID != id {
			return store.AccessRequest{}, fmt.Errorf("the update function changed the access request ID to %q; IDs are immutable", r.ID)
		}
		payload, err := json.Marshal(r)
		if err != nil {
			return store.AccessRequest{}, fmt.Errorf("encoding the updated access request: %w", err)
		}
		next := configMaps.replace(obj, kindRequest, payload)
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[AnnotationExpiresAt] = r.ExpiresAt.UTC().Format(time.RFC3339)
		err = s.call(ctx, func(ctx context.Context) error {
			_, err := s.client.CoreV1().ConfigMaps(s.namespace).Update(ctx, next, metav1.UpdateOptions{})
			return err
		})
		if err == nil {
			return store.CloneAccessRequest(r), nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return store.AccessRequest{}, err
		}
		if attempt == maxAttempts {
			return store.AccessRequest{}, fmt.Errorf("still conflicting with other writers after %d attempts: %w", attempt, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return store.AccessRequest{}, err
		}
	}
}

// ListAccessRequests lists every access request from the API server, sorted
// by ID. Objects that do not decode are logged and skipped.
func (s *Store) ListAccessRequests(ctx context.Context) ([]store.AccessRequest, error) {
	list, err := s.listRequests(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing access requests: %w", err)
	}
	out := make([]store.AccessRequest, 0, len(list))
	for _, v := range list {
		out = append(out, v.item)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *Store) listRequests(ctx context.Context) ([]versioned[store.AccessRequest], error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	var out []versioned[store.AccessRequest]
	opts := metav1.ListOptions{LabelSelector: selector(kindRequest), Limit: listPageSize}
	for {
		var list *corev1.ConfigMapList
		err := s.call(ctx, func(ctx context.Context) (err error) {
			list, err = s.client.CoreV1().ConfigMaps(s.namespace).List(ctx, opts)
			return err
		})
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			obj := &list.Items[i]
			r, err := decode(kindRequest, obj, []byte(obj.Data[kindRequest.dataKey]), requestID)
			if err != nil {
				klog.ErrorS(err, "Skipping an access request object Portcullis cannot use; fix or delete it", "namespace", s.namespace, "name", obj.Name)
				continue
			}
			out = append(out, versioned[store.AccessRequest]{r.ID, r, obj.ResourceVersion})
		}
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}
