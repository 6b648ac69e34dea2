package token

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store/memory"
)

func TestMint(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	t.Run("Mint fills iss, iat, nbf and a random 128-bit jti", func(t *testing.T) {
		in := f.claims()
		in.Issuer = "https://ignored.example.com"
		in.ID = "caller-chosen"
		in.Expiry = f.clock.Now().Add(time.Hour + 500*time.Millisecond)
		raw, c, err := f.minter.Mint(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		now := f.clock.Now()
		if c.Issuer != testIssuer || !c.IssuedAt.Equal(time.Unix(now.Unix(), 0)) || !c.NotBefore.Equal(c.IssuedAt) ||
			!c.Expiry.Equal(time.Unix(now.Add(time.Hour).Unix(), 0)) {
			t.Fatalf("claims %+v", c)
		}
		id, err := b64.DecodeString(c.ID)
		if err != nil || len(id) != 16 {
			t.Fatalf("jti %q is not 16 base64url bytes", c.ID)
		}
		_, c2, _ := f.minter.Mint(ctx, in)
		if c2.ID == c.ID {
			t.Fatal("two tokens got the same jti")
		}
		parts := strings.Split(raw, ".")
		header, _ := b64.DecodeString(parts[0])
		active, _ := f.km.ActiveKey()
		if want := `{"alg":"ES256","kid":"` + active.ID + `","typ":"JWT"}`; string(header) != want {
			t.Fatalf("header %s, want %s", header, want)
		}
		payload, _ := b64.DecodeString(parts[1])
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		for _, claim := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "username", "uid", "groups", "extra", "email", "idp"} {
			if _, ok := m[claim]; !ok {
				t.Errorf("claim %q missing from %s", claim, payload)
			}
		}
		if m["aud"] != "cluster-a" {
			t.Errorf("a single audience is written as %v, want the string", m["aud"])
		}
		if _, ok := m["reason"]; ok {
			t.Error("an empty reason is written")
		}
	})
	for _, tc := range []struct {
		name   string
		change func(*Claims)
	}{
		{"a token without subject is refused", func(c *Claims) { c.Subject = "" }},
		{"a token without username is refused", func(c *Claims) { c.Username = "" }},
		{"a token without audience is refused", func(c *Claims) { c.Audience = nil }},
		{"a token with an empty audience is refused", func(c *Claims) { c.Audience = []string{"cluster-a", ""} }},
		{"a token without expiry is refused", func(c *Claims) { c.Expiry = time.Time{} }},
		{"a token expiring now is refused", func(c *Claims) { c.Expiry = f.clock.Now() }},
		{"a token expiring within the second is refused", func(c *Claims) { c.Expiry = f.clock.Now().Add(500 * time.Millisecond) }},
		{"a token living longer than MaxTokenLifetime is refused", func(c *Claims) { c.Expiry = f.clock.Now().Add(24*time.Hour + time.Second) }},
		{"a token too large to verify is refused", func(c *Claims) { c.Groups = []string{strings.Repeat("g", MaxTokenSize)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims()
			tc.change(&c)
			if raw, _, err := f.minter.Mint(ctx, c); err == nil {
				t.Fatalf("Mint made %d bytes", len(raw))
			}
		})
	}
	t.Run("a token living exactly MaxTokenLifetime verifies", func(t *testing.T) {
		c := f.claims()
		c.Expiry = f.clock.Now().Add(24 * time.Hour)
		raw, _, err := f.minter.Mint(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Mint creates a signing key when there is none", func(t *testing.T) {
		clock := newFakeClock()
		st := memory.New()
		km, _ := NewKeyManager(st, KeyOptions{Clock: clock, Logger: quietLogger})
		m, _ := NewMinter(km, testIssuer, clock)
		c := f.claims()
		c.Expiry = clock.Now().Add(time.Hour)
		if _, _, err := m.Mint(ctx, c); err != nil {
			t.Fatal(err)
		}
		keys, _ := st.ListSigningKeys(ctx)
		if len(keys) != 1 {
			t.Fatalf("%d keys", len(keys))
		}
	})
	t.Run("the caller's claims are not changed or shared", func(t *testing.T) {
		in := f.claims()
		_, out, err := f.minter.Mint(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		out.Groups[0] = "changed"
		if in.Groups[0] != "dev" || in.ID != "" {
			t.Fatalf("caller's claims changed: %+v", in)
		}
	})
}

func TestIssuerValidation(t *testing.T) {
	km, _ := NewKeyManager(memory.New(), KeyOptions{})
	for _, tc := range []struct {
		issuer string
		ok     bool
	}{
		{"https://portcullis.example.com", true},
		{"https://portcullis.example.com:8443/tenant-a", true},
		{"http://localhost:8080", true},
		{"http://127.0.0.1:8080", true},
		{"http://[::1]:8080", true},
		{"http://portcullis.example.com", false},
		{"https://portcullis.example.com/", false},
		{"https://portcullis.example.com?x=1", false},
		{"https://portcullis.example.com#frag", false},
		{"https://user@portcullis.example.com", false},
		{"portcullis.example.com", false},
		{"", false},
		{"ftp://portcullis.example.com", false},
	} {
		name := "issuer " + tc.issuer + " is refused"
		if tc.ok {
			name = "issuer " + tc.issuer + " is accepted"
		}
		t.Run(name, func(t *testing.T) {
			_, errM := NewMinter(km, tc.issuer, nil)
			_, errV := NewVerifier(km, tc.issuer, memory.New(), VerifierOptions{})
			if (errM == nil) != tc.ok || (errV == nil) != tc.ok {
				t.Fatalf("NewMinter: %v, NewVerifier: %v", errM, errV)
			}
		})
	}
	t.Run("a verifier without a revoker is refused", func(t *testing.T) {
		if _, err := NewVerifier(km, testIssuer, nil, VerifierOptions{}); err == nil {
			t.Fatal("NewVerifier accepted a nil Revoker")
		}
	})
}
