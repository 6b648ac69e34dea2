package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/token"
)

var versions = []string{"v1", "v1beta1"}

func TestReviewAnswersInTheVersionAsked(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))
	for _, version := range versions {
		t.Run(version, func(t *testing.T) {
			res := f.review(version, clusterC1, tok)
			got := res.review(t)
			if want := "authentication.k8s.io/" + version; got.APIVersion != want {
				t.Errorf("apiVersion %q, want %q", got.APIVersion, want)
			}
			if got.Metadata.UID != "review-uid" {
				t.Errorf("metadata.uid %q, want the request's", got.Metadata.UID)
			}
			if len(got.Spec) != 0 {
				t.Errorf("the answer echoes a spec: %v", got.Spec)
			}
			st := got.Status
			if !st.Authenticated || st.Error != "" {
				t.Fatalf("authenticated=%v error=%q, want true", st.Authenticated, st.Error)
			}
			if st.User.Username != "carol" || st.User.UID != "uid-carol" || !slices.Equal(st.User.Groups, []string{"ops", "oncall"}) {
				t.Errorf("user = %+v, want carol (uid-carol) in ops, oncall", st.User)
			}
			for key, want := range map[string]string{
				authn.ExtraCluster:          clusterC1,
				authn.ExtraSessionID:        "session-carol",
				authn.ExtraIdentityProvider: "corp",
			} {
				if v := st.User.Extra[key]; len(v) != 1 || v[0] != want {
					t.Errorf("extra %s = %v, want [%s]", key, v, want)
				}
			}
			if v := st.User.Extra[authn.ExtraTokenID]; len(v) != 1 || v[0] == "" {
				t.Errorf("extra %s = %v, want the token's jti", authn.ExtraTokenID, v)
			}
			if st.Audiences != nil {
				t.Errorf("status.audiences = %v, want none (none were asked for)", st.Audiences)
			}
			res.assertNoSecret(t, tok)
		})
	}
}

func TestReviewAudiences(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))
	// c1's apiAudiences are [audDefault, audC1].
	for _, tc := range []struct {
		name      string
		requested []string
		want      []string // nil: status.audiences absent
		authn     bool
	}{
		{name: "none requested: authenticated, no status.audiences", requested: nil, want: nil, authn: true},
		{name: "one requested, an API audience", requested: []string{audDefault}, want: []string{audDefault}, authn: true},
		{name: "the other API audience", requested: []string{audC1}, want: []string{audC1}, authn: true},
		{name: "several requested: the intersection, in the order asked", requested: []string{audElsewhere, audC1, audDefault}, want: []string{audC1, audDefault}, authn: true},
		{name: "duplicates are answered once", requested: []string{audDefault, audDefault}, want: []string{audDefault}, authn: true},
		{name: "none in common: not authenticated", requested: []string{audElsewhere}, authn: false},
		{name: "the cluster name is not an API audience", requested: []string{clusterC1}, authn: false},
	} {
		for _, version := range versions {
			t.Run(tc.name+"/"+version, func(t *testing.T) {
				res := f.review(version, clusterC1, tok, tc.requested...)
				st := res.review(t).Status
				if st.Authenticated != tc.authn {
					t.Fatalf("authenticated=%v (error %q), want %v", st.Authenticated, st.Error, tc.authn)
				}
				if !tc.authn {
					if st.Error == "" || st.Audiences != nil || st.User.Username != "" {
						t.Errorf("refusal = %+v, want only a reason", st)
					}
					return
				}
				if !slices.Equal(st.Audiences, tc.want) || (tc.want == nil) != (st.Audiences == nil) {
					t.Errorf("status.audiences = %#v, want %#v", st.Audiences, tc.want)
				}
			})
		}
	}
}

