package framework

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"
)

// JWK is one key of a JSON Web Key Set (RSA or EC P-256 public keys).
type JWK struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// FetchJWKS GETs a JSON Web Key Set.
func FetchJWKS(ctx context.Context, hc *http.Client, jwksURL string) ([]JWK, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", jwksURL, resp.Status, snippet(body))
	}
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding JWKS: %w", err)
	}
	return set.Keys, nil
}

// VerifyJWT checks a compact JWS signed with RS256 or ES256 by one of keys
// and returns its claims. It checks iss (when issuer is not empty), aud
// contains audience (when not empty), and exp/nbf against now.
//
// It is a small verifier for tests, so that test assertions do not depend on
// the code under test; it is not meant as a general JOSE implementation.
func VerifyJWT(raw string, keys []JWK, issuer, audience string, now time.Time) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	verified := false
	for _, k := range keys {
		if hdr.Kid != "" && k.Kid != hdr.Kid {
			continue
		}
		if verifySig(hdr.Alg, k, digest[:], sig) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, fmt.Errorf("no key (kid %q, alg %s) verifies the signature", hdr.Kid, hdr.Alg)
	}
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	if issuer != "" && claims["iss"] != issuer {
		return nil, fmt.Errorf("iss = %v, want %s", claims["iss"], issuer)
	}
	if audience != "" {
		var auds []string
		switch a := claims["aud"].(type) {
		case string:
			auds = []string{a}
		case []any:
			for _, v := range a {
				if s, ok := v.(string); ok {
					auds = append(auds, s)
				}
			}
		}
		if !slices.Contains(auds, audience) {
			return nil, fmt.Errorf("aud = %v, want %s", claims["aud"], audience)
		}
	}
	if exp, ok := claims["exp"].(float64); !ok || now.Unix() >= int64(exp) {
		return nil, fmt.Errorf("expired or no exp (exp %v, now %d)", claims["exp"], now.Unix())
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Unix() < int64(nbf) {
		return nil, fmt.Errorf("not valid before %v", nbf)
	}
	return claims, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func verifySig(alg string, k JWK, digest, sig []byte) error {
	switch alg {
	case "RS256":
		if k.Kty != "RSA" {
			return errors.New("not an RSA key")
		}
		n, err := base64.RawURLEncoding.DecodeString(k.N)
		if err != nil {
			return err
		}
		e, err := base64.RawURLEncoding.DecodeString(k.E)
		if err != nil {
			return err
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig)
	case "ES256":
		if k.Kty != "EC" || k.Crv != "P-256" || len(sig) != 64 {
			return errors.New("not a P-256 key or signature")
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil {
			return err
		}
		y, err := base64.RawURLEncoding.DecodeString(k.Y)
		if err != nil {
			return err
		}
		if len(x) != 32 || len(y) != 32 {
			return errors.New("malformed P-256 coordinates")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return err
		}
		if !ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return errors.New("ES256 signature invalid")
		}
		return nil
	default:
		return fmt.Errorf("unsupported alg %q", alg)
	}
}

// VerifyIDToken verifies an ID token Dex issued to clientID (signature with
// Dex's JWKS, issuer, audience, expiry) and returns its claims.
func (d *Dex) VerifyIDToken(ctx context.Context, raw, clientID string) (map[string]any, error) {
	keys, err := FetchJWKS(ctx, d.HTTPClient(), d.IssuerURL+"/keys")
	if err != nil {
		return nil, err
	}
	return VerifyJWT(raw, keys, d.IssuerURL, clientID, time.Now())
}
