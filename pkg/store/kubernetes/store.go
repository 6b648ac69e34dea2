package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/store"
)

// Defaults of Options.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultSyncTimeout    = time.Minute
	// DefaultQPS and DefaultBurst limit requests to the API server when the
	// configuration sets no limit of its own.
	DefaultQPS   = 200
	DefaultBurst = 400
)

// InClusterNamespaceFile holds the namespace of the pod's service account.
const InClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Options configures Open and New.
type Options struct {
	// Kubeconfig is the path of a kubeconfig file; empty means the in-cluster
	// configuration (the pod's service account).
	Kubeconfig string
	// Context is the kubeconfig context to use; empty means its current one.
	Context string
	// Namespace holds the state. Open defaults it to the pod's namespace
	// (InClusterNamespaceFile) when running in a cluster without Kubeconfig;
	// New requires it.
	Namespace string
	// RequestTimeout bounds each request to the API server, so that a write
	// fails with store.ErrUnavailable instead of hanging while the API server
	// is unreachable. Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// SyncTimeout bounds how long Open and New wait for the first list of
	// signing keys, revocations and grants. Default DefaultSyncTimeout.
	SyncTimeout time.Duration
}

// Store is a store.Store kept in Secrets and ConfigMaps of one namespace.
// Create one with Open, NewForConfig or New.
type Store struct {
	client    kubernetes.Interface
	namespace string
	host      string
	timeout   time.Duration

	keys        *itemCache[store.SigningKey]
	revocations *itemCache[store.Revocation]
	grants      *itemCache[store.Grant]

	// sessionLocks serialises this replica's updates of one session, so its
	// own goroutines never make each other retry on conflicts.
	sessionLocks keyedMutex

	synced []cache.InformerSynced
	// disconnected is set for an informer whose watch could not be
	// (re)established, until one is; see catchUp.
	keysDisconnected, configMapsDisconnected atomic.Bool
	wg                                       sync.WaitGroup
	stop                                     chan struct{}
	closed                                   atomic.Bool
	closeOnce                                sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the Kubernetes API (in-cluster, or with opts.Kubeconfig)
// and returns a store in opts.Namespace once its caches are filled.
func Open(ctx context.Context, opts Options) (*Store, error) {
	cfg, err := restConfig(opts)
	if err != nil {
		return nil, err
	}
	if opts.Namespace == "" {
		if opts.Kubeconfig != "" {
			return nil, errors.New("opening the kubernetes store: no namespace given; set store.kubernetes.namespace to the namespace Portcullis should keep its state in")
		}
		b, err := os.ReadFile(InClusterNamespaceFile)
		if err != nil {
			return nil, fmt.Errorf("opening the kubernetes store: no namespace given, and the pod's namespace is unknown (%w); set store.kubernetes.namespace", err)
		}
		opts.Namespace = strings.TrimSpace(string(b))
	}
	return NewForConfig(ctx, cfg, opts)
}

func restConfig(opts Options) (*rest.Config, error) {
	if opts.Kubeconfig == "" {
		if opts.Context != "" {
			return nil, errors.New("opening the kubernetes store: store.kubernetes.context is set but store.kubernetes.kubeconfig is not; a context only means something in a kubeconfig file")
		}
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("opening the kubernetes store: no kubeconfig given and not running in a pod (%w); set store.kubernetes.kubeconfig to run outside a cluster", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: opts.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: opts.Context},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("opening the kubernetes store: loading kubeconfig %s: %w", opts.Kubeconfig, err)
	}
	return cfg, nil
}

// NewForConfig returns a store using the API server cfg points at.
func NewForConfig(ctx context.Context, cfg *rest.Config, opts Options) (*Store, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "portcullis-store"
	}
	if cfg.QPS == 0 && cfg.Burst == 0 {
		// client-go's defaults (5/s, bursts of 10) would throttle logins (a
		// refresh is two requests). The API server's priority and fairness
		// protects it; this only stops a runaway loop.
		cfg.QPS, cfg.Burst = DefaultQPS, DefaultBurst
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the kubernetes store: %w", err)
	}
	return newStore(ctx, client, cfg.Host, opts)
}

// New returns a store using client (for tests, e.g. with a fake clientset).
func New(ctx context.Context, client kubernetes.Interface, opts Options) (*Store, error) {
	return newStore(ctx, client, "", opts)
}

