package token

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestDiscoveryHandler(t *testing.T) {
	h := DiscoveryHandler(testIssuer)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DiscoveryPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=3600" {
		t.Errorf("Cache-Control %q", cc)
	}
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                testIssuer,
		"jwks_uri":                              testIssuer + "/openid/v1/jwks",
		"response_types_supported":              []any{"id_token"},
		"subject_types_supported":               []any{"public"},
		"id_token_signing_alg_values_supported": []any{"ES256"},
	}
	if len(doc) != len(want) {
		t.Errorf("document %v", doc)
	}
	for k, v := range want {
		got, _ := json.Marshal(doc[k])
		w, _ := json.Marshal(v)
		if string(got) != string(w) {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	t.Run("a POST is refused", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, DiscoveryPath, nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Fatalf("status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
		}
	})
	t.Run("a HEAD has headers and no body", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, DiscoveryPath, nil))
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "" {
			t.Fatalf("status %d, body %d bytes", rec.Code, rec.Body.Len())
		}
	})
}

func TestJWKSHandler(t *testing.T) {
	f := newFixture(t)
	h := JWKSHandler(f.km)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, JWKSPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}
	if !slices.Equal(rec.Body.Bytes(), f.km.JWKS()) {
		t.Errorf("body %s", rec.Body.Bytes())
	}
	etag := rec.Header().Get("ETag")
	t.Run("a request with the current ETag gets 304", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, JWKSPath, nil)
		req.Header.Set("If-None-Match", `"other", `+etag)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("the ETag changes when the keys do", func(t *testing.T) {
		f.clock.Step(1)
		if err := f.km.Rotate(t.Context()); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, JWKSPath, nil)
		req.Header.Set("If-None-Match", etag)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Header().Get("ETag") == etag {
			t.Fatalf("status %d, ETag %q", rec.Code, rec.Header().Get("ETag"))
		}
	})
	t.Run("a DELETE is refused", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, JWKSPath, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", rec.Code)
		}
	})
}
