package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
	kstore "portcullis.dev/portcullis/pkg/store/kubernetes"
	"portcullis.dev/portcullis/pkg/store/storetest"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// storeNamespaces makes namespaces for kubernetes stores on one API server,
// each with a service account bound to exactly the Role that
// docs/configuration.md tells operators to create, so the tests also prove
// that Role is enough.
type storeNamespaces struct {
	api *framework.APIServer
	mu  sync.Mutex
	n   int
	cfg map[string]*rest.Config
}

// storeRole returns the rules of the Role in
// artifacts/rbac/state-store/role.yaml, which docs/configuration.md gives
// operators.
func storeRole(t testing.TB) []rbacv1.PolicyRule {
	t.Helper()
	path := filepath.Join(framework.RepoRoot(t), "artifacts", "rbac", "state-store", "role.yaml")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var role rbacv1.Role
		if err := dec.Decode(&role); err != nil {
			t.Fatalf("no Role in %s: %v", path, err)
		}
		if role.Kind == "Role" {
			return role.Rules
		}
	}
}

func (sn *storeNamespaces) new(t testing.TB) string {
	t.Helper()
	sn.mu.Lock()
	sn.n++
	ns := fmt.Sprintf("state-%d", sn.n)
	sn.mu.Unlock()
	cs := sn.api.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "portcullis"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "portcullis-state"}, Rules: storeRole(t)}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "portcullis-state"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "portcullis-state"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "portcullis", Namespace: ns}},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("preparing namespace %s: %v", ns, err)
		}
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "portcullis", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for the service account in %s: %v", ns, err)
	}
	cfg := sn.api.RESTConfig(tr.Status.Token)
	cfg.Timeout = 0 // the store bounds each request itself; this would end watches
	// kube-apiserver's RBAC authorizer learns of the new binding through
	// its own informers: wait until it does, or the first store opened
	// here may be refused.
	scs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errS := scs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{Limit: 1})
		_, errC := scs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if errS == nil && errC == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Role bound in %s does not take effect: %v, %v", ns, errS, errC)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sn.mu.Lock()
	if sn.cfg == nil {
		sn.cfg = map[string]*rest.Config{}
	}
	sn.cfg[ns] = cfg
	sn.mu.Unlock()
	return ns
}

func (sn *storeNamespaces) open(t testing.TB, ns string) (*kstore.Store, error) {
	sn.mu.Lock()
	cfg := sn.cfg[ns]
	sn.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return kstore.NewForConfig(ctx, cfg, kstore.Options{Namespace: ns, RequestTimeout: 5 * time.Second})
}

