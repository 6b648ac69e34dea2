package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/testkit"
)

// TestTheDocumentedLDAPExamplesDecode loads the OpenLDAP and Active
// Directory examples of docs/configuration.md (with their files made up),
// and a misspelled field in an ldap block, which strict decoding refuses.
func TestTheDocumentedLDAPExamplesDecode(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\\n(identityProviders:\\n- name: [a-z]+\\n  displayName: [^\\n]+\\n  ldap:\\n.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) != 2 {
		t.Fatalf("docs/configuration.md has %d LDAP examples, want 2 (OpenLDAP and Active Directory)", len(blocks))
	}
	dir := t.TempDir()
	ca := testkit.NewCA(t, "ldap CA")
	files := regexp.MustCompile(`(/etc/portcullis/[a-z-]+(\.pem)?)`)
	for i, b := range blocks {
		yamlText := files.ReplaceAllStringFunc(string(b[1]), func(path string) string {
			p := filepath.Join(dir, filepath.Base(path))
			content := []byte("bind-password\n")
			if strings.HasSuffix(path, ".pem") {
				content = ca.CertPEM
			}
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		})
		file := header + "issuerURL: https://portcullis.example.com\nstore:\n  path: " + filepath.Join(dir, "state.db") +
			"\n" + yamlText + "clusters:\n- name: c1\n  access: {allUsers: true}\n"
		cfg, err := Decode("portcullis.yaml", []byte(file))
		if err != nil {
			t.Fatalf("example %d does not load:\n%s\n%v", i+1, file, err)
		}
		if l := cfg.IdentityProviders[0].LDAP; l == nil || l.GroupSearch == nil || l.UsernamePrefix == nil {
			t.Fatalf("example %d: %+v", i+1, cfg.IdentityProviders[0])
		}
		if i == 0 {
			_, err := Decode("portcullis.yaml", []byte(strings.Replace(file, "    userSearch:", "    usersearch:", 1)))
			if err == nil || !strings.Contains(err.Error(), `identityProviders[0].ldap.usersearch: Forbidden: unknown field: did you mean "userSearch"?`) {
				t.Errorf("a misspelled field in ldap: %v", err)
			}
		}
	}
}
