package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
)

// captureLogs sends klog's output to the returned function's result.
func captureLogs(t *testing.T) func() string {
	var mu sync.Mutex
	var b strings.Builder
	klog.SetLogger(funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(&b, prefix, args)
	}, funcr.Options{}))
	t.Cleanup(klog.ClearLogger)
	return func() string {
		klog.Flush()
		mu.Lock()
		defer mu.Unlock()
		return b.String()
	}
}

func TestHolderSwapsPolicies(t *testing.T) {
	logs := captureLogs(t)
	var h Holder
	if h.Load() != nil {
		t.Fatal("the zero Holder holds a policy")
	}
	alice := &identity.Identity{Username: "alice@example.com"}

	h.Store(New(testConfig()))
	if !h.Load().admit("prod", alice).Allowed {
		t.Fatal("alice is not admitted to prod")
	}
	first := logs()
	if !strings.Contains(first, "Access policy loaded") || !strings.Contains(first, "prod: 1 users, 1 groups, 1 email domains") {
		t.Fatalf("logs %s", first)
	}

	cfg := testConfig()
	cfg.Clusters = append(cfg.Clusters[:1], v1alpha1.Cluster{Name: "prod", Access: v1alpha1.AccessPolicy{Groups: []string{"sre"}}}, v1alpha1.Cluster{Name: "staging"})
	h.Store(New(cfg))
	if h.Load().admit("prod", alice).Allowed {
		t.Fatal("the new policy is not used")
	}
	second := strings.TrimPrefix(logs(), first)
	for _, want := range []string{"Access policy changed", `"added"=["staging"]`, `"removed"=["locked"]`, `"changed"=["prod"]`} {
		if !strings.Contains(second, want) {
			t.Fatalf("logs do not say %s: %s", want, second)
		}
	}
	for _, secret := range []string{"alice@example.com", "sre", "example.com"} {
		if strings.Contains(first+second, secret) {
			t.Fatalf("logs name policy members (%s): %s", secret, first+second)
		}
	}
}

func TestHolderIsSafeForConcurrentUse(t *testing.T) {
	captureLogs(t)
	h := NewHolder(New(testConfig()))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				h.Store(New(testConfig()))
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				if d := h.Load().admit("dev", &identity.Identity{Username: fmt.Sprint("user", i)}); !d.Allowed {
					t.Errorf("denied: %+v", d)
					return
				}
			}
		}()
	}
	wg.Wait()
}
