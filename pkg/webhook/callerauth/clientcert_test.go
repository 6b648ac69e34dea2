package callerauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// t0 is the fake clock's start. Certificates are made relative to it, and
// x509 verification reads the same clock, so expiry is tested without
// sleeping.
var t0 = time.Now().Truncate(time.Second)

func newFakeClock() *testingclock.FakeClock { return testingclock.NewFakeClock(t0) }

// testCert is a certificate and its key.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// newCert makes an ECDSA P-256 certificate for cn valid in [notBefore,
// notAfter], signed by parent (self-signed if nil). isCA makes a CA.
func newCert(t testing.TB, parent *testCert, cn string, notBefore, notAfter time.Time, isCA bool) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"callers"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: cert, key: key}
}

func newCA(t testing.TB, notAfter time.Time) *testCert {
	return newCert(t, nil, "test CA", t0.Add(-time.Hour), notAfter, true)
}

func newLeaf(t testing.TB, ca *testCert, cn string, notAfter time.Time) *testCert {
	return newCert(t, ca, cn, t0.Add(-time.Hour), notAfter, false)
}

// countingVerifier is the real x509 authenticator, with roots and the fake
// clock, counting how often it is consulted.
type countingVerifier struct {
	inner authenticator.Request
	calls atomic.Int64
}

func newCountingVerifier(clock *testingclock.FakeClock, roots ...*testCert) *countingVerifier {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r.cert)
	}
	opts := func() (x509.VerifyOptions, bool) {
		return x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: clock.Now()}, true
	}
	return &countingVerifier{inner: x509request.NewDynamic(opts, x509request.CommonNameUserConversion)}
}

func (v *countingVerifier) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	v.calls.Add(1)
	return v.inner.AuthenticateRequest(req)
}

// newTestCertCache caches v, for roots, on clock.
func newTestCertCache(v *countingVerifier, clock *testingclock.FakeClock, roots ...*testCert) *certCache {
	var rc []*x509.Certificate
	for _, r := range roots {
		rc = append(rc, r.cert)
	}
	return newCertCache(v, rc, 0, 0, clock)
}

// tlsRequest is a request over TLS whose peer presented chain.
func tlsRequest(chain ...*testCert) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/tokenreview/c1", nil)
	req.TLS = &tls.ConnectionState{}
	for _, c := range chain {
		req.TLS.PeerCertificates = append(req.TLS.PeerCertificates, c.cert)
	}
	return req
}

// authenticate expects a (cached or fresh) success for cn.
func authenticate(t *testing.T, a authenticator.Request, req *http.Request, cn string) *authenticator.Response {
	t.Helper()
	resp, ok, err := a.AuthenticateRequest(req)
	if err != nil || !ok || resp == nil {
		t.Fatalf("authenticate: ok=%v err=%v, want success", ok, err)
	}
	if resp.User.GetName() != cn {
		t.Fatalf("user %q, want %q", resp.User.GetName(), cn)
	}
	return resp
}

func refuse(t *testing.T, a authenticator.Request, req *http.Request) {
	t.Helper()
	resp, ok, err := a.AuthenticateRequest(req)
	if err == nil || ok || resp != nil {
		t.Fatalf("authenticate: ok=%v err=%v resp=%v, want an error", ok, err, resp)
	}
}

func wantCalls(t *testing.T, v *countingVerifier, want int64) {
	t.Helper()
	if got := v.calls.Load(); got != want {
		t.Fatalf("the verifier was consulted %d times, want %d", got, want)
	}
}

