package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// kubeAPIServerBody is a review as kube-apiserver's webhook token
// authenticator sends it: a TokenReview with only a spec, typed by its
// versioning codec and encoded by apimachinery's JSON serializer (an empty
// metadata and status, a trailing newline).
func kubeAPIServerBody(t testing.TB, version, tok string, audiences ...string) []byte {
	t.Helper()
	obj := &authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/" + version, Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: tok, Audiences: audiences},
	}
	var buf bytes.Buffer
	if err := k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, scheme, scheme, k8sjson.SerializerOptions{}).Encode(obj, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decodeBodies are bodies for which decodeBody must answer exactly as the
// universal deserializer does, and whether the fast path should take them.
func decodeBodies(t testing.TB, tok string) []struct {
	name string
	body string
	fast bool
} {
	const v1, v1b = `"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"`, `"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview"`
	spec := `"spec":{"token":"` + tok + `","audiences":["a","b"]}`
	return []struct {
		name string
		body string
		fast bool
	}{
		{"v1", string(reviewBody(t, "v1", tok, "a")), true},
		{"v1beta1", string(reviewBody(t, "v1beta1", tok, "a")), true},
		{"kube-apiserver v1", string(kubeAPIServerBody(t, "v1", tok, "https://kubernetes.default.svc")), true},
		{"kube-apiserver v1beta1", string(kubeAPIServerBody(t, "v1beta1", tok)), true},
		{"name and uid", `{` + v1 + `,"metadata":{"name":"n","uid":"u","creationTimestamp":null},` + spec + `}`, true},
		{"leading whitespace", " \r\n\t{" + v1 + "," + spec + "}\n", true},
		{"kind first", `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",` + spec + `}`, true},
		{"escaped kind", `{"apiVersion":"authentication.k8s.io/v1","kind":"Token\u0052eview",` + spec + `}`, true},
		{"status given", `{` + v1 + `,` + spec + `,"status":{"authenticated":true,"user":{"username":"admin","groups":["system:masters"]}}}`, true},
		{"labels", `{` + v1 + `,"metadata":{"labels":{"a":"b"}},` + spec + `}`, true},
		{"no spec", `{` + v1 + `}`, true},
		{"null audiences", `{` + v1 + `,"spec":{"token":"x","audiences":null}}`, true},
		{"v1beta1 by hand", `{` + v1b + `,` + spec + `}`, true},

		// The fast path must step aside for all of these.
		{"duplicate kind, TokenReview last", `{"apiVersion":"authentication.k8s.io/v1","kind":"Pod","kind":"TokenReview",` + spec + `}`, false},
		{"duplicate kind, Pod last", `{` + v1 + `,"kind":"Pod",` + spec + `}`, false},
		{"duplicate token", `{` + v1 + `,"spec":{"token":"a","token":"` + tok + `"}}`, false},
		{"Kind (case) after kind", `{` + v1 + `,"Kind":"Pod",` + spec + `}`, false},
		{"KIND (case) before kind", `{"KIND":"Pod",` + v1 + `,` + spec + `}`, false},
		{"APIVERSION", `{` + v1 + `,"APIVERSION":"v1",` + spec + `}`, false},
		{"apiversion only", `{"apiversion":"authentication.k8s.io/v1","kind":"TokenReview",` + spec + `}`, false},
		{"Kelvin sign kind", `{` + v1 + `,"\u212aind":"Pod",` + spec + `}`, false},
		{"Spec (case)", `{` + v1 + `,"Spec":{"token":"` + tok + `"}}`, false},
		{"Token (case)", `{` + v1 + `,"spec":{"Token":"` + tok + `"}}`, false},
		{"token and Token", `{` + v1 + `,"spec":{"token":"a","Token":"` + tok + `"}}`, false},
		{"unknown field", `{` + v1 + `,"extra":1,` + spec + `}`, false},
		{"unknown field in spec", `{` + v1 + `,"spec":{"token":"x","extra":{"a":["b"]}}}`, false},
		{"unknown field in status", `{` + v1 + `,` + spec + `,"status":{"user":{"name":"x"}}}`, false},
		{"v2", `{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview",` + spec + `}`, false},
		{"a Pod", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`, false},
		{"a Status", `{"apiVersion":"v1","kind":"Status","message":"m"}`, false},
		{"a TokenRequest", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","status":{"token":"` + tok + `"}}`, false},
		{"no kind", `{"apiVersion":"authentication.k8s.io/v1",` + spec + `}`, false},
		{"no apiVersion", `{"kind":"TokenReview",` + spec + `}`, false},
		{"empty object", `{}`, false},
		{"trailing garbage", `{` + v1 + `,` + spec + `}x`, false},
		{"two objects", `{` + v1 + `,` + spec + `}{}`, false},
		{"truncated", `{` + v1 + `,` + spec, false},
		{"token not a string", `{` + v1 + `,"spec":{"token":1}}`, false},
		{"audiences not a list", `{` + v1 + `,"spec":{"token":"x","audiences":"a"}}`, false},
		{"bad creationTimestamp", `{` + v1 + `,"metadata":{"creationTimestamp":"yesterday"},` + spec + `}`, false},
		{"control character", `{` + v1 + `,"spec":{"token":"a` + "\x01" + `"}}`, false},
		{"YAML flow mapping", `{apiVersion: authentication.k8s.io/v1, kind: TokenReview}`, false},
		{"YAML", "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: " + tok + "\n", false},
		{"YAML anchors", "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: &a\n  token: *a\n", false},
		{"byte-order mark", "\xef\xbb\xbf{" + v1 + "," + spec + "}", false},
		{"no-break space", "\u00a0{" + v1 + "," + spec + "}", false},
		{"null", "null", false},
		{"array", "[{" + v1 + "," + spec + "}]", false},
		{"empty", "", false},
		{"whitespace", " \n\t", false},
		{"protobuf prefix", "k8s\x00\x0a\x00", false},
	}
}

func TestDecodeMatchesTheUniversalDeserializer(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))
	bodies := decodeBodies(t, tok)
	var pb bytes.Buffer
	if err := protobuf.NewSerializer(scheme, scheme).Encode(&authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: tok, Audiences: []string{audDefault}},
	}, &pb); err != nil {
		t.Fatal(err)
	}
	bodies = append(bodies, struct {
		name string
		body string
		fast bool
	}{"protobuf", pb.String(), false})

	for _, tc := range bodies {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if _, fast := decodeJSON(body); fast != tc.fast {
				t.Errorf("fast path taken: %v, want %v", fast, tc.fast)
			}
			assertDecodesAsUniversal(t, body)
		})
	}
}

