package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/pkg/server"
)

const goodConfig = `apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://portcullis.example.com
clusters:
- name: prod
  access:
    groups: [sre]
`

const badConfig = `apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: http://portcullis.example.com/
tokens:
  lifetime: forever
clusters:
- name: prod
  acess: {allUsers: true}
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckConfig(t *testing.T) {
	t.Run("a valid file is reported valid with what it configures", func(t *testing.T) {
		path := writeConfig(t, goodConfig)
		out, _, err := run(t, "check-config", "--config", path)
		if err != nil {
			t.Fatalf("check-config refused a valid file: %v", err)
		}
		if want := path + " is a valid configuration: issuer https://portcullis.example.com, 1 cluster(s), 0 identity provider(s), store bolt\n"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
	})
	for name, path := range map[string]string{
		"an invalid file":  writeConfig(t, badConfig),
		"a missing file":   filepath.Join(t.TempDir(), "nope.yaml"),
		"an empty file":    writeConfig(t, ""),
		"not YAML at all":  writeConfig(t, "{{{"),
		"another kind":     writeConfig(t, "apiVersion: v1\nkind: Pod\n"),
		"a file too large": writeConfig(t, goodConfig+"# "+strings.Repeat("x", 2<<20)+"\n"),
	} {
		t.Run(name+" fails with the message start-up gives", func(t *testing.T) {
			_, _, err := run(t, "check-config", "--config", path)
			if err == nil {
				t.Fatal("check-config accepted it")
			}
			// What the server does at start-up, through its options.
			o := server.NewOptions()
			o.ConfigFile = path
			startup := o.Complete()
			if startup == nil || err.Error() != startup.Error() {
				t.Errorf("check-config said\n%v\nstart-up says\n%v", err, startup)
			}
		})
	}
	t.Run("every problem of an invalid file is named with its line", func(t *testing.T) {
		_, _, err := run(t, "check-config", "--config", writeConfig(t, badConfig))
		for _, want := range []string{"(3 problems)", "line 3: issuerURL", "line 5: tokens.lifetime", `line 8: clusters[0].acess: Forbidden: unknown field: did you mean "access"?`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("the error lacks %q: %v", want, err)
			}
		}
	})
}
