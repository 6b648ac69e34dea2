package webhook

import "k8s.io/apimachinery/pkg/types"

// scanReview reads the TokenReview kube-apiserver sends, and nothing else,
// in one pass over the body with no reflection:
//
//	{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",
//	 "metadata":{"creationTimestamp":null},
//	 "spec":{"token":"...","audiences":["..."]},"status":{"user":{}}}
//
// It accepts a strict subset of what decodeJSON accepts, and answers the
// same for it: members in any order, JSON whitespace, metadata.name and
// metadata.uid, spec.token and spec.audiences (strings, or null), and an
// empty status or status.user. Anything else — another member, a number, a
// string with an escape, a control or non-ASCII byte (which the JSON decoder
// would validate or translate), a duplicate member, no spec, trailing data —
// makes it return false, and the body goes to decodeJSON and, failing that,
// to the universal deserializer, whose answers and errors, with strictCheck's
// refusals of duplicate keys and of a missing spec, are the reference
// (TestDecodeMatchesTheUniversalDeserializer, FuzzDecodeMatchesUniversalDeserializer).
//
// It is a measured exception to using apimachinery's decoders: every warm
// review goes through it, and BenchmarkReviewWarm (docs/benchmarks.md)
// measures the cost it saves over decodeJSON and the universal deserializer.
func scanReview(body []byte) (review, bool) {
	s := scanner{b: body}
	var (
		rv                                                       review
		kind, apiVersion                                         string
		seenKind, seenAPIVersion, seenMeta, seenSpec, seenStatus bool
	)
	ok := s.object(func(key string) bool {
		switch key {
		case "kind":
			var ok bool
			kind, ok = s.str()
			return ok && !again(&seenKind)
		case "apiVersion":
			var ok bool
			apiVersion, ok = s.str()
			return ok && !again(&seenAPIVersion)
		case "metadata":
			if again(&seenMeta) {
				return false
			}
			var name, uid, ts bool
			return s.object(func(key string) bool {
				switch key {
				case "name":
					var ok bool
					rv.name, ok = s.str()
					return ok && !again(&name)
				case "uid":
					v, ok := s.str()
					rv.uid = types.UID(v)
					return ok && !again(&uid)
				case "creationTimestamp":
					return s.literal("null") && !again(&ts)
				}
				return false
			})
		case "spec":
			if again(&seenSpec) {
				return false
			}
			var tok, auds bool
			return s.object(func(key string) bool {
				switch key {
				case "token":
					var ok bool
					rv.token, ok = s.strOrNull()
					return ok && !again(&tok)
				case "audiences":
					if again(&auds) {
						return false
					}
					if s.peek() == 'n' {
						return s.literal("null")
					}
					rv.audiences = []string{}
					return s.array(func() bool {
						v, ok := s.str()
						rv.audiences = append(rv.audiences, v)
						return ok
					})
				}
				return false
			})
		case "status":
			if again(&seenStatus) {
				return false
			}
			var user bool
			return s.object(func(key string) bool {
				if key != "user" || again(&user) {
					return false
				}
				return s.object(func(string) bool { return false })
			})
		}
		return false
	})
	// A review without a spec is refused, by strictCheck on the other path.
	if !ok || !s.end() || !seenSpec {
		return review{}, false
	}
	return typed(rv, kind, apiVersion)
}

// typed completes rv with its version, if kind and apiVersion are a
// TokenReview of a version the handler answers.
func typed(rv review, kind, apiVersion string) (review, bool) {
	if kind != "TokenReview" {
		return review{}, false
	}
	switch apiVersion {
	case apiVersionV1:
	case apiVersionV1beta1:
		rv.v1beta1 = true
	default:
		return review{}, false
	}
	return rv, true
}

// again marks a member seen and says whether it had been already.
func again(seen *bool) bool {
	was := *seen
	*seen = true
	return was
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) next(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// end says whether only whitespace is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

func (s *scanner) literal(lit string) bool {
	s.space()
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (s *scanner) str() (string, bool) {
	if !s.next('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := string(s.b[start:s.i])
			s.i++
			return v, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", false
		}
		s.i++
	}
	return "", false
}

func (s *scanner) strOrNull() (string, bool) {
	if s.peek() == 'n' {
		return "", s.literal("null")
	}
	return s.str()
}

// object reads an object, calling member with each key, positioned at its
// value, which member must read.
func (s *scanner) object(member func(key string) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.next(':') || !member(key) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// array reads an array, calling elem at each element, which elem must read.
func (s *scanner) array(elem func() bool) bool {
	if !s.next('[') {
		return false
	}
	if s.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.next(']') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}
