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

// The repository's own template renders into a manifest with every
// platform the release builds the CLI for, each with its archive's URL and
// sum and the binary that is in that archive.
func TestTheRepositoryTemplateCoversEveryCLIPlatform(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "..", "..", "artifacts", "krew", "portcullis.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	platforms := []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"}
	dir := t.TempDir()
	for _, p := range platforms {
		name := "portcullis_" + strings.ReplaceAll(p, "/", "_") + ".tar.gz"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := render(string(text), "v0.4.0", dir)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Kind     string
		Metadata struct{ Name string }
		Spec     struct {
			Version          string
			ShortDescription string `json:"shortDescription"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				}
				URI    string
				Sha256 string
				Bin    string
			}
		}
	}
	if err := yaml.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("the rendered manifest is not YAML: %v\n%s", err, out)
	}
	if m.Kind != "Plugin" || m.Metadata.Name != "portcullis" || m.Spec.Version != "v0.4.0" || m.Spec.ShortDescription == "" {
		t.Fatalf("rendered %+v\n%s", m, out)
	}
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		plat := p.Selector.MatchLabels["os"] + "/" + p.Selector.MatchLabels["arch"]
		seen[plat] = true
		sum := sha256.Sum256([]byte(plat))
		wantBin := "portcullis"
		if p.Selector.MatchLabels["os"] == "windows" {
			wantBin += ".exe"
		}
		if !strings.HasSuffix(p.URI, "/v0.4.0/portcullis_"+strings.ReplaceAll(plat, "/", "_")+".tar.gz") || p.Sha256 != hex.EncodeToString(sum[:]) || p.Bin != wantBin {
			t.Errorf("platform %s: uri %s sha256 %s bin %s", plat, p.URI, p.Sha256, p.Bin)
		}
	}
	for _, p := range platforms {
		if !seen[p] {
			t.Errorf("no platform %s in the manifest", p)
		}
	}
}