// TestRequestErrors: a request that is not a TokenReview for a known cluster
// is a 4xx with a Status body, never a 5xx, and never echoes the token.
func TestRequestErrors(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))
	valid := reviewBody(t, "v1", tok)
	const v1Head = `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",`
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   []byte
		code   int
		reason string // metav1.Status.Reason
	}{
		{"GET", http.MethodGet, "/tokenreview/c1", nil, http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{"PUT", http.MethodPut, "/tokenreview/c1", valid, http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{"DELETE", http.MethodDelete, "/tokenreview/c1", nil, http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{"unknown cluster", http.MethodPost, "/tokenreview/nope", valid, http.StatusNotFound, "NotFound"},
		{"no cluster, several configured", http.MethodPost, "/tokenreview", valid, http.StatusBadRequest, "BadRequest"},
		{"no cluster, trailing slash", http.MethodPost, "/tokenreview/", valid, http.StatusBadRequest, "BadRequest"},
		{"a path below the cluster", http.MethodPost, "/tokenreview/c1/extra", valid, http.StatusBadRequest, "BadRequest"},
		{"empty body", http.MethodPost, "/tokenreview/c1", nil, http.StatusBadRequest, "BadRequest"},
		{"whitespace body", http.MethodPost, "/tokenreview/c1", []byte(" \n\t"), http.StatusBadRequest, "BadRequest"},
		{"malformed JSON", http.MethodPost, "/tokenreview/c1", []byte(`{"apiVersion":`), http.StatusBadRequest, "BadRequest"},
		{"malformed JSON around the token", http.MethodPost, "/tokenreview/c1", []byte(v1Head + `"spec":{"token":"` + tok + `"`), http.StatusBadRequest, "BadRequest"},
		{"control character after the token", http.MethodPost, "/tokenreview/c1", []byte(v1Head + `"spec":{"token":"` + tok + "\x01\"}}"), http.StatusBadRequest, "BadRequest"},
		{"spec.token not a string", http.MethodPost, "/tokenreview/c1", []byte(v1Head + `"spec":{"token":{"t":"` + tok + `"}}}`), http.StatusBadRequest, "BadRequest"},
		{"spec.audiences not a list", http.MethodPost, "/tokenreview/c1", []byte(v1Head + `"spec":{"token":"` + tok + `","audiences":"` + tok + `"}}`), http.StatusBadRequest, "BadRequest"},
		{"JSON null", http.MethodPost, "/tokenreview/c1", []byte(`null`), http.StatusBadRequest, "BadRequest"},
		{"JSON array", http.MethodPost, "/tokenreview/c1", []byte(`[` + string(valid) + `]`), http.StatusBadRequest, "BadRequest"},
		{"no kind", http.MethodPost, "/tokenreview/c1", []byte(`{"apiVersion":"authentication.k8s.io/v1","spec":{"token":"` + tok + `"}}`), http.StatusBadRequest, "BadRequest"},
		{"no apiVersion", http.MethodPost, "/tokenreview/c1", []byte(`{"kind":"TokenReview","spec":{"token":"` + tok + `"}}`), http.StatusBadRequest, "BadRequest"},
		{"a Pod", http.MethodPost, "/tokenreview/c1", []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + tok + `"}}`), http.StatusBadRequest, "BadRequest"},
		{"a Status (registered, but not a TokenReview)", http.MethodPost, "/tokenreview/c1", []byte(`{"apiVersion":"v1","kind":"Status","message":"` + tok + `"}`), http.StatusBadRequest, "BadRequest"},
		{"a TokenRequest", http.MethodPost, "/tokenreview/c1", []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","status":{"token":"` + tok + `"}}`), http.StatusBadRequest, "BadRequest"},
		{"an unknown version", http.MethodPost, "/tokenreview/c1", []byte(`{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"` + tok + `"}}`), http.StatusBadRequest, "BadRequest"},
		{"oversized body", http.MethodPost, "/tokenreview/c1", oversizedBody(tok), http.StatusRequestEntityTooLarge, "RequestEntityTooLarge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.serve(tc.method, tc.path, tc.body)
			if res.code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", res.code, tc.code, res.body)
			}
			if !strings.HasPrefix(res.contentType, "application/json") {
				t.Errorf("Content-Type %q, want application/json", res.contentType)
			}
			if s := res.status(t); string(s.Reason) != tc.reason || s.Message == "" {
				t.Errorf("Status reason %q message %q, want reason %s and a message", s.Reason, s.Message, tc.reason)
			}
			res.assertNoSecret(t, tok)
			if d, ok := res.annotations[AnnotationDecision]; ok {
				t.Errorf("a malformed request was audited with decision %q", d)
			}
		})
	}
}

