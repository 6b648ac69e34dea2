package portal_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/portal"
	"portcullis.dev/portcullis/pkg/store"
)

func TestLoginPageNeverShowsAConfigurationError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "secrets", "dex-client-secret")
	e := portaltest.New(t, portaltest.Options{Configure: func(c *v1alpha1.PortcullisConfiguration) {
		c.IdentityProviders[0].ClientSecretFile = missing
	}})
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("the secret file exists")
	}
	p := get(t, e.Browser(), e.URL+"/login/fake")
	if p.status != 503 {
		t.Fatalf("GET /login/fake with an unreadable client secret: %d, want 503", p.status)
	}
	for _, leak := range []string{missing, "secrets", "no such file", "open "} {
		if strings.Contains(p.body, leak) {
			t.Errorf("the anonymous login page shows %q:\n%s", leak, p.body)
		}
	}
	if !strings.Contains(p.body, "administrator") {
		t.Errorf("the page does not tell the user whom to ask:\n%s", p.body)
	}
}

// handlerMux mounts the portal on an http.ServeMux, to call it with any
// client address.
type handlerMux struct{ *http.ServeMux }

func (m handlerMux) Handle(path string, h http.Handler)         { m.ServeMux.Handle(path, h) }
func (m handlerMux) HandlePrefix(prefix string, h http.Handler) { m.ServeMux.Handle(prefix, h) }

func portalHandler(e *portaltest.Env) http.Handler {
	mux := http.NewServeMux()
	e.Portal.Install(handlerMux{mux})
	return mux
}

// from sends a request to h as the client at addr.
func from(h http.Handler, addr, method, target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = net.JoinHostPort(addr, "40000")
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestOneClientFloodingLoginStartsLocksNobodyElseOut(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	h := portalHandler(e)
	flooder, other := "203.0.113.9", "198.51.100.20"
	throttled := 0
	for range loginstate.DefaultMaxInMemory + 100 {
		switch rec := from(h, flooder, http.MethodGet, "/login/fake", ""); rec.Code {
		case http.StatusFound:
		case http.StatusTooManyRequests:
			throttled++
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("a 429 without Retry-After")
			}
		default:
			t.Fatalf("login start from the flooder: %d %s", rec.Code, rec.Body)
		}
	}
	if want := loginstate.DefaultMaxInMemory + 100 - portal.DefaultStartLimits.PerClient.Burst; throttled != want {
		t.Fatalf("%d of the flooder's login starts throttled, want all but its burst (%d)", throttled, want)
	}
	if rec := from(h, other, http.MethodGet, "/login/fake", ""); rec.Code != http.StatusFound {
		t.Fatalf("another client's login start during the flood: %d %s", rec.Code, rec.Body)
	}
	if rec := from(h, other, http.MethodPost, "/device/code", "cluster=c1"); rec.Code != http.StatusOK {
		t.Fatalf("another client's device code during the flood: %d %s", rec.Code, rec.Body)
	}
	// A fresh address of the flooder's /64 is the same client.
	v6 := 0
	for i := range 100 {
		if rec := from(h, fmt.Sprintf("2001:db8:5:6::%x", i+1), http.MethodGet, "/login/fake", ""); rec.Code == http.StatusFound {
			v6++
		}
	}
	if v6 != portal.DefaultStartLimits.PerClient.Burst {
		t.Fatalf("%d login starts from 100 addresses of one /64, want its burst (%d)", v6, portal.DefaultStartLimits.PerClient.Burst)
	}
}

func TestOneClientFloodingDeviceCodesLocksNobodyElseOut(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	h := portalHandler(e)
	ok, throttled := 0, 0
	for range 5000 {
		switch rec := from(h, "203.0.113.9", http.MethodPost, "/device/code", "cluster=c1"); rec.Code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			throttled++
		default:
			t.Fatalf("device code for the flooder: %d %s", rec.Code, rec.Body)
		}
	}
	if ok > portal.DefaultStartLimits.PerClient.Burst {
		t.Fatalf("the flooder got %d device codes at once", ok)
	}
	if rec := from(h, "198.51.100.20", http.MethodPost, "/device/code", "cluster=c1"); rec.Code != http.StatusOK {
		t.Fatalf("another client's device code during the flood: %d %s", rec.Code, rec.Body)
	}
}

func TestManyClientsTogetherCannotFillTheLoginStore(t *testing.T) {
	// A clock that stands still: the global bucket does not refill.
	e := portaltest.New(t, portaltest.Options{Clock: testingclock.NewFakeClock(time.Now())})
	h := portalHandler(e)
	codes := map[int]int{}
	for i := range 3000 {
		addr := fmt.Sprintf("10.%d.%d.1", i/250, i%250)
		for range 5 {
			codes[from(h, addr, http.MethodGet, "/login/fake", "").Code]++
		}
	}
	if codes[http.StatusServiceUnavailable] > 0 {
		t.Fatalf("answers %v: the store filled up", codes)
	}
	if got, want := codes[http.StatusFound], portal.DefaultStartLimits.Global.Burst; got != want {
		t.Fatalf("answers %v: want the global burst (%d) of 302s, the rest 429", codes, want)
	}
}

// Issue 13, finding 6: a portal-minted token that carries a time-bound
// grant's groups expires no later than the grant, at login and at refresh.
func TestTokensCarryingAGrantsGroupsEndWithTheGrant(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now().Truncate(time.Second))
	e := portaltest.New(t, portaltest.Options{Clock: clk})
	ctx := context.Background()
	grantEnd := clk.Now().Add(4 * time.Minute) // the token lifetime is 15 minutes
	if err := e.Store.CreateGrant(ctx, store.Grant{
		ID: "incident-42", Username: "alice@example.com", Cluster: "c1", Groups: []string{"incident-responders"},
		Reason: "incident 42", GrantedBy: "oncall", CreatedAt: clk.Now(), NotBefore: clk.Now().Add(-time.Minute), ExpiresAt: grantEnd,
	}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, resp map[string]any) {
		t.Helper()
		claims, err := verify(e, clusterToken(t, resp, "c1"), "c1")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(claims.Groups, "incident-responders") {
			t.Fatalf("%s: the token does not carry the grant's group: %v", what, claims.Groups)
		}
		if claims.Expiry.After(grantEnd) {
			t.Errorf("%s: the token expires at %v, after the grant that gave its group (%v)", what, claims.Expiry, grantEnd)
		}
	}
	first := login(t, e, "c1")
	check("login", first)
	clk.Step(time.Minute)
	status, r := refresh(t, e, str(first, "refresh_token"), "c1")
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, r)
	}
	check("refresh", r)

	// Without the grant, the cluster's own lifetime again.
	clk.Step(4 * time.Minute)
	status, r = refresh(t, e, str(r, "refresh_token"), "c1")
	if status != http.StatusOK {
		t.Fatalf("refresh after the grant: %d %v", status, r)
	}
	claims, err := verify(e, clusterToken(t, r, "c1"), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(claims.Groups, "incident-responders") || claims.Expiry.Sub(clk.Now()) != 15*time.Minute {
		t.Errorf("after the grant: groups %v, lifetime %v", claims.Groups, claims.Expiry.Sub(clk.Now()))
	}
}
