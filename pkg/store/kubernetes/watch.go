package kubernetes

import (
	"context"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/store"
)

// catchUpPeriod is how often a cache whose watch is down is refreshed by a
// list.
const catchUpPeriod = 2 * time.Second

// Why not just informers: when its watch cannot be re-established (the API
// server is down), client-go's reflector retries with a backoff that grows to
// 30 s, jittered to up to a minute, and informers do not let that be changed.
// After an outage a replica would then miss revocations made elsewhere for up
// to a minute after the API server came back. So the informers' watch calls
// are observed: while an informer's last watch attempt failed, catchUp lists
// its objects every catchUpPeriod and applies the list (which fails
// harmlessly while the API server is still down), until the informer's watch
// is back.

// secretInformer watches the Secrets holding signing keys.
func (s *Store) secretInformer() cache.SharedIndexInformer {
	list, watchFn := selected(s.client.CoreV1().Secrets(s.namespace), selector(kindSigningKey))
	return s.informer(&corev1.Secret{}, &s.keysDisconnected, list, watchFn)
}

// configMapInformer watches the ConfigMaps holding revocations and grants.
func (s *Store) configMapInformer() cache.SharedIndexInformer {
	list, watchFn := selected(s.client.CoreV1().ConfigMaps(s.namespace), selector(kindRevocation, kindGrant))
	return s.informer(&corev1.ConfigMap{}, &s.configMapsDisconnected, list, watchFn)
}

// listWatcher is a typed client's List and Watch.
type listWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// selected returns c's list and watch restricted to the label selector sel.
func selected[L runtime.Object](c listWatcher[L], sel string) (cache.ListWithContextFunc, cache.WatchFuncWithContext) {
	return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = sel
			return c.List(ctx, opts)
		}, func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = sel
			return c.Watch(ctx, opts)
		}
}

func (s *Store) informer(example runtime.Object, disconnected *atomic.Bool, list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: list,
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, opts)
			disconnected.Store(err != nil)
			return w, err
		},
	}
	// As the generated informers do: streaming lists where the client
	// supports them (a fake clientset does not).
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, s.client), example, cache.SharedIndexInformerOptions{})
	_ = inf.SetTransform(func(obj any) (any, error) {
		// Only data, labels, name and version are used.
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	})
	return inf
}

// catchUp refreshes, every period, the caches whose watch is down.
func (s *Store) catchUp(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		if s.keysDisconnected.Load() {
			if err := s.relistSecrets(ctx); err != nil {
				klog.V(2).InfoS("State store: listing signing keys while their watch is down failed", "namespace", s.namespace, "err", err)
			}
		}
		if s.configMapsDisconnected.Load() {
			if err := s.relistConfigMaps(ctx); err != nil {
				klog.V(2).InfoS("State store: listing revocations and grants while their watch is down failed", "namespace", s.namespace, "err", err)
			}
		}
		cancel()
	}
}

func (s *Store) relistSecrets(ctx context.Context) error {
	list, err := s.client.CoreV1().Secrets(s.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector(kindSigningKey)})
	if err != nil {
		return err
	}
	var keys []versioned[store.SigningKey]
	for i := range list.Items {
		obj := &list.Items[i]
		if k, err := decode(kindSigningKey, obj, obj.Data[kindSigningKey.dataKey], keyID); err == nil {
			keys = append(keys, versioned[store.SigningKey]{k.ID, k, obj.ResourceVersion})
		}
	}
	s.keys.replace(keys, list.ResourceVersion)
	return nil
}

func (s *Store) relistConfigMaps(ctx context.Context) error {
	list, err := s.client.CoreV1().ConfigMaps(s.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector(kindRevocation, kindGrant)})
	if err != nil {
		return err
	}
	var revs []versioned[store.Revocation]
	var grants []versioned[store.Grant]
	for i := range list.Items {
		obj := &list.Items[i]
		switch obj.Labels[LabelKind] {
		case kindRevocation.label:
			if r, err := decode(kindRevocation, obj, []byte(obj.Data[kindRevocation.dataKey]), revID); err == nil {
				revs = append(revs, versioned[store.Revocation]{r.ID, r, obj.ResourceVersion})
			}
		case kindGrant.label:
			if g, err := decode(kindGrant, obj, []byte(obj.Data[kindGrant.dataKey]), grantID); err == nil {
				grants = append(grants, versioned[store.Grant]{g.ID, g, obj.ResourceVersion})
			}
		}
	}
	s.revocations.replace(revs, list.ResourceVersion)
	s.grants.replace(grants, list.ResourceVersion)
	return nil
}
