package identity

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxReasonLen bounds the reasons put in errors: they end up in TokenReview
// statuses, HTTP responses and logs.
const maxReasonLen = 200

// safeReason turns an error from a verifier into a short reason that never
// contains the token or any of its segments.
func safeReason(err error, raw string) string {
	s := err.Error()
	if raw != "" {
		s = strings.ReplaceAll(s, raw, "<token>")
		for _, part := range strings.Split(raw, ".") {
			if len(part) >= 8 {
				s = strings.ReplaceAll(s, part, "<token>")
			}
		}
	}
	// The apiserver's errors stack "oidc: " prefixes; they add nothing here.
	s = strings.ReplaceAll(s, "oidc: ", "")
	s = strings.TrimPrefix(s, "verify token: ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(s, maxReasonLen)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
