package identity

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"portcullis.dev/portcullis/pkg/jwtpeek"
)

// verifiedEmail returns the "email" claim of a token that has been verified,
// unless "email_verified" says it is not verified. An email_verified that is
// neither a boolean nor a boolean string (some IdPs send "true") counts as
// not verified.
func verifiedEmail(raw string) string {
	payload, ok := jwtpeek.Payload(raw)
	if !ok {
		return ""
	}
	var c struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Email == "" {
		return ""
	}
	if len(c.EmailVerified) == 0 || string(c.EmailVerified) == "null" {
		return c.Email
	}
	var b bool
	if json.Unmarshal(c.EmailVerified, &b) == nil {
		if b {
			return c.Email
		}
		return ""
	}
	var s string
	if json.Unmarshal(c.EmailVerified, &s) == nil && strings.EqualFold(s, "true") {
		return c.Email
	}
	return ""
}

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
