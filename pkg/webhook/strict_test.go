package webhook

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// protobufReview is a v1 TokenReview in apimachinery's protobuf envelope
// whose TokenReview message is raw, however it was made.
func protobufReview(t testing.TB, raw []byte) []byte {
	t.Helper()
	unk := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"}, Raw: raw}
	b, err := unk.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("k8s\x00"), b...)
}

func marshalProto(t testing.TB, m interface{ Marshal() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStrictDecoding: a review whose meaning depends on which of two
// duplicate keys a reader keeps, or which has no spec, is a 400 in every
// format, at any depth, however the keys are spelled; bodies without either
// are answered as before.
func TestStrictDecoding(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))
	const head = `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",`

	// Protobuf: canonical, spec given twice (protobuf merges: the second
	// token wins), and no spec at all.
	var canonical bytes.Buffer
	if err := protobuf.NewSerializer(scheme, scheme).Encode(&authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: tok},
	}, &canonical); err != nil {
		t.Fatal(err)
	}
	garbageFirst := marshalProto(t, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "garbage"}})
	secondSpec := marshalProto(t, &authenticationv1.TokenReviewSpec{Token: tok})
	// Field 2 (spec), wire type 2 (length-delimited), again.
	twoSpecs := append(binary.AppendUvarint(append(garbageFirst, 0x12), uint64(len(secondSpec))), secondSpec...)
	noSpec := []byte{0x0a, 0x00} // an empty metadata, and nothing else

	for _, tc := range []struct {
		name string
		body string
		// want is "" for a review answered 200, else a part of the 400's message.
		want string
	}{
		{"a garbage token, then a valid one", head + `"spec":{"token":"garbage","token":"` + tok + `"}}`, `names "spec.token" twice`},
		{"a valid token, then a garbage one", head + `"spec":{"token":"` + tok + `","token":"garbage"}}`, `names "spec.token" twice`},
		{"two spec objects", head + `"spec":{"token":"garbage"},"spec":{"token":"` + tok + `"}}`, `names "spec" twice`},
		{"two kinds", `{"kind":"Pod","apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + tok + `"}}`, `names "kind" twice`},
		{"a key spelled with an escape the second time", head + `"spec":{"token":"garbage","to\u006ben":"` + tok + `"}}`, `names "spec.token" twice`},
		{"two audiences lists", head + `"spec":{"token":"` + tok + `","audiences":["x"],"audiences":["` + audDefault + `"]}}`, `names "spec.audiences" twice`},
		{"a duplicate in metadata.labels", head + `"metadata":{"labels":{"a":"1","a":"2"}},"spec":{"token":"` + tok + `"}}`, "names a key twice"},
		{"a duplicate inside an unknown member", head + `"spec":{"token":"` + tok + `","extra":{"k":[{"x":1,"x":2}]}}}`, "names a key twice"},
		{"a duplicate in status.user", head + `"spec":{"token":"` + tok + `"},"status":{"user":{"username":"a","username":"b"}}}`, `names "status.user.username" twice`},
		{"a duplicate key that is the token itself is not echoed", head + `"spec":{"token":"x","` + tok + `":1,"` + tok + `":2}}`, "names a key twice"},
		{"no spec", head[:len(head)-1] + `}`, "has no spec"},
		{"a null spec", head + `"spec":null}`, "has no spec"},
		{"a spec only in another case", head + `"Spec":{"token":"` + tok + `"}}`, "has no spec"},
		{"YAML with the token twice", "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: garbage\n  token: " + tok + "\n", "names a key twice"},
		{"YAML without a spec", "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\n", "has no spec"},
		{"protobuf with spec twice", string(protobufReview(t, twoSpecs)), "encoded canonically"},
		{"protobuf without a spec", string(protobufReview(t, noSpec)), "encoded canonically"},

		{"kube-apiserver's body", string(kubeAPIServerBody(t, "v1", tok, audDefault)), ""},
		{"an empty spec (a review of no token)", head + `"spec":{}}`, ""},
		{"the same key in two objects", head + `"metadata":{"name":"n"},"spec":{"token":"` + tok + `"},"status":{"user":{"name":"x"}}}`, ""},
		{"labels with distinct keys", head + `"metadata":{"labels":{"a":"1","A":"2"}},"spec":{"token":"` + tok + `"}}`, ""},
		{"YAML", "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: " + tok + "\n", ""},
		{"canonical protobuf", canonical.String(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.serve(http.MethodPost, PathPrefix+"/"+clusterC1, []byte(tc.body))
			res.assertNoSecret(t, tok)
			if tc.want == "" {
				res.review(t)
				return
			}
			if res.code != http.StatusBadRequest {
				t.Fatalf("HTTP %d, want 400: %s", res.code, res.body)
			}
			if s := res.status(t); s.Reason != metav1.StatusReasonBadRequest || !strings.Contains(s.Message, tc.want) {
				t.Fatalf("Status %s %q, want BadRequest mentioning %q", s.Reason, s.Message, tc.want)
			}
			if d, ok := res.annotations[AnnotationDecision]; ok {
				t.Errorf("a refused body was audited with decision %q", d)
			}
		})
	}
}
