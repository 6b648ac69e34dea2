package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/store"
)

func tcr(cluster, tok string) *v1alpha1.TokenCredentialRequest {
	return &v1alpha1.TokenCredentialRequest{Spec: v1alpha1.TokenCredentialRequestSpec{Cluster: cluster, Token: tok}}
}

func exchange(t *testing.T, r *TokenCredentialRequestREST, ctx context.Context, in *v1alpha1.TokenCredentialRequest) *v1alpha1.TokenCredentialRequest {
	t.Helper()
	out, err := r.Create(ctx, in, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("Create: %v (a failed exchange must be a status, not an error)", err)
	}
	got := out.(*v1alpha1.TokenCredentialRequest)
	if got.Spec.Token != "" {
		t.Errorf("the response echoes spec.token")
	}
	return got
}

func TestTokenCredentialRequest_ExchangesAPortcullisTokenKeepingItsSessionAndIdentity(t *testing.T) {
	f := newFixture(t)
	r := NewTokenCredentialRequestREST(f.options())
	src := f.mint("alice", "dev", "sess-1", 10*time.Minute, "devs")

	got := exchange(t, r, withUser(user.Anonymous, user.AllUnauthenticated), tcr("dev", src))
	if got.Status.Token == "" || got.Status.Reason != "" || got.Status.Message != "" {
		t.Fatalf("status = %+v, want a token and no reason", got.Status)
	}
	claims, err := f.verify.Verify(context.Background(), got.Status.Token, []string{"dev"})
	if err != nil {
		t.Fatalf("the minted token does not verify for its cluster: %v", err)
	}
	if claims.Username != "alice" || claims.UID != "uid-alice" || claims.SessionID != "sess-1" || claims.Subject != "sub-alice" {
		t.Errorf("claims = %+v, want alice, uid-alice, sid sess-1, sub sub-alice", claims)
	}
	if got, want := strings.Join(claims.Groups, ","), "devs"; got != want {
		t.Errorf("groups = %q, want %q", got, want)
	}
	if claims.Extra["example.com/team"][0] != "blue" {
		t.Errorf("extra = %v, want the source token's example.com/team", claims.Extra)
	}
	for k := range claims.Extra {
		if strings.HasPrefix(k, "portcullis.dev/") {
			t.Errorf("extra carries Portcullis's own key %s into the token", k)
		}
	}
	// Never outlives the source token (10m) though dev's lifetime is 15m.
	if want := f.clock().Add(10 * time.Minute); !claims.Expiry.Equal(want) || !got.Status.ExpirationTimestamp.Time.Equal(want) {
		t.Errorf("expiry = %v (status %v), want the source token's %v", claims.Expiry, got.Status.ExpirationTimestamp, want)
	}

	// Revoking the session revokes the exchanged token too.
	if err := f.store.Revoke(context.Background(), store.Revocation{ID: "sess-1", RevokedAt: f.clock(), ExpiresAt: f.clock().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify.Verify(context.Background(), got.Status.Token, []string{"dev"}); err == nil {
		t.Errorf("the exchanged token still verifies after its session was revoked")
	}
}

func TestTokenCredentialRequest_FailuresAreStatusesWithReasons(t *testing.T) {
	f := newFixture(t)
	internal := &fakeAuthn{err: &authn.Error{Reason: "store unavailable", Internal: true}}
	unexpected := &fakeAuthn{err: errors.New("boom")}
	for _, tc := range []struct {
		name    string
		authn   Authenticator
		in      *v1alpha1.TokenCredentialRequest
		reason  v1alpha1.TokenCredentialRequestReason
		message string
		advance time.Duration
	}{
		{name: "a token of no trusted issuer", in: tcr("dev", fakeJWT(map[string]any{"iss": "https://elsewhere.example.com"})),
			reason: v1alpha1.ReasonAuthenticationFailed, message: "token not issued by Portcullis or a trusted identity provider"},
		{name: "a Portcullis token for another cluster", in: tcr("prod", f.mint("alice", "dev", "", time.Minute)),
			reason: v1alpha1.ReasonAuthenticationFailed, message: "authentication failed"},
		{name: "an expired Portcullis token", in: tcr("dev", f.mint("alice", "dev", "", time.Minute)), advance: 10 * time.Minute,
			reason: v1alpha1.ReasonAuthenticationFailed, message: "authentication failed"},
		{name: "a user the policy does not admit", in: tcr("prod", f.mint("bob", "prod", "", time.Minute)),
			reason: v1alpha1.ReasonPolicyDenied, message: "access denied: user"},
		{name: "an unknown cluster", in: tcr("staging", f.mint("alice", "dev", "", time.Minute)),
			reason: v1alpha1.ReasonUnknownCluster, message: `no cluster "staging" is configured in Portcullis (known: dev, prod)`},
		{name: "Portcullis failing to decide", authn: internal, in: tcr("dev", "x.y.z"),
			reason: v1alpha1.ReasonInternalError, message: "could not check the token (store unavailable); retry later"},
		{name: "an unexpected authenticator error", authn: unexpected, in: tcr("dev", "x.y.z"),
			reason: v1alpha1.ReasonInternalError, message: "retry later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := f.options()
			if tc.authn != nil {
				o.Authn = tc.authn
			}
			f.advance(tc.advance)
			defer f.advance(-tc.advance)
			got := exchange(t, NewTokenCredentialRequestREST(o), context.Background(), tc.in)
			if got.Status.Token != "" || got.Status.ExpirationTimestamp != nil {
				t.Errorf("a failed exchange carries a token: %+v", got.Status)
			}
			if got.Status.Reason != tc.reason || !strings.Contains(got.Status.Message, tc.message) {
				t.Errorf("status = %q %q, want %q containing %q", got.Status.Reason, got.Status.Message, tc.reason, tc.message)
			}
		})
	}
}

func TestTokenCredentialRequest_MalformedRequestsAreRejectedWithStatusErrors(t *testing.T) {
	f := newFixture(t)
	r := NewTokenCredentialRequestREST(f.options())
	withStatus := tcr("dev", "a.b.c")
	withStatus.Status.Token = "planted"
	for _, tc := range []struct {
		name  string
		obj   runtime.Object
		check func(error) bool
		field string
	}{
		{name: "no token", obj: tcr("dev", ""), check: apierrors.IsInvalid, field: "spec.token"},
		{name: "a token with a Bearer prefix", obj: tcr("dev", "Bearer a.b.c"), check: apierrors.IsInvalid, field: "spec.token"},
		{name: "an oversized token", obj: tcr("dev", strings.Repeat("a", 64<<10+1)), check: apierrors.IsInvalid, field: "spec.token"},
		{name: "a cluster name that cannot exist", obj: tcr("Not A Cluster", "a.b.c"), check: apierrors.IsInvalid, field: "spec.cluster"},
		{name: "a status set by the client", obj: withStatus, check: apierrors.IsInvalid, field: "status"},
		{name: "the wrong kind", obj: &v1alpha1.WhoAmIRequest{}, check: apierrors.IsBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Create(context.Background(), tc.obj, nil, &metav1.CreateOptions{})
			if err == nil || !tc.check(err) {
				t.Fatalf("Create: %v, want a %s error", err, tc.name)
			}
			if tc.field != "" {
				var se *apierrors.StatusError
				if !errors.As(err, &se) || se.ErrStatus.Details == nil || len(se.ErrStatus.Details.Causes) == 0 || se.ErrStatus.Details.Causes[0].Field != tc.field {
					t.Errorf("error %v does not name field %s", err, tc.field)
				}
			}
			if strings.Contains(err.Error(), strings.Repeat("a", 100)) || strings.Contains(err.Error(), "a.b.c") {
				t.Errorf("the error echoes the token: %.200s", err)
			}
		})
	}
}

