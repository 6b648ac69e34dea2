package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const manifestTemplate = `apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: portcullis
spec:
  version: {{ .TagName }}
  platforms:
  - selector:
      matchLabels: {os: linux, arch: amd64}
    {{addURIAndSha "https://example.com/releases/download/{{ .TagName }}/portcullis_linux_amd64.tar.gz" .TagName }}
    bin: portcullis
  - selector:
      matchLabels: {os: windows, arch: amd64}
    {{ addURIAndSha "https://example.com/releases/download/{{ .TagName }}/portcullis_windows_amd64.tar.gz" .TagName }}
    bin: portcullis.exe
`

func TestRenderFillsVersionURIsAndSums(t *testing.T) {
	dir := t.TempDir()
	sums := map[string]string{}
	for _, name := range []string{"portcullis_linux_amd64.tar.gz", "portcullis_windows_amd64.tar.gz"} {
		data := []byte("archive " + name)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		sums[name] = hex.EncodeToString(s[:])
	}
	out, err := render(manifestTemplate, "v1.2.3", dir)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Spec struct {
			Version   string
			Platforms []struct {
				URI    string
				Sha256 string
				Bin    string
			}
		}
	}
	if err := yaml.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("the rendered manifest is not YAML: %v\n%s", err, out)
	}
	if m.Spec.Version != "v1.2.3" || len(m.Spec.Platforms) != 2 {
		t.Fatalf("rendered %+v\n%s", m.Spec, out)
	}
	for _, p := range m.Spec.Platforms {
		name := filepath.Base(p.URI)
		if !strings.HasPrefix(p.URI, "https://example.com/releases/download/v1.2.3/") || p.Sha256 != sums[name] || p.Bin == "" {
			t.Errorf("platform %+v, want the v1.2.3 URI and sum %s", p, sums[name])
		}
	}
}

func TestRenderNamesAMissingArchive(t *testing.T) {
	_, err := render(manifestTemplate, "v1.2.3", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "portcullis_linux_amd64.tar.gz") || !strings.Contains(err.Error(), "make release") {
		t.Fatalf("err = %v, want one naming the missing archive and make release", err)
	}
}
