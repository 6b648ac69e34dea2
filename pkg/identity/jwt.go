package identity

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxTokenSize bounds the tokens looked at. ID tokens are a few KiB; a
// bigger "token" is not worth decoding.
const maxTokenSize = 64 << 10

// payloadOf returns the decoded payload segment of a compact JWS, without
// verifying anything.
func payloadOf(raw string) ([]byte, bool) {
	if len(raw) > maxTokenSize {
		return nil, false
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	return payload, true
}

// unverifiedIssuer returns the "iss" of a compact JWS without verifying
// anything. It is for routing a token to the provider that verifies it, and
// for nothing else. Like kube-apiserver, it takes Google's legacy issuer
// "accounts.google.com" for "https://accounts.google.com".
func unverifiedIssuer(raw string) (string, bool) {
	payload, ok := payloadOf(raw)
	if !ok {
		return "", false
	}
	var c struct {
		// WARNING: not verified; for routing only.
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Issuer == "" {
		return "", false
	}
	if c.Issuer == "accounts.google.com" {
		return "https://accounts.google.com", true
	}
	return c.Issuer, true
}

// verifiedEmail returns the "email" claim of a token that has been verified,
// unless "email_verified" says it is not verified. An email_verified that is
// neither a boolean nor a boolean string (some IdPs send "true") counts as
// not verified.
func verifiedEmail(raw string) string {
	payload, ok := payloadOf(raw)
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