// oversizedBody is a valid v1 TokenReview of just over MaxBodyBytes.
func oversizedBody(tok string) []byte {
	pad := strings.Repeat("x", MaxBodyBytes)
	return []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"name":"` + pad + `"},"spec":{"token":"` + tok + `"}}`)
}

func TestBodyAtTheLimitIsReviewed(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))
	head := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"name":"`
	tail := `"},"spec":{"token":"` + tok + `"}}`
	body := head + strings.Repeat("x", MaxBodyBytes-len(head)-len(tail)) + tail
	if len(body) != MaxBodyBytes {
		t.Fatalf("body is %d bytes", len(body))
	}
	if st := f.serve(http.MethodPost, "/tokenreview/c1", []byte(body)).review(t).Status; !st.Authenticated {
		t.Fatalf("a %d-byte review was refused: %q", MaxBodyBytes, st.Error)
	}
}

func TestSingleClusterNeedsNoClusterInThePath(t *testing.T) {
	f := newFixtureWith(t, fixtureOptions{config: `apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: ` + testIssuer + `
clusters:
- name: c1
  access:
    groups: [ops]
`})
	tok := f.mint(claimsFor(clusterC1))
	for _, path := range []string{"/tokenreview", "/tokenreview/", "/tokenreview/c1"} {
		st := f.serve(http.MethodPost, path, reviewBody(t, "v1", tok)).review(t).Status
		if !st.Authenticated || st.User.Extra[authn.ExtraCluster][0] != clusterC1 {
			t.Errorf("%s: %+v, want carol authenticated for c1", path, st)
		}
	}
}

// hostileToken builds a token that must not authenticate at /tokenreview/c1.
type hostileToken struct {
	name  string
	make  func(t *testing.T, f *fixture) string
	setup func(t *testing.T, f *fixture, tok string) // after make, before review
	// reason is a substring of status.error ("" = any non-empty reason).
	reason string
}