func newStore(ctx context.Context, client kubernetes.Interface, host string, opts Options) (*Store, error) {
	if opts.Namespace == "" {
		return nil, errors.New("opening the kubernetes store: no namespace given; set store.kubernetes.namespace")
	}
	if errs := validation.IsDNS1123Label(opts.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("opening the kubernetes store: namespace %q is not a valid namespace name: %s", opts.Namespace, strings.Join(errs, "; "))
	}
	if host == "" {
		host = "(unknown host)"
	}
	s := &Store{
		client:      client,
		namespace:   opts.Namespace,
		host:        host,
		timeout:     opts.RequestTimeout,
		keys:        newItemCache[store.SigningKey](),
		revocations: newItemCache[store.Revocation](),
		grants:      newItemCache[store.Grant](),
		stop:        make(chan struct{}),
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	syncTimeout := opts.SyncTimeout
	if syncTimeout <= 0 {
		syncTimeout = DefaultSyncTimeout
	}

	// A quick list first: a missing permission or an unreachable API server
	// is then a clear error now, rather than an informer retrying in the
	// background until the sync timeout.
	if err := s.probe(ctx); err != nil {
		return nil, fmt.Errorf("opening the kubernetes store in namespace %s: %w", s.namespace, err)
	}

	secrets := s.secretInformer()
	configMaps := s.configMapInformer()
	regKeys, err := secrets.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onSecret(obj, false) },
		UpdateFunc: func(_, obj any) { s.onSecret(obj, false) },
		DeleteFunc: func(obj any) { s.onSecret(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	regCMs, err := configMaps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onConfigMap(obj, false) },
		UpdateFunc: func(_, obj any) { s.onConfigMap(obj, false) },
		DeleteFunc: func(obj any) { s.onConfigMap(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	s.synced = []cache.InformerSynced{regKeys.HasSynced, regCMs.HasSynced}
	for _, inf := range []cache.SharedIndexInformer{secrets, configMaps} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			inf.Run(s.stop)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.catchUp(catchUpPeriod)
	}()

	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), s.synced...) {
		_ = s.Close()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("opening the kubernetes store in namespace %s: waiting for its caches: %w", s.namespace, err)
		}
		return nil, fmt.Errorf("opening the kubernetes store in namespace %s: its caches did not fill within %v: %w",
			s.namespace, syncTimeout, &unavailableError{host: s.host, cause: syncCtx.Err()})
	}
	return s, nil
}

func selector(kinds ...kind) string {
	labels := make([]string, len(kinds))
	for i, k := range kinds {
		labels[i] = k.label
	}
	return fmt.Sprintf("%s=%s,%s in (%s)", LabelManagedBy, ManagedByValue, LabelKind, strings.Join(labels, ","))
}

func (s *Store) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	opts := metav1.ListOptions{LabelSelector: selector(kindSigningKey), Limit: 1}
	if _, err := s.client.CoreV1().Secrets(s.namespace).List(ctx, opts); err != nil {
		return fmt.Errorf("listing secrets: %w", s.apiError(ctx, err))
	}
	opts.LabelSelector = selector(kindRevocation, kindGrant)
	if _, err := s.client.CoreV1().ConfigMaps(s.namespace).List(ctx, opts); err != nil {
		return fmt.Errorf("listing configmaps: %w", s.apiError(ctx, err))
	}
	return nil
}

// Namespace returns the namespace the store keeps its state in.
func (s *Store) Namespace() string { return s.namespace }

// HasSynced reports whether the caches of signing keys, revocations and
// grants have been filled (which Open waits for) and the store is open. It
// stays true while the API server is unreachable: the caches keep serving
// what they hold.
func (s *Store) HasSynced() bool {
	if s.closed.Load() {
		return false
	}
	for _, synced := range s.synced {
		if !synced() {
			return false
		}
	}
	return true
}

// ReadyzCheck is a /readyz check that passes while HasSynced is true. It
// deliberately does not fail while the API server is unreachable: token
// verification keeps working from the caches then, and taking every replica
// out of its Service would stop that too.
func (s *Store) ReadyzCheck() healthz.HealthChecker {
	return healthz.NamedCheck("state-store", func(*http.Request) error {
		if s.closed.Load() {
			return errClosed
		}
		if !s.HasSynced() {
			return fmt.Errorf("the state store's caches (namespace %s) have not been filled yet", s.namespace)
		}
		return nil
	})
}

// Close stops the informers. Every later call fails; Close itself may be
// called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.wg.Wait()
		s.keys.reset()
		s.revocations.reset()
		s.grants.reset()
	})
	return nil
}