// assertDecodesAsUniversal fails if decodeBody answers body otherwise than
// the reference: the universal deserializer alone, then strictCheck's
// refusal of duplicate keys and of a missing spec (TestStrictDecoding pins
// those on their own).
func assertDecodesAsUniversal(t *testing.T, body []byte) {
	t.Helper()
	got, gotErr := decodeBody(body)
	want, obj, wantErr := decodeUniversalObject(body)
	if wantErr == nil {
		if wantErr = strictCheck(body, obj); wantErr != nil {
			want = review{}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, the universal deserializer %+v", redact(got), redact(want))
	}
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("error %v, the universal deserializer's %v", gotErr, wantErr)
	}
	if gotErr != nil {
		var g, w apierrors.APIStatus
		if !errors.As(gotErr, &g) || !errors.As(wantErr, &w) || !reflect.DeepEqual(g.Status(), w.Status()) {
			t.Fatalf("error %v, the universal deserializer's %v", gotErr, wantErr)
		}
	}
}

func redact(rv review) review {
	if rv.token != "" {
		rv.token = "<token>"
	}
	return rv
}

// TestKubeAPIServerBodyTakesTheFastPath guards the point of decodeJSON: what
// kube-apiserver really sends must not fall back.
func TestKubeAPIServerBodyTakesTheFastPath(t *testing.T) {
	for _, version := range versions {
		body := kubeAPIServerBody(t, version, "a.b.c", audDefault)
		rv, ok := decodeJSON(body)
		if !ok {
			t.Fatalf("%s: %s fell back to the universal deserializer", version, body)
		}
		if rv.token != "a.b.c" || !reflect.DeepEqual(rv.audiences, []string{audDefault}) || rv.v1beta1 != (version == "v1beta1") {
			t.Fatalf("%s: decoded %+v", version, rv)
		}
	}
}

// TestAnswersAreCompactJSON: reviews and errors are single-line JSON with
// Content-Type application/json.
func TestAnswersAreCompactJSON(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(claimsFor(clusterC1))
	for _, res := range []result{
		f.review("v1", clusterC1, tok),
		f.review("v1beta1", clusterC1, tok),
		f.serve(http.MethodPost, PathPrefix+"/"+clusterC1, []byte("{")),
		f.serve(http.MethodGet, PathPrefix+"/"+clusterC1, nil),
	} {
		if res.contentType != "application/json" {
			t.Errorf("Content-Type %q", res.contentType)
		}
		if bytes.ContainsAny(res.body, "\n") || !json.Valid(res.body) {
			t.Errorf("not compact JSON: %s", res.body)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, res.body); err != nil || !bytes.Equal(compact.Bytes(), res.body) {
			t.Errorf("not compact JSON: %s", res.body)
		}
		if strings.Contains(string(res.body), tok) {
			t.Errorf("the answer contains the token")
		}
	}
}

// FuzzDecodeMatchesUniversalDeserializer: for any body, the fast path either
// steps aside or decodes exactly what the universal deserializer would.
//
//	go test ./pkg/webhook -run '^$' -fuzz FuzzDecodeMatchesUniversalDeserializer -fuzztime 60s
func FuzzDecodeMatchesUniversalDeserializer(f *testing.F) {
	for _, tc := range decodeBodies(f, "h.p.s") {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		assertDecodesAsUniversal(t, body)
	})
}

// TestKubeAPIServerBodyTakesTheScanner: what kube-apiserver sends is read by
// scanReview, without reflection, and means what the reference decoder says.
func TestKubeAPIServerBodyTakesTheScanner(t *testing.T) {
	for _, version := range versions {
		for _, auds := range [][]string{nil, {audDefault}, {audDefault, "https://other.example"}} {
			body := kubeAPIServerBody(t, version, "a.b.c", auds...)
			if _, ok := scanReview(body); !ok {
				t.Fatalf("%s: scanReview refused %s", version, body)
			}
			assertDecodesAsUniversal(t, body)
		}
	}
	for _, body := range []string{
		`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"a"}}`,
		`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"a\u0062"}}`,
		`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"a"}} x`,
		`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"a","extra":1}}`,
		`{"Kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"a"}}`,
		`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"token":"a"}}`,
		`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"é"}}`,
		`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"a"},"status":{"authenticated":true}}`,
	} {
		if _, ok := scanReview([]byte(body)); ok {
			t.Errorf("scanReview took %s, which it must leave to the reference decoders", body)
		}
		assertDecodesAsUniversal(t, []byte(body))
	}
}
