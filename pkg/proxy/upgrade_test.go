package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// The upgrade tests run kubectl's two real protocols (SPDY/3.1 and
// WebSocket), with the same libraries kubelet and kubectl use, through the
// proxy to an upstream that echoes.

func (e *testEnv) frontTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.front.Certificate())
	return &tls.Config{RootCAs: pool}
}

func TestProxyCarriesSPDY(t *testing.T) {
	env := newTestEnv(t)
	env.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		streams := make(chan httpstream.Stream, 1)
		conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
			streams <- s
			return nil
		})
		if conn == nil {
			return
		}
		defer conn.Close()
		select {
		case s := <-streams:
			_, _ = io.Copy(s, s)
		case <-time.After(10 * time.Second):
		}
	})

	before := counterValue(t, upgradesTotal.WithLabelValues("c1", "spdy"))
	rt, err := spdy.NewRoundTripperWithConfig(spdy.RoundTripperConfig{TLS: env.frontTLS()})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", env.front.URL+"/clusters/c1/api/v1/namespaces/default/pods/p/exec?command=cat&stdin=true", nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
	req.Header.Set("Impersonate_User", "admin")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := conn.CreateStream(http.Header{"Streamtype": {"stdin"}})
	if err != nil {
		t.Fatal(err)
	}
	echo(t, s)
	if after := counterValue(t, upgradesTotal.WithLabelValues("c1", "spdy")); after != before+1 {
		t.Errorf("portcullis_proxy_upgrades_total{cluster=c1,protocol=spdy} went from %v to %v", before, after)
	}

	got := env.up.last()
	if got.Proto != "HTTP/1.1" || got.Header.Get("Upgrade") != "SPDY/3.1" || got.Header.Get("X-Stream-Protocol-Version") != "v4.channel.k8s.io" {
		t.Errorf("upstream got %s with Upgrade %q, X-Stream-Protocol-Version %q", got.Proto, got.Header.Get("Upgrade"), got.Header.Get("X-Stream-Protocol-Version"))
	}
	if ids := identityHeaders(got.Header); !reflect.DeepEqual(ids, aliceUpstream) {
		t.Errorf("upstream identity headers\n  %v\nwant\n  %v", ids, aliceUpstream)
	}
}

func TestProxyCarriesWebSocket(t *testing.T) {
	env := newTestEnv(t)
	env.up.setHandler(websocket.Handler(func(ws *websocket.Conn) {
		_, _ = io.Copy(ws, ws)
	}).ServeHTTP)

	before := counterValue(t, upgradesTotal.WithLabelValues("c1", "websocket"))
	cfg, err := websocket.NewConfig(strings.Replace(env.front.URL, "https://", "wss://", 1)+"/clusters/c1/api/v1/namespaces/default/pods/p/exec?command=cat", "http://localhost")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TlsConfig = env.frontTLS()
	cfg.Protocol = []string{"v5.channel.k8s.io"}
	cfg.Header = http.Header{"Authorization": {"Bearer alice-token"}, "X-Remote-User": {"admin"}}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	echo(t, ws)
	if after := counterValue(t, upgradesTotal.WithLabelValues("c1", "websocket")); after != before+1 {
		t.Errorf("portcullis_proxy_upgrades_total{cluster=c1,protocol=websocket} went from %v to %v", before, after)
	}

	got := env.up.last()
	if got.Header.Get("Sec-Websocket-Protocol") != "v5.channel.k8s.io" {
		t.Errorf("upstream got Sec-WebSocket-Protocol %q", got.Header.Get("Sec-Websocket-Protocol"))
	}
	if ids := identityHeaders(got.Header); !reflect.DeepEqual(ids, aliceUpstream) {
		t.Errorf("upstream identity headers\n  %v\nwant\n  %v", ids, aliceUpstream)
	}
}

func echo(t *testing.T, rw io.ReadWriter) {
	t.Helper()
	for _, msg := range []string{"hello", "through portcullis"} {
		done := make(chan error, 1)
		buf := make([]byte, len(msg))
		go func() {
			_, err := io.ReadFull(rw, buf)
			done <- err
		}()
		if _, err := rw.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no echo of %q", msg)
		}
		if string(buf) != msg {
			t.Fatalf("echo %q, want %q", buf, msg)
		}
	}
}

func counterValue(t *testing.T, c metrics.CounterMetric) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestProxyServesOtherUpgradesAsOrdinaryRequests: an Upgrade the API server
// does not speak (h2c, anything but SPDY or WebSocket) is dropped and the
// request served as an ordinary one, so the upstream's 200 reaches the
// client; before, the upgrade-aware handler required a switch and answered
// 503 "unreachable".
func TestProxyServesOtherUpgradesAsOrdinaryRequests(t *testing.T) {
	env := newTestEnv(t)
	for _, tc := range []struct{ connection, upgrade string }{
		{"Upgrade, HTTP2-Settings", "h2c"},
		{"upgrade", "portcullis-echo"},
		{"keep-alive, Upgrade", "TLS/1.2"},
	} {
		t.Run(tc.upgrade, func(t *testing.T) {
			// Http2-Settings goes too when Connection names it.
			resp, body := env.do(t, env.h1Client, http.MethodGet, "/clusters/c1/api/v1/namespaces", http.Header{
				"Authorization":  {"Bearer alice-token"},
				"Connection":     {tc.connection},
				"Upgrade":        {tc.upgrade},
				"Http2-Settings": {"AAMAAABkAAQAoAAAAAIAAAAA"},
			})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP %d, want the upstream's 200: %s", resp.StatusCode, body)
			}
			got := env.up.last()
			for _, h := range []string{"Upgrade", "Connection", "Http2-Settings"} {
				if h == "Http2-Settings" && !strings.Contains(tc.connection, h[:5]) {
					continue
				}
				if v, ok := got.Header[h]; ok {
					t.Errorf("the upstream got %s: %q", h, v)
				}
			}
			if ids := identityHeaders(got.Header); !reflect.DeepEqual(ids, aliceUpstream) {
				t.Errorf("upstream identity headers\n  %v\nwant\n  %v", ids, aliceUpstream)
			}
		})
	}
}

func TestStreamUpgrade(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want bool
	}{
		{http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}, true},
		{http.Header{"Connection": {"upgrade"}, "Upgrade": {"websocket"}}, true},
		{http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"WebSocket"}}, true},
		{http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c, websocket"}}, true},
		{http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}}, false},
		{http.Header{"Upgrade": {"websocket"}}, false},
		{http.Header{"Connection": {"Upgrade"}}, false},
		{http.Header{"Connection": {"close"}}, false},
		{http.Header{}, false},
	} {
		if got := streamUpgrade(tc.h); got != tc.want {
			t.Errorf("streamUpgrade(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
	h := http.Header{"Connection": {"close"}}
	if n := testing.AllocsPerRun(100, func() { _ = streamUpgrade(h) }); n != 0 {
		t.Errorf("streamUpgrade allocates %v times", n)
	}
}