func TestCertCacheHitSkipsVerification(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	leaf := newLeaf(t, ca, "kube-apiserver", t0.Add(30*24*time.Hour))
	v := newCountingVerifier(clock, ca)
	c := newTestCertCache(v, clock, ca)

	first := authenticate(t, c, tlsRequest(leaf), "kube-apiserver")
	wantCalls(t, v, 1)
	for range 4 {
		clock.Step(time.Minute)
		if got := authenticate(t, c, tlsRequest(leaf), "kube-apiserver"); got != first {
			t.Fatalf("a hit answered %+v, want the cached %+v", got, first)
		}
		wantCalls(t, v, 1)
	}
	// A new request object with the same chain (a new connection) hits too.
	req := tlsRequest()
	req.TLS.PeerCertificates = []*x509.Certificate{mustParse(t, leaf.cert.Raw)}
	authenticate(t, c, req, "kube-apiserver")
	wantCalls(t, v, 1)
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(slices.Clone(der))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertCacheEntryLivesAtMostTheTTL(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	leaf := newLeaf(t, ca, "kube-apiserver", t0.Add(30*24*time.Hour))
	v := newCountingVerifier(clock, ca)
	c := newTestCertCache(v, clock, ca)

	authenticate(t, c, tlsRequest(leaf), "kube-apiserver")
	clock.Step(clientCertCacheTTL)
	authenticate(t, c, tlsRequest(leaf), "kube-apiserver")
	wantCalls(t, v, 1)
	clock.Step(time.Nanosecond)
	authenticate(t, c, tlsRequest(leaf), "kube-apiserver")
	wantCalls(t, v, 2)
	authenticate(t, c, tlsRequest(leaf), "kube-apiserver")
	wantCalls(t, v, 2)
}

// TestCertCacheLeafExpiry: an entry never outlives its leaf; once the leaf
// expires it is verified again, and refused.
func TestCertCacheLeafExpiry(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	leaf := newLeaf(t, ca, "kube-apiserver", t0.Add(time.Minute))
	v := newCountingVerifier(clock, ca)
	c := newTestCertCache(v, clock, ca)

	authenticate(t, c, tlsRequest(leaf), "kube-apiserver")
	clock.Step(time.Minute) // exactly NotAfter: still valid, as for x509
	authenticate(t, c, tlsRequest(leaf), "kube-apiserver")
	wantCalls(t, v, 1)
	clock.Step(time.Second)
	refuse(t, c, tlsRequest(leaf))
	wantCalls(t, v, 2)
	refuse(t, c, tlsRequest(leaf))
	wantCalls(t, v, 3)
}

func TestCertCacheIntermediateAndRootExpiry(t *testing.T) {
	for _, tc := range []struct {
		name          string
		rootNotAfter  time.Duration
		interNotAfter time.Duration
	}{
		{"the intermediate expires first", 365 * 24 * time.Hour, 2 * time.Minute},
		{"the root expires first", 2 * time.Minute, 365 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			ca := newCA(t, t0.Add(tc.rootNotAfter))
			inter := newCert(t, ca, "intermediate", t0.Add(-time.Hour), t0.Add(tc.interNotAfter), true)
			leaf := newLeaf(t, inter, "kube-apiserver", t0.Add(24*time.Hour))
			// A root that expired long ago is not the one to watch.
			old := newCert(t, nil, "old CA", t0.Add(-48*time.Hour), t0.Add(-24*time.Hour), true)
			v := newCountingVerifier(clock, ca, old)
			c := newTestCertCache(v, clock, ca, old)

			authenticate(t, c, tlsRequest(leaf, inter), "kube-apiserver")
			clock.Step(2 * time.Minute)
			authenticate(t, c, tlsRequest(leaf, inter), "kube-apiserver")
			wantCalls(t, v, 1)
			clock.Step(time.Second)
			refuse(t, c, tlsRequest(leaf, inter))
			wantCalls(t, v, 2)
		})
	}
}

func TestCertCacheExpiredLeafIsRefusedAndNotCached(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	expired := newLeaf(t, ca, "kube-apiserver", t0.Add(-time.Minute))
	v := newCountingVerifier(clock, ca)
	c := newTestCertCache(v, clock, ca)
	for i := range 3 {
		refuse(t, c, tlsRequest(expired))
		wantCalls(t, v, int64(i+1))
	}
}

func TestCertCacheFailureIsNotCached(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	other := newCA(t, t0.Add(365*24*time.Hour))
	stranger := newLeaf(t, other, "kube-apiserver", t0.Add(24*time.Hour))
	v := newCountingVerifier(clock, ca)
	c := newTestCertCache(v, clock, ca)
	for i := range 3 {
		refuse(t, c, tlsRequest(stranger))
		wantCalls(t, v, int64(i+1))
	}
	// "No opinion" (a certificate without a common name) is not cached either.
	anon := newLeaf(t, ca, "", t0.Add(24*time.Hour))
	for i := range 2 {
		if resp, ok, err := c.AuthenticateRequest(tlsRequest(anon)); resp != nil || ok || err != nil {
			t.Fatalf("no common name: %v %v %v, want no opinion", resp, ok, err)
		}
		wantCalls(t, v, int64(4+i))
	}
}

