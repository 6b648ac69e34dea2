package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"portcullis.dev/portcullis/test/e2e/framework"
)

func TestControlPlane_KubectlTalksToAPIServerWithAdminToken(t *testing.T) {
	t.Parallel()
	api := framework.StartAPIServer(t, framework.APIServerOptions{})

	out, stderr, err := framework.Kubectl(t, api.AdminKubeconfig(), "get", "namespaces", "-o", "name")
	if err != nil {
		t.Fatalf("kubectl get namespaces: %v\nstderr: %s", err, stderr)
	}
	if !slices.Contains(strings.Fields(out), "namespace/default") {
		t.Errorf("kubectl get namespaces = %q, want it to list namespace/default", out)
	}

	out, stderr, err = framework.Kubectl(t, api.AdminKubeconfig(), "auth", "whoami", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl auth whoami: %v\nstderr: %s", err, stderr)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &review); err != nil {
		t.Fatalf("decoding kubectl auth whoami output %q: %v", out, err)
	}
	if got := review.Status.UserInfo.Username; got != "admin" {
		t.Errorf("kubectl auth whoami: username = %q, want admin", got)
	}
	if got := review.Status.UserInfo.Groups; !slices.Contains(got, "system:masters") {
		t.Errorf("kubectl auth whoami: groups = %q, want system:masters among them", got)
	}

	// A token kube-apiserver does not know must be refused (401).
	_, stderr, err = framework.Kubectl(t, api.KubeconfigFor("not-a-known-token"), "get", "namespaces")
	if err == nil || !strings.Contains(stderr, "You must be logged in to the server") {
		t.Errorf("kubectl with an unknown token: err = %v, stderr = %q; want failure with 'You must be logged in to the server'", err, stderr)
	}
	cs, err := kubernetes.NewForConfig(api.RESTConfig("not-a-known-token"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("listing namespaces with an unknown token: err = %v, want 401 Unauthorized", err)
	}
}
