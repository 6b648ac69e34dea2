package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"

	"portcullis.dev/portcullis/internal/testkit"
)

func TestVerifyAgainstChecksTheChainAndTheUpstreamsName(t *testing.T) {
	ca := testkit.NewCA(t, "upstream CA")
	serving := ca.IssueServing("127.0.0.1", "api.example")
	dynamic, err := dynamiccertificates.NewDynamicCAContentFromFile("test", ca.CertFile)
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
	otherCA, err := dynamiccertificates.NewDynamicCAContentFromFile("other", other.CertFile)
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