func TestCertCacheDifferentChainIsAMiss(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	inter := newCert(t, ca, "intermediate", t0.Add(-time.Hour), t0.Add(24*time.Hour), true)
	a := newLeaf(t, ca, "apiserver-a", t0.Add(24*time.Hour))
	b := newLeaf(t, ca, "apiserver-b", t0.Add(24*time.Hour))
	// Same name, same CA, another key: another certificate.
	a2 := newLeaf(t, ca, "apiserver-a", t0.Add(24*time.Hour))
	viaInter := newLeaf(t, inter, "apiserver-a", t0.Add(24*time.Hour))
	v := newCountingVerifier(clock, ca)
	c := newTestCertCache(v, clock, ca)

	authenticate(t, c, tlsRequest(a), "apiserver-a")
	authenticate(t, c, tlsRequest(b), "apiserver-b")
	authenticate(t, c, tlsRequest(a2), "apiserver-a")
	authenticate(t, c, tlsRequest(viaInter, inter), "apiserver-a")
	wantCalls(t, v, 4)
	// The leaf alone cannot be verified; the chain that could is cached,
	// which must not help.
	refuse(t, c, tlsRequest(viaInter))
	wantCalls(t, v, 5)
	// An extra certificate after the leaf is another chain.
	authenticate(t, c, tlsRequest(a, inter), "apiserver-a")
	wantCalls(t, v, 6)
	for _, chain := range [][]*testCert{{a}, {b}, {a2}, {viaInter, inter}, {a, inter}} {
		authenticate(t, c, tlsRequest(chain...), chain[0].cert.Subject.CommonName)
	}
	wantCalls(t, v, 6)
}

func TestChainKeyLengthPrefixed(t *testing.T) {
	cert := func(raw string) *x509.Certificate { return &x509.Certificate{Raw: []byte(raw)} }
	ab := chainKey([]*x509.Certificate{cert("ab")})
	for i, other := range [][]*x509.Certificate{
		{cert("a"), cert("b")},
		{cert("ab"), cert("")},
		{cert(""), cert("ab")},
		{cert("b"), cert("a")},
	} {
		if chainKey(other) == ab {
			t.Errorf("chain %d has the key of [ab]", i)
		}
	}
	if chainKey([]*x509.Certificate{cert("ab")}) != ab {
		t.Error("the key is not deterministic")
	}
}

func TestCertCacheWithoutClientCertificate(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	v := newCountingVerifier(clock, ca)
	c := newTestCertCache(v, clock, ca)
	plain := httptest.NewRequest(http.MethodPost, "/tokenreview/c1", nil)
	for _, req := range []*http.Request{plain, tlsRequest()} {
		if resp, ok, err := c.AuthenticateRequest(req); resp != nil || ok || err != nil {
			t.Fatalf("no client certificate: %v %v %v, want no opinion", resp, ok, err)
		}
	}
	if n := len(c.cache.Keys()); n != 0 {
		t.Fatalf("%d cache entries", n)
	}
}

func TestCertCacheIsBounded(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	v := newCountingVerifier(clock, ca)
	c := newCertCache(v, []*x509.Certificate{ca.cert}, 2, 0, clock)
	var leaves []*testCert
	for _, cn := range []string{"a", "b", "c"} {
		l := newLeaf(t, ca, cn, t0.Add(24*time.Hour))
		leaves = append(leaves, l)
		authenticate(t, c, tlsRequest(l), cn)
	}
	if n := len(c.cache.Keys()); n != 2 {
		t.Fatalf("%d cache entries, want 2", n)
	}
	authenticate(t, c, tlsRequest(leaves[0]), "a") // evicted: verified again
	wantCalls(t, v, 4)
}

