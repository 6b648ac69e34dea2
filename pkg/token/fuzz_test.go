package token

import (
	"context"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify arbitrary strings. It must never panic, and the only
// strings it may accept are tokens the Minter made: no mutation of a valid
// token, however small, is another valid token.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	minted := map[string]bool{}
	for range 3 {
		raw, _ := fx.mint()
		minted[raw] = true
		f.Add(raw)
		parts := strings.Split(raw, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + "." + parts[1])
		f.Add(raw[:len(raw)-1])
		f.Add(raw + "=")
		f.Add(strings.ToUpper(raw))
		f.Add(b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".")
		f.Add(b64.EncodeToString([]byte(`{"alg":"HS256","kid":"x"}`)) + "." + parts[1] + "." + parts[2])
		f.Add(b64.EncodeToString([]byte(`{"alg":"ES256","crit":["b64"],"b64":false}`)) + "." + parts[1] + "." + parts[2])
	}
	p := fx.wirePayload()
	p["exp"] = 1e300
	f.Add(fx.signRaw(p))
	p["exp"] = "soon"
	f.Add(fx.signRaw(p))
	f.Add("")
	f.Add(".")
	f.Add("..")
	f.Add("a.b.c")
	f.Add("e30.e30.e30")
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.AAAA")
	f.Add(strings.Repeat(".", 100))

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := fx.ver.Verify(ctx, raw, testAudience)
		if err == nil {
			if !minted[raw] {
				t.Fatalf("Verify accepted a string the minter never made: %q", raw)
			}
			if claims.Issuer != testIssuer {
				t.Fatalf("accepted claims %+v", claims)
			}
			return
		}
		if reasonOf(err) == "" {
			t.Fatalf("a malformed input got an error that is not a VerifyError: %v", err)
		}
		if len(raw) >= 16 && strings.Contains(err.Error(), raw) {
			t.Fatalf("the error message contains the input: %v", err)
		}
	})
}
