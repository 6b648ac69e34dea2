package token

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"

	"portcullis.dev/portcullis/pkg/jwtpeek"
)

// This file is the JWS compact serialization, restricted to what Portcullis
// issues: ES256, a kid, typ JWT. It uses crypto/ecdsa directly rather than
// go-jose because the verifier only ever has to accept one shape, and every
// step that a general JOSE library makes configurable (algorithm choice,
// embedded keys, critical extensions, unencoded payloads) is a step that has
// to be refused here anyway. See BenchmarkVerifyCold and
// BenchmarkGoJoseVerify for the cost of the two.

const (
	// MaxTokenSize is the largest token Verifier parses. Larger ones are
	// refused before any decoding.
	MaxTokenSize = jwtpeek.MaxSize

	algES256 = "ES256"
	// es256SigSize is the size of an ES256 signature: R and S, 32 bytes each,
	// big-endian (RFC 7518 §3.4).
	es256SigSize = 64
)

// b64 is base64url without padding, refusing non-canonical encodings (set
// trailing bits), so that a token has exactly one string form.
var b64 = base64.RawURLEncoding.Strict()

// jwsHeader is the protected header Portcullis writes.
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// encodedHeader returns the base64url-encoded protected header for kid.
func encodedHeader(kid string) (string, error) {
	h, err := json.Marshal(jwsHeader{Alg: algES256, Kid: kid, Typ: "JWT"})
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(h), nil
}

// signCompact returns encHeader.base64url(payload).signature.
func signCompact(priv *ecdsa.PrivateKey, encHeader string, payload []byte) (string, error) {
	var sb strings.Builder
	sb.Grow(len(encHeader) + 1 + b64.EncodedLen(len(payload)) + 1 + b64.EncodedLen(es256SigSize))
	sb.WriteString(encHeader)
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(payload))
	digest := sha256.Sum256([]byte(sb.String()))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		return "", err
	}
	var sig [es256SigSize]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(sig[:]))
	return sb.String(), nil
}

// compactJWS is a split, header-checked token whose signature has not been
// verified yet.
type compactJWS struct {
	kid          string
	signingInput string // header.payload, as received
	payload      string // base64url, as received
	sig          string // base64url, as received
}

// parseCompact splits raw and checks its header. It returns a VerifyError
// reason on failure. raw must already be size-checked.
func parseCompact(raw string) (compactJWS, string) {
	dot1 := strings.IndexByte(raw, '.')
	if dot1 < 0 {
		return compactJWS{}, ReasonMalformed
	}
	rest := raw[dot1+1:]
	dot2 := strings.IndexByte(rest, '.')
	if dot2 < 0 || strings.IndexByte(rest[dot2+1:], '.') >= 0 {
		return compactJWS{}, ReasonMalformed
	}
	// The header is checked first so that an alg "none" token (empty
	// signature) is refused for its algorithm, not its shape.
	headerJSON, err := b64.DecodeString(raw[:dot1])
	if err != nil {
		return compactJWS{}, ReasonMalformed
	}
	kid, reason := checkHeader(headerJSON)
	if reason != "" {
		return compactJWS{}, reason
	}
	tok := compactJWS{
		signingInput: raw[:dot1+1+dot2],
		payload:      rest[:dot2],
		sig:          rest[dot2+1:],
	}
	if tok.payload == "" || tok.sig == "" {
		return compactJWS{}, ReasonMalformed
	}
	tok.kid = kid
	return tok, ""
}

// checkHeader accepts exactly {"alg":"ES256","kid":...} with an optional
// "typ":"JWT", and refuses every other header parameter: crit (RFC 7515
// §4.1.11 requires refusing extensions one does not understand, and this
// package understands none), embedded or referenced keys (jwk, jku, x5u, x5c,
// whose only use would be to make the token choose its own key), b64, zip.
func checkHeader(headerJSON []byte) (kid, reason string) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(headerJSON, &fields); err != nil || fields == nil {
		return "", ReasonMalformed
	}
	alg, ok := headerString(fields, "alg")
	if !ok {
		return "", ReasonMalformed
	}
	if alg != algES256 {
		return "", ReasonUnsupportedAlgorithm
	}
	for name := range fields {
		switch name {
		case "alg", "kid", "typ":
		default:
			return "", ReasonUnsupportedHeader
		}
	}
	if _, present := fields["typ"]; present {
		typ, ok := headerString(fields, "typ")
		if !ok || !strings.EqualFold(typ, "JWT") {
			return "", ReasonUnsupportedHeader
		}
	}
	if _, present := fields["kid"]; !present {
		return "", ReasonUnknownKey
	}
	kid, ok = headerString(fields, "kid")
	if !ok {
		return "", ReasonMalformed
	}
	return kid, ""
}

func headerString(fields map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := fields[name]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

var errBadSignature = errors.New("bad signature")

// verifySignature checks tok's ES256 signature with pub.
func verifySignature(pub *ecdsa.PublicKey, tok *compactJWS) error {
	if b64.DecodedLen(len(tok.sig)) != es256SigSize {
		return errBadSignature
	}
	var sig [es256SigSize]byte
	n, err := b64.Decode(sig[:], []byte(tok.sig))
	if err != nil || n != es256SigSize {
		return errBadSignature
	}
	digest := sha256.Sum256([]byte(tok.signingInput))
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	// ecdsa.Verify refuses r or s outside [1, N-1].
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return errBadSignature
	}
	return nil
}