// TestWebhookCallersAfterCache: allowedClientNames is applied on every
// request, hits included, and the cached response is never altered.
func TestWebhookCallersAfterCache(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	good := newLeaf(t, ca, "kube-apiserver", t0.Add(24*time.Hour))
	other := newLeaf(t, ca, "someone-else", t0.Add(24*time.Hour))
	v := newCountingVerifier(clock, ca)
	a := webhookCallers(newTestCertCache(v, clock, ca), []string{"kube-apiserver"})
	for range 3 {
		resp := authenticate(t, a, tlsRequest(good), "kube-apiserver")
		if g := resp.User.GetGroups(); !slices.Equal(g, []string{"callers", Group}) {
			t.Fatalf("groups %v", g)
		}
		if !IsCaller(resp.User) {
			t.Fatalf("the user %#v is not a Caller", resp.User)
		}
		refuse(t, a, tlsRequest(other))
	}
	wantCalls(t, v, 2)
}

func TestCertCacheConcurrent(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, t0.Add(365*24*time.Hour))
	stranger := newLeaf(t, newCA(t, t0.Add(365*24*time.Hour)), "stranger", t0.Add(24*time.Hour))
	var leaves []*testCert
	for _, cn := range []string{"a", "b", "c", "d"} {
		leaves = append(leaves, newLeaf(t, ca, cn, t0.Add(24*time.Hour)))
	}
	v := newCountingVerifier(clock, ca)
	c := newCertCache(v, []*x509.Certificate{ca.cert}, 3, 0, clock) // smaller than the set: evictions too
	a := webhookCallers(c, []string{"a", "b", "c"})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range 300 {
				if w == 0 && i%50 == 0 {
					clock.Step(time.Minute)
				}
				l := leaves[(w+i)%len(leaves)]
				cn := l.cert.Subject.CommonName
				resp, ok, err := a.AuthenticateRequest(tlsRequest(l))
				switch {
				case cn == "d" && (ok || err == nil):
					errs <- "d is not an allowed client name"
				case cn != "d" && (!ok || err != nil || resp.User.GetName() != cn):
					errs <- "allowed client " + cn + " refused"
				}
				if _, ok, _ := a.AuthenticateRequest(tlsRequest(stranger)); ok {
					errs <- "a stranger was authenticated"
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestNewWebhookClientAuthenticator(t *testing.T) {
	ca := newCA(t, time.Now().Add(365*24*time.Hour))
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := append([]byte("not PEM\n"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(v1alpha1.WebhookConfig{ClientCAFile: caFile, AllowedClientNames: []string{"kube-apiserver"}})
	if err != nil {
		t.Fatal(err)
	}
	good := newCert(t, ca, "kube-apiserver", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
	for range 2 {
		resp := authenticate(t, a, tlsRequest(good), "kube-apiserver")
		if !slices.Contains(resp.User.GetGroups(), Group) {
			t.Fatalf("groups %v", resp.User.GetGroups())
		}
		refuse(t, a, tlsRequest(newCert(t, ca, "someone-else", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)))
		refuse(t, a, tlsRequest(newCert(t, ca, "kube-apiserver", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour), false)))
	}
	if resp, ok, err := a.AuthenticateRequest(httptest.NewRequest(http.MethodPost, "/tokenreview/c1", nil)); resp != nil || ok || err != nil {
		t.Fatalf("no TLS: %v %v %v, want no opinion", resp, ok, err)
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("nothing here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(v1alpha1.WebhookConfig{ClientCAFile: empty}); err == nil {
		t.Fatal("a CA file without certificates was accepted")
	}
}

// BenchmarkWebhookClientCert is the client-certificate authentication of one
// TokenReview request from a kube-apiserver (leaf signed by the client CA,
// ECDSA P-256), with and without the verification cache.
func BenchmarkWebhookClientCert(b *testing.B) {
	ca := newCert(b, nil, "test CA", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), true)
	leaf := newCert(b, ca, "kube-apiserver", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	verifier := func() authenticator.Request {
		return x509request.New(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, x509request.CommonNameUserConversion)
	}
	for _, bc := range []struct {
		name string
		a    authenticator.Request
	}{
		{"uncached", webhookCallers(verifier(), []string{"kube-apiserver"})},
		{"cached", webhookCallers(newCertCache(verifier(), []*x509.Certificate{ca.cert}, 0, 0, nil), []string{"kube-apiserver"})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := tlsRequest(leaf)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := bc.a.AuthenticateRequest(req); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
