// Command krew fills in the krew plugin manifest template for a release.
//
// The template (artifacts/krew/portcullis.yaml) uses the placeholders of
// krew-release-bot, so the same file works with that bot too:
//
//	version: {{ .TagName }}
//	{{addURIAndSha "https://github.com/portcullis-dev/portcullis/releases/download/{{ .TagName }}/portcullis_linux_amd64.tar.gz" .TagName }}
//
// addURIAndSha renders to `uri: URL` and, on the next line at the same
// indentation, `sha256: SUM`, where SUM is the SHA-256 of the archive of
// the URL's base name in --dir (make release writes them there). A template
// naming an archive that is not there is an error naming it.
//
//	go run ./krew --template artifacts/krew/portcullis.yaml --version v1.2.3 --dir _output/release > _output/release/portcullis.krew.yaml
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var tmpl, version, dir, out string
	flag.StringVar(&tmpl, "template", "artifacts/krew/portcullis.yaml", "the krew manifest template")
	flag.StringVar(&version, "version", "", "the release's tag, e.g. v1.2.3 ({{ .TagName }})")
	flag.StringVar(&dir, "dir", "_output/release", "directory holding the archives the template names")
	flag.StringVar(&out, "out", "", "file to write; standard output when empty")
	flag.Parse()
	if version == "" {
		fmt.Fprintln(os.Stderr, "krew: --version is required")
		os.Exit(2)
	}
	text, err := os.ReadFile(tmpl)
	if err != nil {
		fmt.Fprintf(os.Stderr, "krew: reading the template: %v\n", err)
		os.Exit(1)
	}
	manifest, err := render(string(text), version, dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "krew: %s: %v\n", tmpl, err)
		os.Exit(1)
	}
	if out == "" {
		_, err = os.Stdout.WriteString(manifest)
	} else {
		err = os.WriteFile(out, []byte(manifest), 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "krew: %v\n", err)
		os.Exit(1)
	}
}