func TestTokenCredentialRequest_TheOnlyClusterIsTheDefault(t *testing.T) {
	f := newFixture(t)
	f.cfg.Clusters = f.cfg.Clusters[:1]
	got := exchange(t, NewTokenCredentialRequestREST(f.options()), context.Background(), tcr("", f.mint("alice", "dev", "", time.Minute)))
	if got.Spec.Cluster != "dev" || got.Status.Token == "" {
		t.Errorf("got cluster %q, status %+v; want dev and a token", got.Spec.Cluster, got.Status)
	}

	f.cfg.Clusters = append(f.cfg.Clusters, configv1alpha1.Cluster{Name: "other"})
	_, err := NewTokenCredentialRequestREST(f.options()).Create(context.Background(), tcr("", "a.b.c"), nil, &metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Errorf("with two clusters and none named: %v, want Invalid (spec.cluster required)", err)
	}
}

func TestTokenCredentialRequest_LifetimeIsTheClustersCappedByTheIDTokenAndGrants(t *testing.T) {
	f := newFixture(t)
	now := f.clock()
	idp := func(exp time.Time) *fakeAuthn {
		return &fakeAuthn{res: &authn.Result{
			User:   &user.DefaultInfo{Name: "alice", Groups: []string{"oidc:devs"}, Extra: map[string][]string{authn.ExtraIdentityProvider: {"dex"}, authn.ExtraCluster: {"prod"}}},
			Source: "idp:dex", Email: "alice@example.com",
		}}
	}
	idToken := func(exp time.Time) string {
		return fakeJWT(map[string]any{"iss": "https://dex.example.com", "sub": "CgVhbGljZQ", "exp": exp.Unix()})
	}
	for _, tc := range []struct {
		name    string
		cluster string
		idExp   time.Time
		grant   *store.Grant
		want    time.Time
	}{
		{name: "tokens.lifetime when the cluster sets none", cluster: "dev", idExp: now.Add(time.Hour), want: now.Add(15 * time.Minute)},
		{name: "the cluster's tokenLifetime", cluster: "prod", idExp: now.Add(time.Hour), want: now.Add(5 * time.Minute)},
		{name: "the ID token's expiry when sooner", cluster: "prod", idExp: now.Add(2 * time.Minute), want: now.Add(2 * time.Minute)},
		{name: "an active grant's end when sooner", cluster: "prod", idExp: now.Add(time.Hour),
			grant: &store.Grant{ID: "g1", Username: "alice", Cluster: "prod", Groups: []string{"admins"}, NotBefore: now.Add(-time.Hour), ExpiresAt: now.Add(90 * time.Second)},
			want:  now.Add(90 * time.Second)},
		{name: "not a grant of another cluster", cluster: "prod", idExp: now.Add(time.Hour),
			grant: &store.Grant{ID: "g2", Username: "alice", Cluster: "dev", Groups: []string{"admins"}, NotBefore: now.Add(-time.Hour), ExpiresAt: now.Add(30 * time.Second)},
			want:  now.Add(5 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.clk.SetTime(now)
			if tc.grant != nil {
				if err := f.store.CreateGrant(context.Background(), *tc.grant); err != nil {
					t.Fatal(err)
				}
			}
			o := f.options()
			o.Authn = idp(tc.idExp)
			got := exchange(t, NewTokenCredentialRequestREST(o), context.Background(), tcr(tc.cluster, idToken(tc.idExp)))
			if got.Status.Token == "" {
				t.Fatalf("no token: %+v", got.Status)
			}
			claims, err := f.verify.Verify(context.Background(), got.Status.Token, []string{tc.cluster})
			if err != nil {
				t.Fatal(err)
			}
			if !claims.Expiry.Equal(tc.want) {
				t.Errorf("expiry in %v, want in %v", claims.Expiry.Sub(now), tc.want.Sub(now))
			}
			if claims.Subject != "CgVhbGljZQ" || claims.IdentityProvider != "dex" || claims.Email != "alice@example.com" {
				t.Errorf("claims = %+v, want the ID token's sub, idp dex and the email", claims)
			}
		})
	}
}

