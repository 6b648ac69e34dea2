package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// metricsClient is a Prometheus scraper of p: a client certificate from
// pki's client CA in the group system:monitoring, which p accepts when that
// CA is its --client-ca-file or its webhook.clientCAFile.
func metricsClient(t testing.TB, p *framework.Portcullis, pki *framework.PKI) *http.Client {
	t.Helper()
	kp := pki.IssueClient("prometheus", "system:monitoring")
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	hc := p.HTTPClient()
	hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	return hc
}

// scrapeMetrics returns p's /metrics as the scraper of metricsClient.
func scrapeMetrics(t testing.TB, p *framework.Portcullis, pki *framework.PKI) []byte {
	t.Helper()
	hc := metricsClient(t, p, pki)
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics as a system:monitoring client: %d %s", resp.StatusCode, body)
	}
	return body
}
