package webhook

import (
	"encoding/json"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// appendAnswer appends the TokenReview answer, byte for byte what
// encoding/json makes of the authentication.k8s.io TokenReview types (the
// reference, compared in TestAnswerEncodingMatchesEncodingJSON and its fuzz
// target), without reflection: it is written on every review. It is a
// measured exception to encoding with apimachinery's serializers or
// encoding/json: BenchmarkReviewWarm (docs/benchmarks.md) measures the
// review path it is on.
func appendAnswer(b []byte, apiVersion, name string, uid types.UID, created time.Time, oc outcome) []byte {
	b = append(b, `{"kind":"TokenReview","apiVersion":`...)
	b = appendString(b, apiVersion)
	b = append(b, `,"metadata":{`...)
	if name != "" {
		b = append(b, `"name":`...)
		b = appendString(b, name)
		b = append(b, ',')
	}
	if uid != "" {
		b = append(b, `"uid":`...)
		b = appendString(b, string(uid))
		b = append(b, ',')
	}
	b = append(b, `"creationTimestamp":"`...)
	b = created.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `"},"spec":{},"status":{`...)
	if oc.user != nil {
		b = append(b, `"authenticated":true,`...)
	}
	b = append(b, `"user":{`...)
	if u := oc.user; u != nil {
		first := true
		field := func(name string) {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, name...)
		}
		if u.Name != "" {
			field(`"username":`)
			b = appendString(b, u.Name)
		}
		if u.UID != "" {
			field(`"uid":`)
			b = appendString(b, u.UID)
		}
		if len(u.Groups) > 0 {
			field(`"groups":`)
			b = appendStrings(b, u.Groups)
		}
		if len(u.Extra) > 0 {
			field(`"extra":{`)
			keys := make([]string, 0, len(u.Extra))
			for k := range u.Extra {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for i, k := range keys {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, k)
				b = append(b, ':')
				b = appendStrings(b, u.Extra[k])
			}
			b = append(b, '}')
		}
	}
	b = append(b, '}')
	if len(oc.audiences) > 0 {
		b = append(b, `,"audiences":`...)
		b = appendStrings(b, oc.audiences)
	}
	if oc.reason != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, oc.reason)
	}
	return append(b, "}}"...)
}

// appendStrings appends a JSON array of strings; nil is null, as
// encoding/json writes it.
func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendString appends s as a JSON string. Printable ASCII that
// encoding/json writes as it is goes straight in; anything else (escapes,
// HTML characters, control characters, non-ASCII) is left to encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