func TestTokenCredentialRequest_RateLimitsEachClient(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.RateLimit = RateLimit{QPS: 1, Burst: 2}
	r := NewTokenCredentialRequestREST(o)
	tok := f.mint("alice", "dev", "", time.Minute)
	anonFrom := func(addr string) context.Context {
		ctx := withUser(user.Anonymous, user.AllUnauthenticated)
		return context.WithValue(ctx, clientAddressKey{}, addr)
	}
	call := func(ctx context.Context) error {
		_, err := r.Create(ctx, tcr("dev", tok), nil, &metav1.CreateOptions{})
		return err
	}
	for i := range 2 {
		if err := call(anonFrom("192.0.2.1")); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	err := call(anonFrom("192.0.2.1"))
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("third request at once: %v, want 429", err)
	}
	if s, ok := apierrors.SuggestsClientDelay(err); !ok || s < 1 {
		t.Errorf("429 without Retry-After")
	}
	if err := call(anonFrom("192.0.2.2")); err != nil {
		t.Errorf("another address shares the first one's bucket: %v", err)
	}
	if err := call(withUser("alice")); err != nil {
		t.Errorf("an authenticated user shares the anonymous bucket: %v", err)
	}
	f.advance(time.Second)
	if err := call(anonFrom("192.0.2.1")); err != nil {
		t.Errorf("a second later the bucket has not refilled: %v", err)
	}
}

func TestTokenCredentialRequest_RateLimitKeysIPv6ClientsByTheir64(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.RateLimit = RateLimit{QPS: 1, Burst: 2}
	r := NewTokenCredentialRequestREST(o)
	tok := f.mint("alice", "dev", "", time.Minute)
	call := func(addr string) error {
		ctx := context.WithValue(withUser(user.Anonymous, user.AllUnauthenticated), clientAddressKey{}, addr)
		_, err := r.Create(ctx, tcr("dev", tok), nil, &metav1.CreateOptions{})
		return err
	}
	// A fresh address of the same /64 for every request.
	for i, addr := range []string{"2001:db8:7:1::1", "2001:db8:7:1::2"} {
		if err := call(addr); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	if err := call("2001:db8:7:1:ffff::3"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("a third address of the same /64 at once: %v, want 429", err)
	}
	if err := call("2001:db8:7:2::1"); err != nil {
		t.Errorf("another /64 shares the first one's bucket: %v", err)
	}
}

func TestTokenCredentialRequest_DryRunMintsNothing(t *testing.T) {
	f := newFixture(t)
	out, err := NewTokenCredentialRequestREST(f.options()).Create(context.Background(), tcr("dev", f.mint("alice", "dev", "", time.Minute)), nil, &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if st := out.(*v1alpha1.TokenCredentialRequest).Status; st != (v1alpha1.TokenCredentialRequestStatus{}) {
		t.Errorf("dry run status = %+v, want empty", st)
	}
}

func TestTokenCredentialRequest_GenerateNameGivesTheResponseAName(t *testing.T) {
	f := newFixture(t)
	in := tcr("dev", f.mint("alice", "dev", "", time.Minute))
	in.GenerateName = "ci-"
	got := exchange(t, NewTokenCredentialRequestREST(f.options()), context.Background(), in)
	if !strings.HasPrefix(got.Name, "ci-") || len(got.Name) <= 3 {
		t.Errorf("name = %q, want ci-<random>", got.Name)
	}
}
