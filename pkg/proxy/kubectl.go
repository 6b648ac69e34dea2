package proxy

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// kubectl (1.22 and later, unless KUBECTL_COMMAND_HEADERS=false) names, in
// every request it sends, the command that sent it and a random id of the
// kubectl process (SIG CLI KEP 859). kube-apiserver records neither, so the
// proxy does, in Portcullis's audit event of the proxied request: with the
// session id, the requests of one kubectl invocation can be grouped, across
// clusters, and tied to the command the user typed.
const (
	KubectlCommandHeader = "Kubectl-Command"
	KubectlSessionHeader = "Kubectl-Session"

	// AnnotationKubectlCommand and AnnotationKubectlSession are the audit
	// annotations holding the (cleaned) header values.
	AnnotationKubectlCommand = "proxy.portcullis.dev/kubectl-command"
	AnnotationKubectlSession = "proxy.portcullis.dev/kubectl-session"
)

// The headers are the client's to write: anything a client sends is
// recorded only after cleaning, and at most this long. kubectl's command is
// a command path ("kubectl create secret generic", plugins included), its
// session a UUID (36 characters).
const (
	maxKubectlCommandLen = 128
	maxKubectlSessionLen = 64
)

// truncatedSuffix ends a recorded value that was cut to its bound.
const truncatedSuffix = "..."

// kubectlAnnotations appends to kv the audit annotations for the kubectl
// headers of h, if any. Without them it does not allocate: almost no
// request but kubectl's carries them, and every proxied request asks.
func kubectlAnnotations(kv []string, h http.Header) []string {
	if vs := h[KubectlCommandHeader]; len(vs) > 0 {
		if v := cleanHeaderValue(vs, maxKubectlCommandLen); v != "" {
			kv = append(kv, AnnotationKubectlCommand, v)
		}
	}
	if vs := h[KubectlSessionHeader]; len(vs) > 0 {
		if v := cleanHeaderValue(vs, maxKubectlSessionLen); v != "" {
			kv = append(kv, AnnotationKubectlSession, v)
		}
	}
	return kv
}

// cleanHeaderValue is what the audit log records of a client-controlled
// header: its values joined with ", " (several values are recorded, not
// silently reduced to one, so a forged extra line shows), surrounding blanks
// trimmed, every character that is not printable ASCII (control
// characters, tabs, non-ASCII letters, invalid UTF-8) replaced by '?', and
// at most max bytes, ending in "..." when cut. A clean single value is
// returned as it is, without allocating.
func cleanHeaderValue(values []string, max int) string {
	if len(values) == 1 {
		v := strings.TrimSpace(values[0])
		if len(v) <= max && printableASCII(v) {
			return v
		}
	}
	var b strings.Builder
	b.Grow(max)
	truncated := false
	first := true
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !first {
			if !appendBounded(&b, ", ", max) {
				truncated = true
				break
			}
		}
		first = false
		if !appendCleaned(&b, v, max) {
			truncated = true
			break
		}
	}
	out := b.String()
	if truncated {
		// Make room for the marker, on a byte boundary (out is ASCII).
		cut := max - len(truncatedSuffix)
		if cut > len(out) {
			cut = len(out)
		}
		out = strings.TrimRight(out[:cut], " ,") + truncatedSuffix
	}
	return strings.TrimRight(out, " ")
}

// appendCleaned writes v to b with every character outside printable ASCII
// replaced by '?', and reports false if it had to stop at max bytes.
func appendCleaned(b *strings.Builder, v string, max int) bool {
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			i++
		} else {
			_, size := utf8.DecodeRuneInString(v[i:]) // one '?' per character, or per invalid byte
			i += size
			c = '?'
		}
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		if b.Len() >= max {
			return false
		}
		b.WriteByte(c)
	}
	return true
}

func appendBounded(b *strings.Builder, s string, max int) bool {
	if b.Len()+len(s) > max {
		return false
	}
	b.WriteString(s)
	return true
}

// printableASCII reports whether s holds only printable ASCII (space to '~').
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
