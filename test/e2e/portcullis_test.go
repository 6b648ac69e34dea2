package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

func TestPortcullis_StartsWithExampleConfigAndBecomesReady(t *testing.T) {
	t.Parallel()
	port := framework.FreePort(t)
	config := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
`, port, filepath.Join(framework.WorkDir(t), "state.db"))

	srv := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: config, Port: port})

	// The readiness wait does not verify TLS; this check does, against the
	// self-signed certificate the server wrote into --cert-dir.
	checkReady := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/readyz", nil)
		resp, err := srv.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("GET /readyz trusting %s: %v", srv.CACertFile(), err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /readyz: %s: %s", resp.Status, body)
		}
	}
	checkReady()

	// The state survives a restart on the same port and store.
	srv.Restart()
	checkReady()
}
