package framework

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// TestIssuer is a minimal OpenID Connect issuer over HTTPS on loopback: a
// discovery document and a JSON Web Key Set, and ID tokens signed (RS256)
// with whatever claims a test asks for. It stands in for an identity
// provider where Dex cannot produce the token a test needs (expired, odd
// audiences, arbitrary claims). Its serving certificate is issued by the
// PKI's cluster CA (PKI.CA.CertFile is the CA to trust).
type TestIssuer struct {
	URL string // https://127.0.0.1:<port>

	signer jose.Signer
}

// StartTestIssuer starts a TestIssuer for the test; it stops at cleanup.
func StartTestIssuer(t testing.TB, pki *PKI) *TestIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "test-issuer-key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iss := &TestIssuer{URL: "https://" + ln.Addr().String(), signer: signer}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss.URL,
			"jwks_uri":                              iss.URL + "/keys",
			"authorization_endpoint":                iss.URL + "/auth",
			"token_endpoint":                        iss.URL + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: "test-issuer-key", Algorithm: string(jose.RS256), Use: "sig"},
		}})
	})
	kp := pki.IssueServing("127.0.0.1", "localhost")
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_ = srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return iss
}

// IDToken signs an ID token. It has iss (the issuer), sub "subject", iat
// now and exp in an hour unless claims set them; claims adds or replaces
// any claim (set "aud" yourself: there is no default audience).
func (i *TestIssuer) IDToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{"iss": i.URL, "sub": "subject", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	raw, err := josejwt.Signed(i.signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