func hostileTokens() []hostileToken {
	tamper := func(s string) string {
		// Change a character in the middle, keeping the encoding valid.
		b := []byte(s)
		i := len(b) / 2
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	return []hostileToken{
		{name: "empty", make: func(*testing.T, *fixture) string { return "" }, reason: "no token"},
		{name: "alg none", reason: token.ReasonUnsupportedAlgorithm, make: func(t *testing.T, f *fixture) string {
			return b64JSON(t, map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64JSON(t, validPayload()) + "."
		}},
		{name: "alg none with a signature", reason: token.ReasonUnsupportedAlgorithm, make: func(t *testing.T, f *fixture) string {
			_, kid := f.activeKey()
			return b64JSON(t, map[string]string{"alg": "none", "kid": kid}) + "." + b64JSON(t, validPayload()) + "." + b64.EncodeToString([]byte("sig"))
		}},
		{name: "HS256 signed with the public key", reason: token.ReasonUnsupportedAlgorithm, make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			input := b64JSON(t, map[string]string{"alg": "HS256", "kid": kid, "typ": "JWT"}) + "." + b64JSON(t, validPayload())
			mac := hmac.New(sha256.New, pubPEM)
			mac.Write([]byte(input))
			return input + "." + b64.EncodeToString(mac.Sum(nil))
		}},
		{name: "RS256 header", reason: token.ReasonUnsupportedAlgorithm, make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			return signES256(t, priv, map[string]string{"alg": "RS256", "kid": kid}, validPayload())
		}},
		{name: "unknown kid, signed with our key", reason: token.ReasonUnknownKey, make: func(t *testing.T, f *fixture) string {
			priv, _ := f.activeKey()
			return signES256(t, priv, map[string]string{"alg": "ES256", "kid": randomString(32)[:43], "typ": "JWT"}, validPayload())
		}},
		{name: "unknown kid, another key", reason: token.ReasonUnknownKey, make: func(t *testing.T, f *fixture) string {
			return signES256(t, newP256(t), map[string]string{"alg": "ES256", "kid": randomString(32)[:43]}, validPayload())
		}},
		{name: "no kid", reason: token.ReasonUnknownKey, make: func(t *testing.T, f *fixture) string {
			priv, _ := f.activeKey()
			return signES256(t, priv, map[string]string{"alg": "ES256"}, validPayload())
		}},
		{name: "our kid, another key", reason: token.ReasonBadSignature, make: func(t *testing.T, f *fixture) string {
			_, kid := f.activeKey()
			return signES256(t, newP256(t), map[string]string{"alg": "ES256", "kid": kid}, validPayload())
		}},
		{name: "embedded jwk header", reason: token.ReasonUnsupportedHeader, make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			return signES256(t, priv, map[string]any{"alg": "ES256", "kid": kid, "jwk": map[string]string{"kty": "EC"}}, validPayload())
		}},
		{name: "crit header", reason: token.ReasonUnsupportedHeader, make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			return signES256(t, priv, map[string]any{"alg": "ES256", "kid": kid, "crit": []string{"exp"}}, validPayload())
		}},
		{name: "wrong iss, signed with our key", reason: authn.ReasonNotOurs, make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			p := validPayload()
			p["iss"] = "https://evil.example.com"
			return signES256(t, priv, map[string]string{"alg": "ES256", "kid": kid}, p)
		}},
		{name: "no iss", reason: authn.ReasonNotOurs, make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			p := validPayload()
			delete(p, "iss")
			return signES256(t, priv, map[string]string{"alg": "ES256", "kid": kid}, p)
		}},
		{name: "wrong aud: a token for another cluster", reason: token.ReasonAudience, make: func(t *testing.T, f *fixture) string {
			return f.mint(claimsFor(clusterC2))
		}},
		{name: "aud is an API audience, not the cluster", reason: token.ReasonAudience, make: func(t *testing.T, f *fixture) string {
			return f.mint(claimsFor(audDefault))
		}},
		{name: "missing username", reason: token.ReasonMissingClaim, make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			p := validPayload()
			delete(p, "username")
			return signES256(t, priv, map[string]string{"alg": "ES256", "kid": kid}, p)
		}},
		{name: "expired", reason: token.ReasonExpired, make: func(t *testing.T, f *fixture) string {
			return f.mintAt(-2*time.Hour, time.Hour)
		}},
		{name: "not yet valid", reason: token.ReasonNotYetValid, make: func(t *testing.T, f *fixture) string {
			return f.mintAt(time.Hour, time.Hour)
		}},
		{name: "tampered payload", reason: token.ReasonBadSignature, make: func(t *testing.T, f *fixture) string {
			parts := strings.Split(f.mint(claimsFor(clusterC1)), ".")
			p := validPayload()
			p["username"], p["groups"] = "system:admin", []string{"system:masters"}
			return parts[0] + "." + b64JSON(t, p) + "." + parts[2]
		}},
		{name: "tampered payload byte", reason: "", make: func(t *testing.T, f *fixture) string {
			parts := strings.Split(f.mint(claimsFor(clusterC1)), ".")
			return parts[0] + "." + tamper(parts[1]) + "." + parts[2]
		}},
		{name: "tampered signature", reason: token.ReasonBadSignature, make: func(t *testing.T, f *fixture) string {
			parts := strings.Split(f.mint(claimsFor(clusterC1)), ".")
			return parts[0] + "." + parts[1] + "." + tamper(parts[2])
		}},
		{name: "zeroed signature", reason: token.ReasonBadSignature, make: func(t *testing.T, f *fixture) string {
			parts := strings.Split(f.mint(claimsFor(clusterC1)), ".")
			return parts[0] + "." + parts[1] + "." + b64.EncodeToString(make([]byte, 64))
		}},
		{name: "truncated in the signature", reason: token.ReasonBadSignature, make: func(t *testing.T, f *fixture) string {
			tok := f.mint(claimsFor(clusterC1))
			return tok[:len(tok)-10]
		}},
		{name: "truncated after the payload", reason: "", make: func(t *testing.T, f *fixture) string {
			tok := f.mint(claimsFor(clusterC1))
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}},
		{name: "truncated to header and payload", reason: "", make: func(t *testing.T, f *fixture) string {
			tok := f.mint(claimsFor(clusterC1))
			return tok[:strings.LastIndexByte(tok, '.')]
		}},
		{name: "truncated in the payload", reason: "", make: func(t *testing.T, f *fixture) string {
			tok := f.mint(claimsFor(clusterC1))
			return tok[:len(tok)/2]
		}},
		{name: "a fourth segment", reason: "", make: func(t *testing.T, f *fixture) string {
			return f.mint(claimsFor(clusterC1)) + ".AAAA"
		}},
		{name: "oversized (> 64 KiB), signed with our key", reason: "", make: func(t *testing.T, f *fixture) string {
			priv, kid := f.activeKey()
			p := validPayload()
			p["groups"] = []string{strings.Repeat("g", token.MaxTokenSize)}
			tok := signES256(t, priv, map[string]string{"alg": "ES256", "kid": kid}, p)
			if len(tok) <= token.MaxTokenSize {
				t.Fatalf("token is only %d bytes", len(tok))
			}
			return tok
		}},
		{name: "not a JWT", reason: authn.ReasonNotOurs, make: func(*testing.T, *fixture) string { return "definitely-not-a-jwt" }},
		{name: "a bearer header value", reason: "", make: func(t *testing.T, f *fixture) string { return "Bearer " + f.mint(claimsFor(clusterC1)) }},
		{name: "three dots of garbage", reason: "", make: func(*testing.T, *fixture) string { return "..." }},
		{name: "binary garbage", reason: "", make: func(*testing.T, *fixture) string { return "\x00\xff\xfe." + string([]byte{0xc3, 0x28}) + ".\u2028" }},
		{name: "a token from another Portcullis (other keys, same issuer)", reason: token.ReasonUnknownKey, make: func(t *testing.T, f *fixture) string {
			other := newFixture(t)
			return other.mint(claimsFor(clusterC1))
		}},
		{
			name: "revoked session", reason: token.ReasonRevoked,
			make: func(t *testing.T, f *fixture) string { return f.mint(claimsFor(clusterC1)) },
			setup: func(t *testing.T, f *fixture, tok string) {
				// Authenticated (and cached) first: the revocation must defeat the cache.
				if st := f.review("v1", clusterC1, tok).review(t).Status; !st.Authenticated {
					t.Fatalf("before revocation: %q", st.Error)
				}
				revoke(t, f, "session-carol")
			},
		},
		{
			name: "revoked token (jti)", reason: token.ReasonRevoked,
			make: func(t *testing.T, f *fixture) string {
				c := claimsFor(clusterC1)
				c.SessionID = ""
				raw, claims, err := f.minter.Mint(context.Background(), c)
				if err != nil {
					t.Fatal(err)
				}
				revoke(t, f, claims.ID)
				return raw
			},
		},
		{name: "refused by policy", reason: "not admitted to cluster c1", make: func(t *testing.T, f *fixture) string {
			c := claimsFor(clusterC1)
			c.Username, c.Groups = "mallory", []string{"nobody"}
			return f.mint(c)
		}},
		{name: "refused by policy on the other cluster", reason: "not admitted to cluster c2", make: func(t *testing.T, f *fixture) string {
			return f.mint(claimsFor(clusterC2))
		}},
	}
}

