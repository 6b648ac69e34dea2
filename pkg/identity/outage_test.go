package identity

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// An identity provider that cannot be reached makes a token it has not
// verified yet "not ready" (retry), never rejected; once it is back the
// same token verifies, without a new Provider; and keys already loaded keep
// verifying while it is down.
func TestVerifyIDTokenWhileTheIdentityProviderIsDown(t *testing.T) {
	f := newFakeIssuer(t)
	p := readyProvider(t, f.idp("dex")) // discovery done, no key fetched yet
	raw := f.sign(f.claims())

	f.SetDown(true)
	_, err := p.VerifyIDToken(t.Context(), raw)
	if !errors.Is(err, ErrNotReady) || errors.Is(err, ErrRejected) {
		t.Fatalf("with the IdP down: %v, want ErrNotReady", err)
	}
	assertNoToken(t, err, raw)

	f.SetDown(false)
	// The key set's failed fetch may still be settling: retry briefly.
	if err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err = p.VerifyIDToken(ctx, raw)
		return err == nil, nil
	}); err != nil {
		t.Fatalf("with the IdP back: %v", err)
	}
	// A token with a bad signature from a reachable IdP is a bad token.
	tampered := raw[:len(raw)-6] + "AAAAAA"
	if _, err := p.VerifyIDToken(t.Context(), tampered); !errors.Is(err, ErrRejected) {
		t.Fatalf("a tampered token from a reachable IdP: %v, want ErrRejected", err)
	}

	f.SetDown(true)
	if _, err := p.VerifyIDToken(t.Context(), raw); err != nil {
		t.Fatalf("with the IdP down again, a token signed with a loaded key: %v", err)
	}
}

// When several providers share an issuer, one that could not verify the
// token now outranks one that refused it: the first might have accepted it.
func TestAuthenticateBearerPrefersNotReadyOverRejected(t *testing.T) {
	f := newFakeIssuer(t)
	a := f.idp("a")
	b := f.idp("b")
	b.ClientID = "other-audience"
	b.Issuer.Audiences = []string{"other-audience"}
	pa := readyProvider(t, a)
	// Provider a has loaded the keys.
	if _, err := pa.VerifyIDToken(t.Context(), f.sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	f.SetDown(true)
	pb, err := NewProvider(t.Context(), b) // cannot do discovery: not ready
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pb.Close)
	ps := &Providers{list: []*Provider{pa, pb}, byName: map[string]*Provider{"a": pa, "b": pb}}

	claims := f.claims()
	claims["aud"] = "other-audience"
	_, ok, err := ps.AuthenticateBearer(t.Context(), f.sign(claims))
	if ok || !errors.Is(err, ErrNotReady) {
		t.Fatalf("ok=%v err=%v, want ErrNotReady (b might accept it)", ok, err)
	}
}
