package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"

	"portcullis.dev/portcullis/internal/testkit"
)

func TestVerifyAgainstChecksTheChainAndTheUpstreamsName(t *testing.T) {
	ca := testkit.NewCA(t, "upstream CA")
	serving := ca.IssueServing("127.0.0.1", "api.example")
	dynamic, err := newCAFile("test", ca.CertFile, time.Minute, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{serving.Cert}}
	for _, host := range []string{"127.0.0.1", "api.example"} {
		if err := verifyAgainst(dynamic, host)(cs); err != nil {
			t.Errorf("the upstream's own certificate for %s: %v", host, err)
		}
	}
	if err := verifyAgainst(dynamic, "other.example")(cs); err == nil {
		t.Error("a certificate for another name was accepted")
	}
	if err := verifyAgainst(dynamic, "")(cs); err == nil {
		t.Error("a certificate was accepted without a name to check")
	}
	client := ca.IssueClient("not-a-server")
	if err := verifyAgainst(dynamic, "127.0.0.1")(tls.ConnectionState{PeerCertificates: []*x509.Certificate{client.Cert}}); err == nil {
		t.Error("a client-only certificate was accepted as a server's")
	}
	other := testkit.NewCA(t, "another CA")
	otherCA, err := newCAFile("other", other.CertFile, time.Minute, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyAgainst(otherCA, "127.0.0.1")(cs); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
	if err := verifyAgainst(dynamic, "127.0.0.1")(tls.ConnectionState{}); err == nil {
		t.Error("a connection without a certificate was accepted")
	}
}

// A rotated CA file is trusted for new connections without a configuration
// reload.
func TestUpstreamCAFileIsReloadedWhenItChanges(t *testing.T) {
	env := newTestEnv(t)
	u := env.proxy.state.Load().upstreams["c1"]
	next := testkit.NewCA(t, "rotated CA")
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{next.IssueServing("127.0.0.1").Cert}}
	verify := verifyAgainst(u.ca, "127.0.0.1")
	if verify(cs) == nil {
		t.Fatal("a certificate of the next CA verified before the rotation")
	}
	// Written and renamed, as a mounted Secret or ConfigMap changes.
	tmp := env.ca + ".tmp"
	if err := os.WriteFile(tmp, next.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, env.ca); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for verify(cs) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the rotated CA was not loaded within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A cluster's CA file costs no goroutine and no file watch (inotify
// instances are limited to 128 per user by default): it is read again at
// the handshakes that need it.
func TestClustersCAFilesHoldNoGoroutines(t *testing.T) {
	ca := testkit.NewCA(t, "upstream CA")
	token := writeToken(t, "sa-token\n")
	var clusters []v1alpha1.Cluster
	for i := range 50 {
		clusters = append(clusters, cluster(fmt.Sprintf("c%d", i), "https://127.0.0.1:1", ca.CertFile, token))
	}
	before := runtime.NumGoroutine()
	p, err := New(clusters, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	time.Sleep(100 * time.Millisecond) // what New starts has started
	if grew := runtime.NumGoroutine() - before; grew > 10 {
		t.Errorf("50 clusters started %d goroutines, want none per cluster", grew)
	}
}

// A CA file read at most every recheck: a handshake after that reads it
// again, so a CA added to the bundle is trusted without a failure first.
func TestUpstreamCAFileIsReadAgainAfterTheRecheckInterval(t *testing.T) {
	first := testkit.NewCA(t, "first CA")
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, first.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakeClock(time.Now())
	c, err := newCAFile("test", path, 2*time.Second, clk)
	if err != nil {
		t.Fatal(err)
	}
	next := testkit.NewCA(t, "next CA")
	if err := os.WriteFile(path, append(append([]byte{}, first.CertPEM...), next.CertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	roots := func(force bool) int {
		opts := c.verifyOptions(force)
		cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{next.IssueServing("127.0.0.1").Cert}}
		if verifyChain(cs, opts, "127.0.0.1") == nil {
			return 2
		}
		return 1
	}
	if roots(false) != 1 {
		t.Fatal("the file was read again before its recheck interval")
	}
	clk.Step(2 * time.Second)
	if roots(false) != 2 {
		t.Fatal("the file was not read again after its recheck interval")
	}
	// A file that becomes unreadable keeps the CA read before.
	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if roots(true) != 2 {
		t.Fatal("a broken CA file replaced the CA read before")
	}
}

func TestUpstreamCAFileThatHoldsNoCertificateIsRefused(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": "", "blank": " \n", "garbage": "not a certificate"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := newCAFile("test", path, time.Second, clock.RealClock{}); err == nil {
			t.Errorf("a CA file that is %s was accepted", name)
		}
	}
	if _, err := newCAFile("test", filepath.Join(dir, "missing"), time.Second, clock.RealClock{}); err == nil {
		t.Error("a missing CA file was accepted")
	}
}