func revoke(t *testing.T, f *fixture, id string) {
	t.Helper()
	now := time.Now()
	if err := f.st.Revoke(context.Background(), store.Revocation{ID: id, Reason: "test", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

func TestHostileTokens(t *testing.T) {
	for _, tc := range hostileTokens() {
		for _, version := range versions {
			t.Run(tc.name+"/"+version, func(t *testing.T) {
				f := newFixture(t)
				tok := tc.make(t, f)
				if tc.setup != nil {
					tc.setup(t, f, tok)
				}
				cluster := clusterC1
				if strings.HasSuffix(tc.name, "on the other cluster") {
					cluster = clusterC2
				}
				res := f.review(version, cluster, tok)
				got := res.review(t)
				if want := "authentication.k8s.io/" + version; got.APIVersion != want {
					t.Errorf("apiVersion %q, want %q", got.APIVersion, want)
				}
				st := got.Status
				if st.Authenticated {
					t.Fatalf("authenticated as %+v", st.User)
				}
				t.Logf("status.error: %q", st.Error)
				if st.Error == "" || !strings.Contains(st.Error, tc.reason) {
					t.Errorf("status.error %q, want a reason containing %q", st.Error, tc.reason)
				}
				if st.User.Username != "" || len(st.User.Groups) != 0 || len(st.User.Extra) != 0 || st.Audiences != nil {
					t.Errorf("a refusal carries a user or audiences: %+v", st)
				}
				res.assertNoSecret(t, tok)
				if res.annotations[AnnotationDecision] != "deny" || res.annotations[AnnotationReason] != st.Error || res.annotations[AnnotationCluster] != cluster {
					t.Errorf("audit annotations %v, want decision deny, the reason and the cluster", res.annotations)
				}
			})
		}
	}
}

func TestAuditAnnotations(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))

	t.Run("an allowed review is annotated with the decision and the user", func(t *testing.T) {
		res := f.review("v1", clusterC1, tok, audDefault)
		if !res.review(t).Status.Authenticated {
			t.Fatal("not authenticated")
		}
		want := map[string]string{
			AnnotationDecision: "allow",
			AnnotationCluster:  clusterC1,
			AnnotationUser:     "carol",
			AnnotationGroups:   "ops,oncall",
			AnnotationSource:   "portcullis",
		}
		for k, v := range want {
			if res.annotations[k] != v {
				t.Errorf("annotation %s = %q, want %q", k, res.annotations[k], v)
			}
		}
		if _, ok := res.annotations[AnnotationReason]; ok {
			t.Errorf("an allowed review has a reason annotation: %v", res.annotations)
		}
		res.assertNoSecret(t, tok)
	})

	t.Run("a review refused by audience names no user", func(t *testing.T) {
		res := f.review("v1", clusterC1, tok, audElsewhere)
		if res.annotations[AnnotationDecision] != "deny" || res.annotations[AnnotationReason] == "" {
			t.Errorf("annotations %v, want decision deny with a reason", res.annotations)
		}
		if _, ok := res.annotations[AnnotationUser]; ok {
			t.Errorf("a review refused before authentication names a user: %v", res.annotations)
		}
		res.assertNoSecret(t, tok)
	})

	t.Run("refused by policy names who was refused", func(t *testing.T) {
		c := claimsFor(clusterC1)
		c.Username, c.Groups = "mallory", []string{"nobody"}
		bad := f.mint(c)
		res := f.review("v1beta1", clusterC1, bad)
		if res.review(t).Status.Authenticated {
			t.Fatal("mallory was authenticated")
		}
		for k, v := range map[string]string{AnnotationDecision: "deny", AnnotationUser: "mallory", AnnotationGroups: "nobody", AnnotationCluster: clusterC1} {
			if res.annotations[k] != v {
				t.Errorf("annotation %s = %q, want %q", k, res.annotations[k], v)
			}
		}
		if !strings.Contains(res.annotations[AnnotationReason], "not admitted") {
			t.Errorf("reason annotation %q, want the policy's", res.annotations[AnnotationReason])
		}
		res.assertNoSecret(t, bad)
	})

	t.Run("without an audit context the handler still answers", func(t *testing.T) {
		// Outside the generic chain (no audit filter) the handler still answers.
		req, err := http.NewRequest(http.MethodPost, PathPrefix+"/c1", strings.NewReader(string(reviewBody(t, "v1", tok))))
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		f.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d", rec.Code)
		}
	})
}

