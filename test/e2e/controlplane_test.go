package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

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

	// A token kube-apiserver does not know must be refused.
	_, stderr, err = framework.Kubectl(t, api.KubeconfigFor("not-a-known-token"), "get", "namespaces")
	if err == nil || !strings.Contains(stderr, "Unauthorized") {
		t.Errorf("kubectl with an unknown token: err = %v, stderr = %q; want failure with Unauthorized", err, stderr)
	}
}
