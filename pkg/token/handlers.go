package token

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Paths, relative to the issuer URL, where DiscoveryHandler and JWKSHandler
// are expected to be mounted. kube-apiserver's JWT authenticator fetches
// {issuer}/.well-known/openid-configuration and then the jwks_uri it names.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/openid/v1/jwks"
)

// discoveryDocument is the subset of OpenID Provider Metadata (OpenID Connect
// Discovery 1.0 §3) that verifiers of cluster tokens need. Portcullis is not
// an OpenID provider for these tokens (there is no authorization endpoint),
// the same way kube-apiserver's own service account issuer discovery isn't.
type discoveryDocument struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

// DiscoveryHandler serves the OpenID discovery document for issuerURL; mount
// it at issuerURL's path + DiscoveryPath. The document only changes when the
// issuer does, so it may be cached for an hour.
func DiscoveryHandler(issuerURL string) http.Handler {
	body, err := json.Marshal(discoveryDocument{
		Issuer:                           issuerURL,
		JWKSURI:                          issuerURL + JWKSPath,
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{algES256},
	})
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) {
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

// JWKSHandler serves km's JSON Web Key Set; mount it at issuerURL's path +
// JWKSPath. A new key signs as soon as it is made, so the set must never be
// served stale: responses carry "Cache-Control: no-cache" (caches must
// revalidate) and a strong ETag, and a matching If-None-Match gets 304.
// Verifiers such as kube-apiserver also refetch the set on an unknown kid.
func JWKSHandler(km *KeyManager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) {
			return
		}
		body := km.JWKS()
		sum := sha256.Sum256(body)
		etag := `"` + b64.EncodeToString(sum[:16]) + `"`
		h := w.Header()
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		if etagMatches(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func etagMatches(ifNoneMatch, etag string) bool {
	for _, candidate := range strings.Split(ifNoneMatch, ",") {
		candidate = strings.TrimSpace(candidate)
		if candidate == "*" || strings.TrimPrefix(candidate, "W/") == etag {
			return true
		}
	}
	return false
}
