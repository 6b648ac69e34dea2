package portal_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

func TestLoginPageNeverShowsAConfigurationError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "secrets", "dex-client-secret")
	e := portaltest.New(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.IdentityProviders[0].ClientSecretFile = missing
	}})
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("the secret file exists")
	}
	p := get(t, e.Browser(), e.URL+"/login/fake")
	if p.status != 503 {
		t.Fatalf("GET /login/fake with an unreadable client secret: %d, want 503", p.status)
	}
	for _, leak := range []string{missing, "secrets", "no such file", "open "} {
		if strings.Contains(p.body, leak) {
			t.Errorf("the anonymous login page shows %q:\n%s", leak, p.body)
		}
	}
	if !strings.Contains(p.body, "administrator") {
		t.Errorf("the page does not tell the user whom to ask:\n%s", p.body)
	}
}
