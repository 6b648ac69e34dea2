package jwtpeek

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func jws(payload string) string {
	b64 := base64.RawURLEncoding
	return b64.EncodeToString([]byte(`{"alg":"ES256"}`)) + "." + b64.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestIssuer(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
		ok              bool
	}{
		{name: "the iss claim of a compact JWS is returned", raw: jws(`{"iss":"https://idp.example.com"}`), want: "https://idp.example.com", ok: true},
		{name: "Google's legacy issuer is taken for its https URL", raw: jws(`{"iss":"accounts.google.com"}`), want: "https://accounts.google.com", ok: true},
		{name: "Google's https issuer is returned as it is", raw: jws(`{"iss":"https://accounts.google.com"}`), want: "https://accounts.google.com", ok: true},
		{name: "a payload without iss has no issuer", raw: jws(`{"sub":"x"}`)},
		{name: "an empty iss is no issuer", raw: jws(`{"iss":""}`)},
		{name: "an iss that is not a string is no issuer", raw: jws(`{"iss":42}`)},
		{name: "a payload that is not JSON has no issuer", raw: jws(`not json`)},
		{name: "two segments are not a JWS", raw: strings.Join(strings.Split(jws(`{"iss":"x"}`), ".")[:2], ".")},
		{name: "four segments are not a JWS", raw: jws(`{"iss":"x"}`) + ".more"},
		{name: "a payload that is not base64url is refused", raw: "e30.!!!.c2ln"},
		{name: "a token over MaxSize is not decoded", raw: jws(`{"iss":"x","pad":"` + strings.Repeat("a", MaxSize) + `"}`)},
		{name: "an opaque token has no issuer", raw: "sha256~opaque"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Issuer(tc.raw)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Issuer = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestAudiences(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      []string
	}{
		{name: "a single audience string is one audience", raw: jws(`{"aud":"c1"}`), want: []string{"c1"}},
		{name: "an audience array is every audience", raw: jws(`{"aud":["c1","c2"]}`), want: []string{"c1", "c2"}},
		{name: "no aud claim is no audience", raw: jws(`{"iss":"x"}`)},
		{name: "an aud of the wrong type is no audience", raw: jws(`{"aud":{"a":1}}`)},
		{name: "a malformed token is no audience", raw: "a.b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Audiences(tc.raw); !slices.Equal(got, tc.want) {
				t.Errorf("Audiences = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStringClaim(t *testing.T) {
	raw := jws(`{"nonce":"n-1","exp":12,"empty":""}`)
	for _, tc := range []struct {
		name, claim, want string
		ok                bool
	}{
		{name: "a string claim is returned", claim: "nonce", want: "n-1", ok: true},
		{name: "an empty string claim is returned as present", claim: "empty", want: "", ok: true},
		{name: "a number claim is not a string", claim: "exp"},
		{name: "a missing claim is absent", claim: "sub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := StringClaim(raw, tc.claim)
			if got != tc.want || ok != tc.ok {
				t.Errorf("StringClaim(%q) = %q, %v; want %q, %v", tc.claim, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestPayload(t *testing.T) {
	if got, ok := Payload(jws(`{"a":1}`)); !ok || string(got) != `{"a":1}` {
		t.Errorf("Payload = %q, %v", got, ok)
	}
}

// BenchmarkIssuer is the routing peek every bearer token goes through
// (pkg/authn, pkg/identity).
func BenchmarkIssuer(b *testing.B) {
	p, _ := json.Marshal(map[string]any{"iss": "https://portcullis.test", "sub": "CgVjYXJvbBIEY29ycA", "aud": []string{"c1"}, "exp": 1790000000, "iat": 1790000000, "nbf": 1790000000, "jti": "0123456789abcdef0123456789", "sid": "session-0123456789abcdef", "username": "carol@example.com", "uid": "uid-carol", "groups": []string{"ops", "oncall", "devs"}, "email": "carol@example.com", "idp": "corp"})
	b64 := base64.RawURLEncoding
	raw := b64.EncodeToString([]byte(`{"alg":"ES256","kid":"0123456789012345678901234567890123456789012","typ":"JWT"}`)) + "." + b64.EncodeToString(p) + "." + b64.EncodeToString(make([]byte, 64))
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if iss, _ := Issuer(raw); iss != "https://portcullis.test" {
				b.Fatal(iss)
			}
		}
	})
}
