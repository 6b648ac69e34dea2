package webhook

import (
	"bytes"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Strict reading of a TokenReview: a body the decoders read must also be
// unambiguous, or it is a 400 rather than an answer.
//
//   - No key may appear twice in any object, at any depth: the decoders keep
//     the last of duplicates, so {"spec":{"token":"garbage","token":"<valid>"}}
//     would be answered about the second token while a log, a proxy or a
//     filter in front may have looked at the first.
//   - The review must have a spec (an object; null counts as none): a
//     review without one is not a question about any token.
//
// scanReview, which reads what kube-apiserver sends, takes only bodies that
// pass both (it refuses duplicates and a missing spec, and steps aside), so
// these checks run only on the other decoders' path, after they have read
// the body: a warm review pays nothing for them.

// protobufPrefix starts every body apimachinery's protobuf serializer writes.
var protobufPrefix = []byte("k8s\x00")

// protobufSerializer re-encodes protobuf reviews for checkProtobuf.
var protobufSerializer = protobuf.NewSerializer(scheme, scheme)

// strictCheck refuses a body that decoded as obj (a v1 or v1beta1
// TokenReview) if it is ambiguous: a duplicate key, or no spec. The format
// is recognised as the universal deserializer recognises it.
func strictCheck(body []byte, obj runtime.Object) error {
	switch {
	case utilyaml.IsJSONBuffer(body):
		return checkJSON(body)
	case bytes.HasPrefix(body, protobufPrefix):
		return checkProtobuf(body, obj)
	}
	// YAML. The deserializer converts it to JSON keeping the last of
	// duplicate keys; the strict conversion refuses them instead, and is
	// otherwise the same.
	converted, err := yaml.YAMLToJSONStrict(body)
	if err != nil {
		return apierrors.NewBadRequest("the TokenReview names a key twice in one mapping: each key may appear only once")
	}
	return checkJSON(converted)
}

// checkJSON refuses a JSON document with a key given twice in any object at
// any depth (sigs.k8s.io/json's strict mode, the decoder apimachinery's JSON
// serializer uses, compares keys with their escapes decoded, so
// "to\u006ben" is the key token), or whose top-level object has no spec
// object. A document that is not valid JSON passes: the decoder has refused
// it already.
func checkJSON(body []byte) error {
	var doc any
	strictErrs, err := kjson.UnmarshalStrict(body, &doc)
	if err != nil {
		return nil
	}
	if len(strictErrs) > 0 {
		return apierrors.NewBadRequest("the TokenReview names " + describeDuplicate(strictErrs[0].Error()) + " twice: each key may appear only once")
	}
	top, _ := doc.(map[string]any)
	if _, ok := top["spec"].(map[string]any); !ok {
		return apierrors.NewBadRequest("the TokenReview has no spec: put the bearer token under spec.token")
	}
	return nil
}

// knownKeys are the member names of a TokenReview and its metadata, which
// messages may name; any other key is the client's text and is not echoed
// (it could be a token).
var knownKeys = map[string]bool{
	"apiVersion": true, "kind": true, "metadata": true, "spec": true, "status": true,
	"token": true, "audiences": true, "name": true, "uid": true, "namespace": true,
	"labels": true, "annotations": true, "creationTimestamp": true, "user": true,
	"authenticated": true, "error": true, "username": true, "groups": true, "extra": true,
}

// describeDuplicate names the duplicated key of a strict decoding error
// (`duplicate field "spec.token"`) when its whole path is made of known
// keys, and says "a key" otherwise.
func describeDuplicate(msg string) string {
	_, quoted, ok := strings.Cut(msg, `"`)
	path, _, ok2 := strings.Cut(quoted, `"`)
	if !ok || !ok2 || path == "" {
		return "a key"
	}
	for _, seg := range strings.Split(path, ".") {
		if i := strings.IndexByte(seg, '['); i >= 0 {
			seg = seg[:i]
		}
		if !knownKeys[seg] {
			return "a key"
		}
	}
	return strconv.Quote(path)
}

// checkProtobuf accepts a protobuf review only in the canonical encoding
// that apimachinery's protobuf serializer writes for the object it decoded
// to. Protobuf merges a field given twice (the last token wins, as with
// JSON's duplicate keys) and has no way to tell a missing spec from an empty
// one once decoded; re-encoding shows both, with anything else a canonical
// encoder would not write. kube-apiserver never sends protobuf reviews.
func checkProtobuf(body []byte, obj runtime.Object) error {
	var buf bytes.Buffer
	if obj == nil || protobufSerializer.Encode(obj, &buf) != nil || !bytes.Equal(buf.Bytes(), body) {
		return apierrors.NewBadRequest("a protobuf TokenReview must be encoded canonically, as apimachinery's protobuf serializer writes it: each field once, in order, with a spec")
	}
	return nil
}
