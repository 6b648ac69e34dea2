package proxy

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxyGet compares a small GET sent straight to an (httptest)
// upstream with the same GET through the proxy, same client and
// concurrency. The proxy's share is header hygiene, impersonation headers,
// the upgrade-aware handler and a second TLS hop (both over HTTP/2).
//
//	go test ./pkg/proxy -run '^$' -bench ProxyGet -benchmem
func BenchmarkProxyGet(b *testing.B) {
	env := newTestEnv(b)
	// Keep the fake upstream from recording every request.
	env.up.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"small","namespace":"default"},"data":{"k":"v"}}`)
	})
	run := func(b *testing.B, client *http.Client, url string, header http.Header) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header = header.Clone()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	const path = "/api/v1/namespaces/default/configmaps/small"
	b.Run("direct", func(b *testing.B) {
		run(b, env.up.server.Client(), env.up.server.URL+path, bearer("sa-token"))
	})
	b.Run("proxied", func(b *testing.B) {
		run(b, env.front.Client(), env.front.URL+"/clusters/c1"+path, bearer("alice-token"))
	})
	// As kubectl sends it: with the command and session headers the proxy
	// records (kubectlAnnotations).
	b.Run("proxied-kubectl", func(b *testing.B) {
		h := bearer("alice-token")
		h.Set(KubectlCommandHeader, "kubectl get")
		h.Set(KubectlSessionHeader, "0f8a4a6e-2d3b-4b1e-9c55-1a2b3c4d5e6f")
		run(b, env.front.Client(), env.front.URL+"/clusters/c1"+path, h)
	})
}
