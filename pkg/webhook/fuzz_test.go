package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// FuzzTokenReviewDecode sends arbitrary bytes as the body of a TokenReview
// for c1 through the whole handler (decoding, audiences, authentication,
// policy, encoding): it must never panic, never answer 5xx, and every answer
// must be a TokenReview (200) or a Status (4xx).
//
//	go test ./pkg/webhook -run '^$' -fuzz FuzzTokenReviewDecode -fuzztime 60s
func FuzzTokenReviewDecode(f *testing.F) {
	fx := newFixture(f)
	tok := fx.mint(claimsFor(clusterC1))
	priv, kid := fx.activeKey()
	forged := validPayload()
	forged["iss"] = "https://evil.example.com"

	for _, v := range versions {
		f.Add(reviewBody(f, v, tok))
		f.Add(reviewBody(f, v, tok, audDefault, audElsewhere))
		f.Add(reviewBody(f, v, tok, audElsewhere))
		f.Add(reviewBody(f, v, ""))
		f.Add(reviewBody(f, v, "not-a-jwt"))
		f.Add(reviewBody(f, v, signES256(f, priv, map[string]string{"alg": "ES256", "kid": kid}, forged)))
		f.Add(reviewBody(f, v, b64JSON(f, map[string]string{"alg": "none"})+"."+b64JSON(f, validPayload())+"."))
	}
	for _, s := range []string{
		"",
		"null",
		"{}",
		"[]",
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"}`,
		`{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":1}}`,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"a.b.c","audiences":null}}`,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"extra":{"a":["b"]}},"status":{"authenticated":true,"user":{"username":"admin"}}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`,
		`{"apiVersion":"v1","kind":"Status","code":500}`,
		`{"apiVersion":"v1","kind":"WatchEvent","type":"ADDED","object":{}}`,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","metadata":{"name":"x","labels":{"a":"b"},"managedFields":[{}]}}`,
		"apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: " + tok + "\n",
		"apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: &a\n  token: *a\n",
		"k8s\x00\x0a\x00",
		"\xef\xbb\xbf{\"kind\":\"TokenReview\"}",
	} {
		f.Add([]byte(s))
	}
	// The same review in protobuf, which the universal deserializer also reads.
	var pb bytes.Buffer
	if err := protobuf.NewSerializer(scheme, scheme).Encode(&authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: tok, Audiences: []string{audDefault}},
	}, &pb); err != nil {
		f.Fatal(err)
	}
	f.Add(pb.Bytes())

	f.Fuzz(func(t *testing.T, body []byte) {
		res := fx.serve(http.MethodPost, PathPrefix+"/"+clusterC1, body)
		switch {
		case res.code >= 500:
			t.Fatalf("HTTP %d for a client's body: %s", res.code, res.body)
		case res.code == http.StatusOK:
			var out reviewResponse
			if err := json.Unmarshal(res.body, &out); err != nil || out.Kind != "TokenReview" ||
				(out.APIVersion != "authentication.k8s.io/v1" && out.APIVersion != "authentication.k8s.io/v1beta1") {
				t.Fatalf("HTTP 200 answer is not a TokenReview: %s", res.body)
			}
			if out.Status.Authenticated && out.Status.User.Username != "carol" {
				t.Fatalf("authenticated someone no token was minted for: %+v", out.Status.User)
			}
			if !out.Status.Authenticated && out.Status.Error == "" {
				t.Fatalf("refusal without a reason: %s", res.body)
			}
		case res.code >= 400:
			var s metav1.Status
			if err := json.Unmarshal(res.body, &s); err != nil || s.Kind != "Status" || int(s.Code) != res.code {
				t.Fatalf("HTTP %d answer is not a Status: %s", res.code, res.body)
			}
			if strings.Contains(s.Message, tok) {
				t.Fatalf("the Status echoes the token")
			}
		default:
			t.Fatalf("HTTP %d", res.code)
		}
	})
}
