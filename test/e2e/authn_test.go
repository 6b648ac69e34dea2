package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// webhookCalls counts TokenReviews per token.
type webhookCalls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *webhookCalls) add(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[token]++
}

func (c *webhookCalls) get(token string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[token]
}

// tokenReviewWebhook is a minimal TokenReview webhook: "alice-token" is
// alice in group devs, anything else is rejected.
func tokenReviewWebhook(t *testing.T, pki *framework.PKI, calls *webhookCalls) *httptest.Server {
	kp := pki.IssueServing("127.0.0.1")
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review authnv1.TokenReview
		if r.URL.Path != "/authenticate" || json.NewDecoder(r.Body).Decode(&review) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		calls.add(review.Spec.Token)
		if review.APIVersion != "authentication.k8s.io/v1" {
			t.Errorf("webhook got a TokenReview %s, want authentication.k8s.io/v1", review.APIVersion)
		}
		review.Status = authnv1.TokenReviewStatus{}
		if review.Spec.Token == "alice-token" {
			review.Status.Authenticated = true
			review.Status.User = authnv1.UserInfo{Username: "alice", UID: "alice-uid", Groups: []string{"devs"}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

type whoami struct {
	Status struct {
		UserInfo struct {
			Username string   `json:"username"`
			Groups   []string `json:"groups"`
		} `json:"userInfo"`
	} `json:"status"`
}

func kubectlWhoami(t *testing.T, kubeconfig string) (whoami, error) {
	t.Helper()
	out, stderr, err := framework.Kubectl(t, kubeconfig, "auth", "whoami", "-o", "json")
	var w whoami
	if err != nil {
		return w, fmt.Errorf("%w: %s", err, stderr)
	}
	return w, json.Unmarshal([]byte(out), &w)
}

// TestControlPlane_TokenWebhookOIDCAndAudit exercises the framework's
// kube-apiserver options together: a v1 TokenReview webhook without cache,
// structured authentication configuration trusting Dex, and an audit log.
func TestControlPlane_TokenWebhookOIDCAndAudit(t *testing.T) {
	t.Parallel()
	pki := framework.NewPKI(t)
	dex := framework.StartDex(t, framework.DexOptions{PKI: pki, PasswordGrant: true})
	calls := &webhookCalls{n: map[string]int{}}
	webhook := tokenReviewWebhook(t, pki, calls)

	api := framework.StartAPIServer(t, framework.APIServerOptions{
		PKI:               pki,
		WebhookKubeconfig: framework.WebhookKubeconfig(webhook.URL+"/authenticate", pki.CA.CertPEM, nil),
		WebhookVersion:    "v1",
		WebhookCacheTTL:   "0s",
		AuthenticationConfig: fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: %s
    audiences: [%s]
    certificateAuthority: |
%s
  claimMappings:
    username:
      claim: email
      prefix: "dex:"
`, dex.IssuerURL, dex.ClientID, pemIndent(string(pki.CA.CertPEM), "      ")),
		AuditPolicy: `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
`,
	})

	// The webhook: alice/devs, twice.
	start := time.Now()
	for i := range 2 {
		w, err := kubectlWhoami(t, api.KubeconfigFor("alice-token"))
		if err != nil {
			t.Fatalf("whoami with the webhook token: %v", err)
		}
		if w.Status.UserInfo.Username != "alice" || !slices.Equal(w.Status.UserInfo.Groups, []string{"devs", "system:authenticated"}) {
			t.Errorf("whoami #%d = %+v, want alice [devs system:authenticated]", i, w.Status.UserInfo)
		}
	}
	// Even with --authentication-token-webhook-cache-ttl=0s, kube-apiserver
	// caches successful token authentications for 10s in front of all its
	// token authenticators (TokenSuccessCacheTTL, no flag); failures are not
	// cached. Tests of revocation must allow for it.
	if n, took := calls.get("alice-token"), time.Since(start); took < 9*time.Second && n != 1 {
		t.Errorf("the webhook saw alice-token %d times for two requests within %v; want 1 (kube-apiserver's 10s success cache)", n, took)
	}
	if _, err := kubectlWhoami(t, api.KubeconfigFor("mallory-token")); err == nil {
		t.Errorf("kubectl: a token the webhook rejects was accepted")
	}
	// One request each (kubectl may retry): failures are not cached.
	mallory, err := kubernetes.NewForConfig(api.RESTConfig("mallory-token"))
	if err != nil {
		t.Fatal(err)
	}
	before := calls.get("mallory-token")
	for range 2 {
		_, err := mallory.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("SelfSubjectReview with a rejected token: %v, want 401", err)
		}
	}
	if n := calls.get("mallory-token") - before; n != 2 {
		t.Errorf("the webhook saw mallory-token %d times for two requests; want 2 (failures are not cached with TTL 0s)", n)
	}

	// OIDC: a Dex ID token is accepted once kube-apiserver has fetched
	// Dex's keys (asynchronously after start), so poll.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := framework.DefaultDexUsers[0]
	idToken, err := dex.IDToken(ctx, alice.Email, alice.Password, dex.ClientID, dex.ClientSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc := api.KubeconfigFor(idToken)
	var w whoami
	for {
		if w, err = kubectlWhoami(t, kc); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kube-apiserver never accepted the Dex ID token: %v", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if got, want := w.Status.UserInfo.Username, "dex:"+alice.Email; got != want {
		t.Errorf("whoami with the ID token: username %q, want %q", got, want)
	}

	// Audit: alice's SelfSubjectReview is in the log.
	if err := waitForAuditEvent(ctx, api.AuditLogPath, "alice", "selfsubjectreviews"); err != nil {
		t.Error(err)
	}
}

func pemIndent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func waitForAuditEvent(ctx context.Context, path, user, resource string) error {
	for {
		found, err := auditLogHas(path, user, resource)
		if found {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no audit event for user %s on %s in %s (last error: %v)", user, resource, path, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func auditLogHas(path, user, resource string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef struct {
				Resource string `json:"resource"`
			} `json:"objectRef"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.User.Username == user && ev.ObjectRef.Resource == resource {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, errors.New("not found yet")
}