func (sn *storeNamespaces) mustOpen(t testing.TB, ns string) *kstore.Store {
	t.Helper()
	s, err := sn.open(t, ns)
	if err != nil {
		t.Fatalf("opening a kubernetes store in %s: %v", ns, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// noRightsToken authenticates a user RBAC grants nothing.
const noRightsToken = "no-rights-0123456789"

func TestKubernetesStore(t *testing.T) {
	t.Parallel()
	api := framework.StartAPIServer(t, framework.APIServerOptions{
		Tokens: []framework.StaticToken{{Token: noRightsToken, User: "nobody", UID: "nobody"}},
	})
	sn := &storeNamespaces{api: api}
	ctx := context.Background()

	t.Run("Open with a kubeconfig file", func(t *testing.T) {
		ns := sn.new(t)
		sn.mu.Lock()
		token := sn.cfg[ns].BearerToken
		sn.mu.Unlock()
		s, err := kstore.Open(ctx, kstore.Options{Kubeconfig: api.KubeconfigFor(token), Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Revoke(ctx, store.Revocation{ID: "jti-1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		cms, err := api.Clientset().CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=portcullis,portcullis.dev/kind=revocation"})
		if err != nil || len(cms.Items) != 1 || cms.Items[0].Annotations["portcullis.dev/id"] != "jti-1" {
			t.Fatalf("the revocation's ConfigMap: %+v, %v", cms, err)
		}
		t.Logf("revocation jti-1 is ConfigMap %s/%s", ns, cms.Items[0].Name)
	})

	t.Run("Open without the rights says which are needed", func(t *testing.T) {
		ns := sn.new(t)
		_, err := kstore.NewForConfig(ctx, api.RESTConfig(noRightsToken), kstore.Options{Namespace: ns})
		if err == nil {
			t.Fatal("Open succeeded for a user with no rights")
		}
		t.Logf("Open failed with: %v", err)
		for _, want := range []string{"forbidden", "get, list, watch, create, update and delete on secrets and configmaps in namespace " + ns} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q", want)
			}
		}
	})

	t.Run("conformance", func(t *testing.T) {
		start := time.Now()
		storetest.RunConformance(t, func(t *testing.T) store.Store {
			s, err := sn.open(t, sn.new(t))
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
		t.Logf("the conformance suite took %v against a real kube-apiserver", time.Since(start).Round(time.Millisecond))
	})

	t.Run("reopen", func(t *testing.T) {
		storetest.RunReopen(t, func(t *testing.T) string { return sn.new(t) }, func(t *testing.T, ns string) (store.Store, error) {
			s, err := sn.open(t, ns)
			if err != nil {
				return nil, err
			}
			return s, nil
		})
	})

	t.Run("a revocation made through one store is seen by another within a second", func(t *testing.T) {
		ns := sn.new(t)
		a, b := sn.mustOpen(t, ns), sn.mustOpen(t, ns)
		const n = 50
		var lat []time.Duration
		for i := range n {
			id := fmt.Sprintf("jti-%d", i)
			start := time.Now()
			if err := a.Revoke(ctx, store.Revocation{ID: id, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			for {
				revoked, err := b.IsRevoked(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if revoked {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("store B did not see revocation %s within 1s of store A's Revoke", id)
				}
				time.Sleep(200 * time.Microsecond)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		t.Logf("Revoke on A until IsRevoked on B (including A's write), %d revocations: p50 %v, p90 %v, p99 %v, max %v",
			n, lat[n/2].Round(time.Microsecond), lat[n*9/10].Round(time.Microsecond), lat[n*99/100].Round(time.Microsecond), lat[n-1].Round(time.Microsecond))

		// And signing keys and grants, the other cached kinds.
		if err := a.CreateSigningKey(ctx, store.SigningKey{ID: "key-1", Algorithm: "ES256", PrivateKeyPEM: []byte("fake"), ExpireAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateGrant(ctx, store.Grant{ID: "grant-1", Username: "bob", Cluster: "c", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "store B lists A's signing key and grant", func() bool {
			keys, _ := b.ListSigningKeys(ctx)
			grants, _ := b.ListGrants(ctx)
			return len(keys) == 1 && len(grants) == 1
		})
		if err := b.DeleteGrant(ctx, "grant-1"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "store A no longer lists the grant B deleted", func() bool {
			grants, _ := a.ListGrants(ctx)
			return len(grants) == 0
		})
	})

	t.Run("concurrent updates of one session through two stores lose nothing", func(t *testing.T) {
		ns := sn.new(t)
		a, b := sn.mustOpen(t, ns), sn.mustOpen(t, ns)
		sess := store.Session{ID: "sess-shared", Username: "alice", RefreshTokenHash: []byte{1}, ExpiresAt: time.Now().Add(time.Hour), Extra: map[string][]string{"counter": {"0"}}}
		if err := a.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		const perStore, goroutines = 50, 5
		start := time.Now()
		var wg sync.WaitGroup
		for _, s := range []*kstore.Store{a, b} {
			for range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range perStore / goroutines {
						_, err := s.UpdateSession(ctx, sess.ID, func(cur *store.Session) error {
							n, err := strconv.Atoi(cur.Extra["counter"][0])
							if err != nil {
								return err
							}
							cur.Extra["counter"] = []string{strconv.Itoa(n + 1)}
							return nil
						})
						if err != nil {
							t.Errorf("UpdateSession: %v", err)
						}
					}
				}()
			}
		}
		wg.Wait()
		got, err := b.GetSession(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c := got.Extra["counter"]; len(c) != 1 || c[0] != strconv.Itoa(2*perStore) {
			t.Errorf("counter = %v after 2×%d increments, want %d: updates were lost", c, perStore, 2*perStore)
		}
		t.Logf("2×%d increments from %d goroutines per store took %v", perStore, goroutines, time.Since(start).Round(time.Millisecond))
	})

	t.Run("Copy moves a bolt store into a kubernetes store, and again without change", func(t *testing.T) {
		src, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		exp := time.Now().Add(time.Hour)
		for i := range 20 {
			id := fmt.Sprintf("sess-%02d", i)
			if err := src.CreateSession(ctx, store.Session{ID: id, Username: "alice", UpstreamRefreshToken: "up-" + id, RefreshTokenHash: []byte{byte(i)}, ExpiresAt: exp}); err != nil {
				t.Fatal(err)
			}
		}
		for _, err := range []error{
			src.CreateSigningKey(ctx, store.SigningKey{ID: "key-1", Algorithm: "ES256", PrivateKeyPEM: []byte("fake"), ExpireAt: exp}),
			src.Revoke(ctx, store.Revocation{ID: "jti-1", ExpiresAt: exp}),
			src.CreateGrant(ctx, store.Grant{ID: "grant-1", Username: "bob", Cluster: "c", ExpiresAt: exp}),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		dst := sn.mustOpen(t, sn.new(t))
		st, err := store.Copy(ctx, src, dst)
		if err != nil {
			t.Fatal(err)
		}
		want := store.CopyStats{SigningKeys: store.CopyCounts{Copied: 1}, Revocations: store.CopyCounts{Copied: 1}, Grants: store.CopyCounts{Copied: 1}, Sessions: store.CopyCounts{Copied: 20}}
		if st != want {
			t.Errorf("Copy: %v, want %v", st, want)
		}
		if st, err = store.Copy(ctx, src, dst); err != nil {
			t.Fatal(err)
		}
		want = store.CopyStats{SigningKeys: store.CopyCounts{Existing: 1}, Revocations: store.CopyCounts{Existing: 1}, Grants: store.CopyCounts{Existing: 1}, Sessions: store.CopyCounts{Existing: 20}}
		if st != want {
			t.Errorf("second Copy: %v, want %v", st, want)
		}
		got, err := dst.GetSession(ctx, "sess-07")
		if err != nil || got.UpstreamRefreshToken != "up-sess-07" {
			t.Errorf("copied session: %+v, %v", got, err)
		}
		if revoked, _ := dst.IsRevoked(ctx, "jti-1"); !revoked {
			t.Error("the copied revocation does not revoke")
		}
	})

	// Last: it stops the API server.
	t.Run("while the API server is down, cached reads keep working and writes fail fast with ErrUnavailable", func(t *testing.T) {
		ns := sn.new(t)
		s, other := sn.mustOpen(t, ns), sn.mustOpen(t, ns)
		exp := time.Now().Add(time.Hour)
		if err := s.CreateSigningKey(ctx, store.SigningKey{ID: "key-1", Algorithm: "ES256", PrivateKeyPEM: []byte("fake"), ExpireAt: exp}); err != nil {
			t.Fatal(err)
		}
		if err := s.Revoke(ctx, store.Revocation{ID: "jti-before", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateGrant(ctx, store.Grant{ID: "grant-1", Username: "bob", Cluster: "c", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}

		if err := api.Process.Stop(); err != nil {
			t.Logf("stopping kube-apiserver: %v", err)
		}
		for range 3 {
			revoked, err := s.IsRevoked(ctx, "sess-x", "jti-before")
			if err != nil || !revoked {
				t.Fatalf("IsRevoked with the API server down = %v, %v; want true, nil", revoked, err)
			}
			keys, err := s.ListSigningKeys(ctx)
			if err != nil || len(keys) != 1 || keys[0].ID != "key-1" {
				t.Fatalf("ListSigningKeys with the API server down = %v, %v; want key-1", keys, err)
			}
			grants, err := s.ListGrants(ctx)
			if err != nil || len(grants) != 1 {
				t.Fatalf("ListGrants with the API server down = %v, %v; want grant-1", grants, err)
			}
			if !s.HasSynced() {
				t.Fatal("HasSynced is false while the API server is down; the caches still serve, so readiness must not flip")
			}
			start := time.Now()
			err = s.CreateSession(ctx, store.Session{ID: "sess-during", Username: "alice", ExpiresAt: exp})
			took := time.Since(start)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("CreateSession with the API server down = %v, want an error wrapping ErrUnavailable", err)
			}
			if took > 2*time.Second {
				t.Errorf("CreateSession with the API server down took %v to fail", took)
			}
			t.Logf("CreateSession failed after %v: %v", took.Round(time.Microsecond), err)
			time.Sleep(time.Second)
		}

		if err := api.Process.Restart(); err != nil {
			t.Fatalf("restarting kube-apiserver: %v", err)
		}
		restarted := time.Now()
		waitFor(t, 120*time.Second, "CreateSession works again through the same store", func() bool {
			return s.CreateSession(ctx, store.Session{ID: "sess-after", Username: "alice", ExpiresAt: exp}) == nil
		})
		t.Logf("writes worked again %v after the restart began", time.Since(restarted).Round(time.Millisecond))
		if _, err := s.GetSession(ctx, "sess-after"); err != nil {
			t.Fatal(err)
		}
		// The watch reconnects: a revocation made elsewhere arrives.
		if err := other.Revoke(ctx, store.Revocation{ID: "jti-after", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		// Not the informer's backoff (up to a minute): the store lists what
		// it watches every 2 s while the watch is down.
		waitFor(t, 10*time.Second, "the first store sees a revocation made through another after the restart", func() bool {
			revoked, _ := s.IsRevoked(ctx, "jti-after")
			return revoked
		})
		t.Logf("caches caught up %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	})
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkKubernetesStore measures round trips of session writes against a
// real kube-apiserver and etcd on loopback.
func BenchmarkKubernetesStore(b *testing.B) {
	api := framework.StartAPIServer(b, framework.APIServerOptions{})
	sn := &storeNamespaces{api: api}
	ns := sn.new(b)
	sn.cfg[ns].QPS = -1 // no client-side rate limit: measure the round trips
	s := sn.mustOpen(b, ns)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	b.Run("CreateSession", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if err := s.CreateSession(ctx, store.Session{ID: fmt.Sprintf("bench-%d", i), Username: "alice", RefreshTokenHash: make([]byte, 32), ExpiresAt: exp}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("UpdateSession", func(b *testing.B) {
		if err := s.CreateSession(ctx, store.Session{ID: "bench-update", Username: "alice", RefreshTokenHash: make([]byte, 32), ExpiresAt: exp}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.UpdateSession(ctx, "bench-update", func(cur *store.Session) error {
				cur.LastUsedAt = time.Now()
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetSession", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.GetSession(ctx, "bench-update"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Revoke", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if err := s.Revoke(ctx, store.Revocation{ID: fmt.Sprintf("bench-jti-%d", i), ExpiresAt: exp}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
