package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// standaloneConfig is one cluster, c1, that admits only alice and the devs
// group, on the embedded store in dir.
func standaloneConfig(port int, dir, clientCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
clusters:
- name: c1
  access:
    users: [alice]
    groups: [devs]
webhook:
  clientCAFile: %s
`, port, filepath.Join(dir, "state.db"), clientCA)
}

// mintOffline mints tokens from the store of cfgYAML before a server holds it.
func mintOffline(t *testing.T, cfgYAML string, claims ...token.Claims) []string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mint-config.yaml")
	must(t, os.WriteFile(path, []byte(cfgYAML), 0o600))
	cfg, err := config.Load(path)
	must(t, err)
	st, err := server.OpenStore(ctx, cfg)
	must(t, err)
	defer st.Close()
	km, err := server.NewKeys(ctx, cfg, st, nil)
	must(t, err)
	minter, err := token.NewMinter(km, cfg.IssuerURL, nil)
	must(t, err)
	var out []string
	for _, c := range claims {
		raw, _, err := minter.Mint(ctx, c)
		must(t, err)
		out = append(out, raw)
	}
	return out
}

// Issue 13, findings 4 and 8: a user the central policy refuses is refused on
// every path of Portcullis's own API, even in system:masters (which the
// delegated authorizer always allows); /metrics answers only an authorized
// scraper.
func TestPolicyRefusalHoldsOnEveryPathAndMetricsNeedAuthorization(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	port := framework.FreePort(t)
	dir := t.TempDir()
	cfg := standaloneConfig(port, dir, pki.ClientCA.CertFile)
	exp := time.Now().Add(30 * time.Minute)
	toks := mintOffline(t, cfg,
		token.Claims{Subject: "mallory", Username: "mallory", Groups: []string{"system:masters"}, Audience: []string{"c1"}, Expiry: exp},
		token.Claims{Subject: "root", Username: "root", Groups: []string{"system:masters", "devs"}, Audience: []string{"c1"}, Expiry: exp},
	)
	mallory, root := toks[0], toks[1]
	p := framework.StartPortcullis(t, framework.PortcullisOptions{ConfigYAML: cfg, Port: port})
	hc := p.HTTPClient()
	defer hc.CloseIdleConnections()

	requests := []struct{ method, path, body string }{
		{http.MethodGet, aggAPIGroup + "/sessions", ""},
		{http.MethodPost, aggAPIGroup + "/whoamirequests", `{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"WhoAmIRequest"}`},
		{http.MethodPost, aggAPIGroup + "/tokencredentialrequests", tcrJSONBody("c1", root)},
		{http.MethodGet, "/metrics", ""},
		{http.MethodGet, "/apis", ""},
	}
	for _, r := range requests {
		t.Run(fmt.Sprintf("%s %s is refused to a system:masters user the policy does not admit", r.method, r.path), func(t *testing.T) {
			res := post(t, hc, r.method, p.URL+r.path, mallory, []byte(r.body), nil)
			if res.code != http.StatusForbidden || !strings.Contains(string(res.body), "not admitted to cluster c1") {
				t.Fatalf("%s %s as mallory: %d %s", r.method, r.path, res.code, res.body)
			}
		})
	}
	t.Run("an admitted system:masters user still lists sessions", func(t *testing.T) {
		res := post(t, hc, http.MethodGet, p.URL+aggAPIGroup+"/sessions", root, nil, nil)
		if res.code != http.StatusOK {
			t.Fatalf("GET sessions as root: %d %s", res.code, res.body)
		}
	})

	t.Run("an anonymous client may not read /metrics", func(t *testing.T) {
		res := post(t, hc, http.MethodGet, p.URL+"/metrics", "", nil, nil)
		if res.code != http.StatusForbidden || strings.Contains(string(res.body), "go_goroutines") {
			t.Fatalf("anonymous GET /metrics: %d %.200s", res.code, res.body)
		}
	})
	t.Run("a client certificate of another group may not read /metrics", func(t *testing.T) {
		kp := pki.IssueClient("someone", "qa")
		cert, err := kp.TLSCertificate()
		must(t, err)
		c := p.HTTPClient()
		c.Transport.(*http.Transport).TLSClientConfig.Certificates = append(c.Transport.(*http.Transport).TLSClientConfig.Certificates, cert)
		defer c.CloseIdleConnections()
		if res := post(t, c, http.MethodGet, p.URL+"/metrics", "", nil, nil); res.code != http.StatusForbidden {
			t.Fatalf("GET /metrics as group qa: %d %.200s", res.code, res.body)
		}
	})
	t.Run("a system:monitoring client certificate reads /metrics", func(t *testing.T) {
		if body := scrapeMetrics(t, p, pki); !strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("no go_goroutines in /metrics: %.300s", body)
		}
	})
	t.Run("probes stay open", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/livez"} {
			if res := post(t, hc, http.MethodGet, p.URL+path, "", nil, nil); res.code != http.StatusOK {
				t.Errorf("anonymous GET %s: %d %s", path, res.code, res.body)
			}
		}
	})
}
