package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"
)

// render executes the template with krew-release-bot's data and functions.
func render(text, version, dir string) (string, error) {
	data := struct{ TagName string }{TagName: version}
	// The URL argument of addURIAndSha is itself a template ({{ .TagName }}
	// inside a string), as with krew-release-bot.
	expand := func(s string) (string, error) {
		t, err := template.New("uri").Option("missingkey=error").Parse(s)
		if err != nil {
			return "", err
		}
		var b bytes.Buffer
		err = t.Execute(&b, data)
		return b.String(), err
	}
	var indents []string
	funcs := template.FuncMap{
		"addURIAndSha": func(uri, _ string) (string, error) {
			u, err := expand(uri)
			if err != nil {
				return "", fmt.Errorf("addURIAndSha %q: %w", uri, err)
			}
			name := path.Base(u)
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				return "", fmt.Errorf("addURIAndSha %s: the archive %s is not in %s (make release builds it): %w", u, name, dir, err)
			}
			sum := sha256.Sum256(b)
			indent := ""
			if len(indents) > 0 {
				indent, indents = indents[0], indents[1:]
			}
			return "uri: " + u + "\n" + indent + "sha256: " + hex.EncodeToString(sum[:]), nil
		},
	}
	// sha256 goes on its own line, in the column where uri starts.
	for _, line := range strings.Split(text, "\n") {
		for _, call := range []string{"{{addURIAndSha", "{{ addURIAndSha", "{{- addURIAndSha"} {
			if i := strings.Index(line, call); i >= 0 {
				indents = append(indents, strings.Repeat(" ", i))
				break
			}
		}
	}
	t, err := template.New("krew").Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	if strings.Contains(b.String(), "{{") {
		return "", fmt.Errorf("placeholders left after rendering")
	}
	return b.String(), nil
}
