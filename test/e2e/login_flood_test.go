package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// Issue 13, finding 1: one client flooding GET /login/<idp> (far past the
// 10,000 logins in progress a server keeps in memory) does not stop another
// client's real login through Dex.
func TestLogin_AFloodOfLoginStartsFromOneClientLocksNobodyElseOut(t *testing.T) {
	t.Parallel()
	s := startLoginStack(t, false)

	// The flooder connects from another loopback address (127.0.0.2), so
	// the server sees two clients.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.portcullis.CACertPEM())
	flooder := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: pool},
			MaxIdleConnsPerHost: 16,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer flooder.CloseIdleConnections()
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		wg    sync.WaitGroup
		next  = make(chan struct{})
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				resp, err := flooder.Get(s.portcullis.URL + "/login/dex")
				code := -1
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for range 10_500 {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	t.Logf("flood: %d login starts in %s: %v", 10_500, time.Since(start).Round(time.Millisecond), codes)
	if codes[http.StatusTooManyRequests] < 10_000 {
		t.Errorf("the flooder was not throttled: %v", codes)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := framework.NewBrowser(s.pki.CA.CertFile, s.portcullis.CACertFile())
	if err != nil {
		t.Fatal(err)
	}
	page, err := b.DexLogin(ctx, nil, s.portcullis.URL+"/login", "alice@example.com", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || !strings.Contains(string(page.Body), "Login complete") {
		t.Fatalf("alice's login after the flood: %d %s", page.Status, page.Body)
	}
}