// begin is the check every method starts with.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// objectOf unwraps the object of an informer event.
func objectOf(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (s *Store) onSecret(obj any, deleted bool) {
	sec, ok := objectOf(obj).(*corev1.Secret)
	if !ok || sec.Labels[LabelKind] != kindSigningKey.label {
		return
	}
	apply(s, s.keys, kindSigningKey, sec, sec.Data[kindSigningKey.dataKey], deleted, func(k store.SigningKey) string { return k.ID })
}

func (s *Store) onConfigMap(obj any, deleted bool) {
	cm, ok := objectOf(obj).(*corev1.ConfigMap)
	if !ok {
		return
	}
	switch cm.Labels[LabelKind] {
	case kindRevocation.label:
		apply(s, s.revocations, kindRevocation, cm, []byte(cm.Data[kindRevocation.dataKey]), deleted, func(r store.Revocation) string { return r.ID })
	case kindGrant.label:
		apply(s, s.grants, kindGrant, cm, []byte(cm.Data[kindGrant.dataKey]), deleted, func(g store.Grant) string { return g.ID })
	}
}

// apply feeds one informer event into c. An object that does not decode is
// logged (by name: its content may be secret) and left out of the cache.
func apply[T any](s *Store, c *itemCache[T], k kind, obj metav1.Object, payload []byte, deleted bool, idOf func(T) string) {
	if deleted {
		id, err := idFromName(k, obj.GetName())
		if err != nil {
			return // never cached
		}
		c.deleted(id, obj.GetResourceVersion())
		return
	}
	item, err := decode(k, obj, payload, idOf)
	if err != nil {
		klog.ErrorS(err, "Ignoring an object of the state store that Portcullis cannot use; fix or delete it", "namespace", s.namespace, "name", obj.GetName())
		return
	}
	c.put(idOf(item), item, obj.GetResourceVersion())
}

// decode reads the item an object holds and checks it is where it belongs.
// Its errors never quote the payload, which may hold secrets.
func decode[T any](k kind, obj metav1.Object, payload []byte, idOf func(T) string) (T, error) {
	var item T
	if obj.GetLabels()[LabelManagedBy] != ManagedByValue || obj.GetLabels()[LabelKind] != k.label {
		return item, fmt.Errorf("object %s/%s is not a Portcullis %s (it lacks the labels %s=%s and %s=%s); Portcullis did not create it: rename or delete it",
			obj.GetNamespace(), obj.GetName(), k.what, LabelManagedBy, ManagedByValue, LabelKind, k.label)
	}
	if len(payload) == 0 {
		return item, fmt.Errorf("%s object %s/%s has no %q data; restore it from a backup or delete it", k.what, obj.GetNamespace(), obj.GetName(), k.dataKey)
	}
	if err := json.Unmarshal(payload, &item); err != nil {
		return item, fmt.Errorf("%s object %s/%s does not decode (%w); restore it from a backup or delete it", k.what, obj.GetNamespace(), obj.GetName(), err)
	}
	if name, err := objectName(k, idOf(item)); err != nil || name != obj.GetName() {
		return item, fmt.Errorf("%s object %s/%s holds an item with another ID; it was edited by hand: restore it from a backup or delete it", k.what, obj.GetNamespace(), obj.GetName())
	}
	return item, nil
}

// keyedMutex is a set of mutexes, one per key in use.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	refs int
}

// lock locks key and returns its unlock function. It gives up, with ctx's
// error, when ctx ends first.
func (m *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*keyedLock{}
	}
	l := m.locks[key]
	if l == nil {
		l = &keyedLock{}
		m.locks[key] = l
	}
	l.refs++
	m.mu.Unlock()
	release := func() {
		m.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(m.locks, key)
		}
		m.mu.Unlock()
	}
	if !l.TryLock() {
		got := make(chan struct{})
		go func() { l.Lock(); close(got) }()
		select {
		case <-got:
		case <-ctx.Done():
			go func() { <-got; l.Unlock(); release() }()
			return nil, ctx.Err()
		}
	}
	return func() { l.Unlock(); release() }, nil
}

// Client returns the client the store talks to its API server with, for the
// parts of Portcullis that keep state beside the store in the same namespace
// (logins in progress, the chores Lease).
func (s *Store) Client() kubernetes.Interface { return s.client }

// Unavailable wraps err as store.ErrUnavailable, naming this store's API
// server, when it means the API server could not be reached or could not
// serve; other errors are returned as they are.
func (s *Store) Unavailable(err error) error {
	if err != nil && unavailable(err) {
		return &unavailableError{host: s.host, cause: err}
	}
	return err
}