// failingRevoker is a store that cannot answer revocation lookups.
type failingRevoker struct{}

func (failingRevoker) IsRevoked(context.Context, ...string) (bool, error) {
	return false, errors.New("store unavailable")
}

// TestInternalErrorIsA5xx: when Portcullis cannot decide (the revocation
// store is down), the answer is a 500 Status, not authenticated: false.
// kube-apiserver caches authenticated: false for
// --authentication-token-webhook-cache-ttl but neither caches errors nor
// stops retrying them, so an outage must not look like a bad token.
func TestInternalErrorIsA5xx(t *testing.T) {
	f := newFixtureWith(t, fixtureOptions{revoker: failingRevoker{}})
	tok := f.mint(claimsFor(clusterC1))
	for _, version := range versions {
		res := f.review(version, clusterC1, tok)
		if res.code != http.StatusInternalServerError {
			t.Fatalf("%s: HTTP %d, want 500: %s", version, res.code, res.body)
		}
		if s := res.status(t); s.Message != "Internal error occurred: "+authn.ReasonInternal {
			t.Errorf("%s: message %q", version, s.Message)
		}
		res.assertNoSecret(t, tok)
		if res.annotations[AnnotationDecision] != "error" || res.annotations[AnnotationReason] != authn.ReasonInternal {
			t.Errorf("%s: annotations %v, want decision error", version, res.annotations)
		}
	}
}
