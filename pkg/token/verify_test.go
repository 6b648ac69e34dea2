package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/memory"
)

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assemble builds a compact JWS from a header, a payload and a signature
// function over the signing input.
func assemble(t testing.TB, header, payload any, sign func(signingInput string) []byte) string {
	t.Helper()
	in := b64.EncodeToString(mustJSON(t, header)) + "." + b64.EncodeToString(mustJSON(t, payload))
	return in + "." + b64.EncodeToString(sign(in))
}

// es256 signs with priv the way RFC 7518 says.
func es256(t testing.TB, priv *ecdsa.PrivateKey) func(string) []byte {
	return func(in string) []byte {
		d := sha256.Sum256([]byte(in))
		r, s, err := ecdsa.Sign(rand.Reader, priv, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
}

func TestVerifyAcceptsMintedTokens(t *testing.T) {
	f := newFixture(t)
	raw, minted := f.mint()
	got, err := f.ver.Verify(context.Background(), raw, []string{"other-cluster", "cluster-a"})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Username != "alice@example.com" || got.Subject != minted.Subject || got.UID != "1234" ||
		!slices.Equal(got.Groups, []string{"dev", "oncall"}) || got.Extra["portcullis.dev/login"][0] != "oidc" ||
		got.SessionID != "session-1" || got.ID != minted.ID || got.IdentityProvider != "corp" ||
		got.Email != "alice@example.com" || got.Issuer != testIssuer ||
		!got.Expiry.Equal(minted.Expiry) || !got.IssuedAt.Equal(minted.IssuedAt) || !got.NotBefore.Equal(minted.NotBefore) {
		t.Fatalf("Verify returned %+v, minted %+v", got, minted)
	}
	t.Run("a caller mutating the returned claims does not change what the cache returns", func(t *testing.T) {
		got.Groups[0] = "system:masters"
		got.Extra["portcullis.dev/login"][0] = "x"
		again, err := f.ver.Verify(context.Background(), raw, testAudience)
		if err != nil {
			t.Fatal(err)
		}
		if again.Groups[0] != "dev" || again.Extra["portcullis.dev/login"][0] != "oidc" {
			t.Fatalf("cached claims were changed through a returned copy: %+v", again)
		}
		if f.hits.Load() != 1 || f.misses.Load() != 1 {
			t.Fatalf("hits=%d misses=%d, want 1 and 1", f.hits.Load(), f.misses.Load())
		}
	})
}

func TestVerifyRejectsHostileTokens(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	active, err := f.km.ActiveKey()
	if err != nil {
		t.Fatal(err)
	}
	mk := f.km.set.Load().byID[active.ID]
	valid, _ := f.mint()
	parts := strings.Split(valid, ".")
	goodHeader := map[string]any{"alg": "ES256", "kid": active.ID, "typ": "JWT"}
	withHeader := func(extra map[string]any) map[string]any {
		h := map[string]any{}
		for k, v := range goodHeader {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	pubDER, err := x509.MarshalPKIXPublicKey(active.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func(key []byte) func(string) []byte {
		return func(in string) []byte {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(in))
			return m.Sum(nil)
		}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256 := func(in string) []byte {
		d := sha256.Sum256([]byte(in))
		sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	strangerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strangerKID, err := thumbprint(&strangerKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// A whole other Portcullis, same issuer URL, own store and keys.
	other := newReplica(t, memory.New(), f.clock)
	fromOther, _ := other.mint()

	payload := f.wirePayload()
	with := func(k string, v any) map[string]any {
		p := f.wirePayload()
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
		return p
	}
	now := f.clock.Now().Unix()

	tamperedPayload := func() string {
		p, err := b64.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		p = []byte(strings.Replace(string(p), `"alice@example.com"`, `"admin@example.com"`, 1))
		return parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
	}()
	tamperedSignature := func() string {
		sig, err := b64.DecodeString(parts[2])
		if err != nil {
			t.Fatal(err)
		}
		sig[10] ^= 1
		return parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig)
	}()
	zeroSignature := parts[0] + "." + parts[1] + "." + b64.EncodeToString(make([]byte, 64))
	paddedSignature := valid + "="
	nonCanonical := func() string {
		// Flip the unused low bits of the last base64 character: the same
		// bytes under a lax decoder, refused by a strict one.
		s := []byte(parts[2])
		last := s[len(s)-1]
		idx := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", last)
		s[len(s)-1] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[idx^1]
		return parts[0] + "." + parts[1] + "." + string(s)
	}()

	tests := []struct {
		name   string
		token  string
		aud    []string
		reason string
	}{
		{"an alg none token is refused for its algorithm", assemble(t, withHeader(map[string]any{"alg": "none"}), payload, func(string) []byte { return nil }), nil, ReasonUnsupportedAlgorithm},
		{"an alg none token with a signature is refused", assemble(t, withHeader(map[string]any{"alg": "none"}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedAlgorithm},
		{"an HS256 token keyed with the public key's PEM is refused", assemble(t, withHeader(map[string]any{"alg": "HS256"}), payload, hs256(pubPEM)), nil, ReasonUnsupportedAlgorithm},
		{"an HS256 token keyed with the public key's DER is refused", assemble(t, withHeader(map[string]any{"alg": "HS256"}), payload, hs256(pubDER)), nil, ReasonUnsupportedAlgorithm},
		{"an RS256 token is refused", assemble(t, withHeader(map[string]any{"alg": "RS256"}), payload, rs256), nil, ReasonUnsupportedAlgorithm},
		{"a lower-case es256 alg is refused", assemble(t, withHeader(map[string]any{"alg": "es256"}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedAlgorithm},
		{"an ES384 alg is refused", assemble(t, withHeader(map[string]any{"alg": "ES384"}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedAlgorithm},
		{"a header without alg is malformed", assemble(t, map[string]any{"kid": active.ID}, payload, es256(t, mk.priv)), nil, ReasonMalformed},
		{"a crit header is refused", assemble(t, withHeader(map[string]any{"crit": []string{"exp"}, "exp": 1}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedHeader},
		{"an embedded jwk header is refused", assemble(t, withHeader(map[string]any{"jwk": map[string]string{"kty": "EC"}}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedHeader},
		{"a jku header is refused", assemble(t, withHeader(map[string]any{"jku": "https://evil.example/jwks"}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedHeader},
		{"an unencoded payload (b64 false) header is refused", assemble(t, withHeader(map[string]any{"b64": false}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedHeader},
		{"a typ other than JWT is refused", assemble(t, withHeader(map[string]any{"typ": "at+jwt"}), payload, es256(t, mk.priv)), nil, ReasonUnsupportedHeader},
		{"a token without kid is refused", assemble(t, map[string]any{"alg": "ES256"}, payload, es256(t, mk.priv)), nil, ReasonUnknownKey},
		{"an unknown kid is refused", assemble(t, withHeader(map[string]any{"kid": strangerKID}), payload, es256(t, strangerKey)), nil, ReasonUnknownKey},
		{"a kid that cannot be ours is refused", assemble(t, withHeader(map[string]any{"kid": "../../etc/passwd"}), payload, es256(t, mk.priv)), nil, ReasonUnknownKey},
		{"a known kid with a stranger's signature is refused", assemble(t, goodHeader, payload, es256(t, strangerKey)), nil, ReasonBadSignature},
		{"a token from another Portcullis with the same issuer URL is refused", fromOther, nil, ReasonUnknownKey},
		{"a wrong issuer is refused", f.signRaw(with("iss", "https://evil.example.com")), nil, ReasonWrongIssuer},
		{"an issuer differing only by a trailing slash is refused", f.signRaw(with("iss", testIssuer+"/")), nil, ReasonWrongIssuer},
		{"a missing issuer is refused", f.signRaw(with("iss", nil)), nil, ReasonWrongIssuer},
		{"a wrong audience is refused", valid, []string{"cluster-b"}, ReasonAudience},
		{"an empty list of accepted audiences accepts nothing", valid, []string{}, ReasonAudience},
		{"a token without aud is refused", f.signRaw(with("aud", nil)), nil, ReasonAudience},
		{"an expired token is refused", f.signRaw(with("exp", now-int64(DefaultLeeway/time.Second)-1)), nil, ReasonExpired},
		{"a token without exp is refused", f.signRaw(with("exp", nil)), nil, ReasonMissingClaim},
		{"a token without iat is refused", f.signRaw(with("iat", nil)), nil, ReasonMissingClaim},
		{"a token without jti is refused", f.signRaw(with("jti", nil)), nil, ReasonMissingClaim},
		{"a token without username is refused", f.signRaw(with("username", nil)), nil, ReasonMissingClaim},
		{"a token without sub is refused", f.signRaw(with("sub", nil)), nil, ReasonMissingClaim},
		{"an exp that is not a number is malformed", f.signRaw(with("exp", "tomorrow")), nil, ReasonMalformed},
		{"a negative exp is malformed", f.signRaw(with("exp", -1)), nil, ReasonMalformed},
		{"an exp beyond year 9999 is malformed", f.signRaw(with("exp", 1e300)), nil, ReasonMalformed},
		{"a token not valid yet (nbf) is refused", f.signRaw(with("nbf", now+int64(DefaultLeeway/time.Second)+1)), nil, ReasonNotYetValid},
		{"a token issued in the future (iat) is refused", f.signRaw(with("iat", now+int64(DefaultLeeway/time.Second)+1)), nil, ReasonNotYetValid},
		{"a tampered payload is refused", tamperedPayload, nil, ReasonBadSignature},
		{"a tampered signature is refused", tamperedSignature, nil, ReasonBadSignature},
		{"an all-zero signature is refused", zeroSignature, nil, ReasonBadSignature},
		{"a signature with padding is refused", paddedSignature, nil, ReasonBadSignature},
		{"a non-canonical base64 signature is refused", nonCanonical, nil, ReasonBadSignature},
		{"a truncated signature is refused", valid[:len(valid)-10], nil, ReasonBadSignature},
		{"a token cut before its signature is malformed", parts[0] + "." + parts[1], nil, ReasonMalformed},
		{"a token with an empty signature is malformed", parts[0] + "." + parts[1] + ".", nil, ReasonMalformed},
		{"a token with an extra part is malformed", valid + "." + parts[2], nil, ReasonMalformed},
		{"a JWE-shaped token is malformed", "a.b.c.d.e", nil, ReasonMalformed},
		{"a token over 64 KiB is refused before parsing", valid + strings.Repeat("A", MaxTokenSize), nil, ReasonTooLarge},
		{"a token of exactly 64 KiB + 1 is refused", strings.Repeat("x", MaxTokenSize+1), nil, ReasonTooLarge},
		{"an empty string is malformed", "", nil, ReasonMalformed},
		{"something that is not a JWT is malformed", "not a token at all", nil, ReasonMalformed},
		{"three parts of garbage are malformed", "a.b.c", nil, ReasonMalformed},
		{"a header that is not JSON is malformed", b64.EncodeToString([]byte("ES256")) + "." + parts[1] + "." + parts[2], nil, ReasonMalformed},
		{"a header that is a JSON array is malformed", b64.EncodeToString([]byte(`["ES256"]`)) + "." + parts[1] + "." + parts[2], nil, ReasonMalformed},
		{"a header with padding is malformed", b64.EncodeToString(mustJSON(t, goodHeader)) + "==." + parts[1] + "." + parts[2], nil, ReasonMalformed},
		{"a payload that is not JSON is malformed", assembleRaw(t, goodHeader, []byte("not json"), mk.priv), nil, ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			aud := tc.aud
			if aud == nil {
				aud = testAudience
			}
			claims, err := f.ver.Verify(ctx, tc.token, aud)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", claims)
			}
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("Verify error %v: reason %q, want %q", err, got, tc.reason)
			}
			if len(tc.token) > 20 && strings.Contains(err.Error(), tc.token[:20]) {
				t.Fatalf("the error message contains the token: %v", err)
			}
		})
	}

	t.Run("a valid token still verifies after all that", func(t *testing.T) {
		if _, err := f.ver.Verify(ctx, valid, testAudience); err != nil {
			t.Fatal(err)
		}
	})
}

// assembleRaw signs a raw payload.
func assembleRaw(t testing.TB, header any, payload []byte, priv *ecdsa.PrivateKey) string {
	in := b64.EncodeToString(mustJSON(t, header)) + "." + b64.EncodeToString(payload)
	return in + "." + b64.EncodeToString(es256(t, priv)(in))
}

func TestVerifyLeeway(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	now := f.clock.Now().Unix()
	p := f.wirePayload()
	p["nbf"] = now + 20
	p["iat"] = now + 20
	early := f.signRaw(p)
	t.Run("a token from a replica whose clock is 20s ahead verifies", func(t *testing.T) {
		if _, err := f.ver.Verify(ctx, early, testAudience); err != nil {
			t.Fatal(err)
		}
	})
	raw, c := f.mint()
	t.Run("a token verifies within the leeway after exp", func(t *testing.T) {
		f.clock.Step(c.Expiry.Sub(f.clock.Now()) + DefaultLeeway - time.Second)
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a token is refused once exp plus the leeway has passed", func(t *testing.T) {
		f.clock.Step(time.Second)
		if _, err := f.ver.Verify(ctx, raw, testAudience); reasonOf(err) != ReasonExpired {
			t.Fatalf("got %v, want %q", err, ReasonExpired)
		}
	})
}

func TestVerifyRevocation(t *testing.T) {
	ctx := context.Background()
	revoke := func(t *testing.T, f *fixture, id string) {
		t.Helper()
		err := f.store.Revoke(ctx, store.Revocation{ID: id, RevokedAt: f.clock.Now(), ExpiresAt: f.clock.Now().Add(48 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a token whose session is revoked is refused", func(t *testing.T) {
		f := newFixture(t)
		raw, c := f.mint()
		revoke(t, f, c.SessionID)
		if _, err := f.ver.Verify(ctx, raw, testAudience); reasonOf(err) != ReasonRevoked {
			t.Fatalf("got %v, want %q", err, ReasonRevoked)
		}
	})
	t.Run("a token revoked by jti after it was cached is refused", func(t *testing.T) {
		f := newFixture(t)
		raw, c := f.mint()
		for range 3 {
			if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
				t.Fatal(err)
			}
		}
		if f.hits.Load() != 2 {
			t.Fatalf("the token was not served from the cache: %d hits", f.hits.Load())
		}
		revoke(t, f, c.ID)
		if _, err := f.ver.Verify(ctx, raw, testAudience); reasonOf(err) != ReasonRevoked {
			t.Fatalf("got %v, want %q", err, ReasonRevoked)
		}
		if f.hits.Load() != 3 {
			t.Fatalf("the revoked token was not a cache hit (so the test proves nothing): %d hits", f.hits.Load())
		}
	})
	t.Run("a session revoked after caching is refused", func(t *testing.T) {
		f := newFixture(t)
		raw, c := f.mint()
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
		revoke(t, f, c.SessionID)
		if _, err := f.ver.Verify(ctx, raw, testAudience); reasonOf(err) != ReasonRevoked {
			t.Fatalf("got %v, want %q", err, ReasonRevoked)
		}
	})
	t.Run("an offline token without sid is checked by jti", func(t *testing.T) {
		f := newFixture(t)
		c := f.claims()
		c.SessionID = ""
		c.Reason = "break-glass: INC-42"
		raw, minted, err := f.minter.Mint(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.ver.Verify(ctx, raw, testAudience)
		if err != nil {
			t.Fatal(err)
		}
		if got.Reason != "break-glass: INC-42" {
			t.Fatalf("reason claim %q", got.Reason)
		}
		revoke(t, f, minted.ID)
		if _, err := f.ver.Verify(ctx, raw, testAudience); reasonOf(err) != ReasonRevoked {
			t.Fatalf("got %v, want %q", err, ReasonRevoked)
		}
	})
	t.Run("a failing revocation lookup fails closed with an error that is not a VerifyError", func(t *testing.T) {
		f := newFixture(t)
		raw, _ := f.mint()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := f.ver.Verify(cctx, raw, testAudience)
		if err == nil {
			t.Fatal("Verify accepted a token whose revocation it could not check")
		}
		var ve *VerifyError
		if errors.As(err, &ve) {
			t.Fatalf("got a VerifyError %v; an outage is not a bad token", err)
		}
	})
}

func TestVerifyCache(t *testing.T) {
	ctx := context.Background()
	t.Run("a cached token is refused after its exp", func(t *testing.T) {
		f := newFixture(t)
		raw, c := f.mint()
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
		f.clock.Step(c.Expiry.Sub(f.clock.Now()) + DefaultLeeway)
		if _, err := f.ver.Verify(ctx, raw, testAudience); reasonOf(err) != ReasonExpired {
			t.Fatalf("got %v, want %q", err, ReasonExpired)
		}
		if f.ver.cache.get(ptr(sha256.Sum256([]byte(raw))), f.clock.Now()) != nil {
			t.Fatal("the cache returned an entry past its token's exp")
		}
	})
	t.Run("the audience is checked on every cache hit", func(t *testing.T) {
		f := newFixture(t)
		raw, _ := f.mint()
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ver.Verify(ctx, raw, []string{"cluster-b"}); reasonOf(err) != ReasonAudience {
			t.Fatalf("got %v, want %q", err, ReasonAudience)
		}
		if f.hits.Load() != 1 {
			t.Fatalf("hits = %d, want 1", f.hits.Load())
		}
	})
	t.Run("a cached token whose key was deleted from the store is refused after a reload", func(t *testing.T) {
		f := newFixture(t)
		raw, _ := f.mint()
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
		active, _ := f.km.ActiveKey()
		f.clock.Step(time.Second)
		if err := f.km.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.store.DeleteSigningKey(ctx, active.ID); err != nil {
			t.Fatal(err)
		}
		if err := f.km.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ver.Verify(ctx, raw, testAudience); reasonOf(err) != ReasonUnknownKey {
			t.Fatalf("got %v, want %q", err, ReasonUnknownKey)
		}
	})
	t.Run("the cache stays within its size", func(t *testing.T) {
		f := newFixture(t)
		ver, err := NewVerifier(f.km, testIssuer, f.store, VerifierOptions{Clock: f.clock, CacheSize: 32})
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			raw, _ := f.mint()
			if _, err := ver.Verify(ctx, raw, testAudience); err != nil {
				t.Fatal(err)
			}
		}
		if n := ver.cache.len(); n > 32 {
			t.Fatalf("cache holds %d entries, more than its size 32", n)
		}
	})
	t.Run("a disabled cache still verifies", func(t *testing.T) {
		f := newFixture(t)
		ver, err := NewVerifier(f.km, testIssuer, f.store, VerifierOptions{Clock: f.clock, CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := f.mint()
		for range 2 {
			if _, err := ver.Verify(ctx, raw, testAudience); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestVerifyPicksUpAKeyMadeByAnotherReplica(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	shared := &countingStore{Store: memory.New()}
	a := newReplica(t, shared, clock)
	b := newReplica(t, shared, clock)
	clock.Step(time.Second)
	if err := a.km.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	raw, _ := a.mint()
	t.Run("replica B verifies a token signed with a key replica A has just made", func(t *testing.T) {
		if _, err := b.ver.Verify(ctx, raw, testAudience); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tokens with unknown kids reload the store at most once per interval", func(t *testing.T) {
		stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		clock.Step(kidMissReloadInterval)
		before := shared.lists.Load()
		for range 50 {
			kid, _ := thumbprint(&stranger.PublicKey)
			tok := assemble(t, map[string]any{"alg": "ES256", "kid": kid}, b.wirePayload(), es256(t, stranger))
			if _, err := b.ver.Verify(ctx, tok, testAudience); reasonOf(err) != ReasonUnknownKey {
				t.Fatalf("got %v, want %q", err, ReasonUnknownKey)
			}
		}
		if n := shared.lists.Load() - before; n != 1 {
			t.Fatalf("50 unknown kids within one interval listed the store %d times, want 1", n)
		}
		clock.Step(kidMissReloadInterval)
		kid, _ := thumbprint(&stranger.PublicKey)
		tok := assemble(t, map[string]any{"alg": "ES256", "kid": kid}, b.wirePayload(), es256(t, stranger))
		_, _ = b.ver.Verify(ctx, tok, testAudience)
		if n := shared.lists.Load() - before; n != 2 {
			t.Fatalf("after the interval the store was listed %d times in all, want 2", n)
		}
	})
}
