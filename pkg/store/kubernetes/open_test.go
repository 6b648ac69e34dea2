package kubernetes

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

func TestOpenSaysWhatIsMissing(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"a kubeconfig without a namespace", Options{Kubeconfig: kubeconfig}, "set store.kubernetes.namespace"},
		{"a context without a kubeconfig", Options{Context: "prod", Namespace: "x"}, "store.kubernetes.context is set but store.kubernetes.kubeconfig is not"},
		{"a kubeconfig that does not exist", Options{Kubeconfig: filepath.Join(t.TempDir(), "nope"), Namespace: "x"}, "loading kubeconfig"},
		{"a context the kubeconfig lacks", Options{Kubeconfig: kubeconfig, Context: "other", Namespace: "x"}, "other"},
		{"an invalid namespace", Options{Kubeconfig: kubeconfig, Namespace: "Not_A_Namespace"}, "not a valid namespace name"},
		{"an unreachable API server", Options{Kubeconfig: kubeconfig, Namespace: "x"}, "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.opts)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v; want it to say %q", err, tc.want)
			}
		})
	}
}

func TestReadinessFollowsTheCachesAndClose(t *testing.T) {
	s, err := New(context.Background(), fake.NewClientset(), Options{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	check := s.ReadyzCheck()
	if !s.HasSynced() || check.Check(nil) != nil {
		t.Errorf("a store New returned is not ready: HasSynced %v, check %v", s.HasSynced(), check.Check(nil))
	}
	if check.Name() != "state-store" {
		t.Errorf("check name = %q", check.Name())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.HasSynced() || check.Check(nil) == nil {
		t.Error("a closed store is still ready")
	}
}
