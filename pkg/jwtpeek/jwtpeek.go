// Package jwtpeek reads claims from the payload of a compact JWS without
// verifying anything. It is the one place Portcullis does so.
//
// What it returns is for routing a token to the verifier that checks it
// (issuer, audiences), or for reading a claim of a token that has just been
// verified by someone else (the apiserver's OIDC authenticator, pkg/authn).
// It must never be taken as an identity.
package jwtpeek

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// MaxSize is the largest token looked at: no token Portcullis or
// kube-apiserver accepts is larger, and a bigger "token" is not worth
// decoding.
const MaxSize = 64 << 10

// googleLegacyIssuer is the "iss" Google's ID tokens may carry; like
// kube-apiserver (and go-oidc), it is taken for https://accounts.google.com.
const googleLegacyIssuer = "accounts.google.com"

// Payload returns the decoded payload of a compact JWS (three base64url
// segments separated by dots), or false.
func Payload(raw string) ([]byte, bool) {
	if len(raw) > MaxSize {
		return nil, false
	}
	_, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return nil, false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, false
	}
	return b, true
}

// Issuer returns the "iss" claim, or false when there is none. Google's
// legacy issuer "accounts.google.com" is returned as
// "https://accounts.google.com".
func Issuer(raw string) (string, bool) {
	payload, ok := Payload(raw)
	if !ok {
		return "", false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Issuer == "" {
		return "", false
	}
	if c.Issuer == googleLegacyIssuer {
		return "https://" + googleLegacyIssuer, true
	}
	return c.Issuer, true
}

// Audiences returns the "aud" claim, a string or an array of strings (RFC
// 7519 §4.1.3), or nil.
func Audiences(raw string) []string {
	payload, ok := Payload(raw)
	if !ok {
		return nil
	}
	var c struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload, &c) != nil || len(c.Aud) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(c.Aud, &many) != nil {
		return nil
	}
	return many
}

// StringClaim returns the claim name when it is a string, or false.
func StringClaim(raw, name string) (string, bool) {
	payload, ok := Payload(raw)
	if !ok {
		return "", false
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) != nil {
		return "", false
	}
	v, ok := claims[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}
