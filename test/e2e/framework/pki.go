package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testkit"
)

// CA is a certificate authority of the test PKI (internal/testkit's).
type CA = testkit.CA

// KeyPair is a certificate and its private key, as PEM and as files.
type KeyPair = testkit.KeyPair

// PKI is the test's public key infrastructure, all ECDSA P-256, written as
// PEM files into <WorkDir>/pki:
//
//   - CA (ca.crt): the cluster CA; signs serving certificates (kube-apiserver,
//     Dex, test kubelets, aggregated servers) — IssueServing.
//   - ClientCA (client-ca.crt): kube-apiserver's --client-ca-file; signs
//     client certificates (admin, kubelet client, users) — IssueClient.
//   - FrontProxyCA (front-proxy-ca.crt) and FrontProxyClient (CN
//     front-proxy-client): the requestheader authentication pair.
//   - APIServer: kube-apiserver's serving certificate (127.0.0.1, localhost,
//     kubernetes.default.svc, ...).
//   - KubeletClient: kube-apiserver's client certificate towards kubelets.
//   - SAKeyFile/SAPublicKeyFile: the service-account signing key pair.
//
// A PKI may be shared by every component of a test.
type PKI struct {
	Dir string

	CA               *CA
	ClientCA         *CA
	FrontProxyCA     *CA
	APIServer        KeyPair
	FrontProxyClient KeyPair
	KubeletClient    KeyPair
	SAKey            *ecdsa.PrivateKey
	SAKeyFile        string // EC PRIVATE KEY PEM
	SAPublicKeyFile  string // PUBLIC KEY (PKIX) PEM

	t     testing.TB
	files *testkit.Dir
}

// NewPKI generates a fresh PKI for the test.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: filepath.Join(WorkDir(t), "pki"), t: t}
	p.files = testkit.NewDir(t, p.Dir)
	p.CA = p.NewCA("ca", "portcullis-e2e-cluster-ca")
	p.ClientCA = p.NewCA("client-ca", "portcullis-e2e-client-ca")
	p.FrontProxyCA = p.NewCA("front-proxy-ca", "portcullis-e2e-front-proxy-ca")
	p.APIServer = p.CA.IssueServing("127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.0.0.1")
	p.FrontProxyClient = p.FrontProxyCA.IssueClient("front-proxy-client")
	p.KubeletClient = p.ClientCA.IssueClient("kube-apiserver-kubelet-client")

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.SAKey = key
	keyPEM := testkit.ECKeyPEM(t, key)
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p.SAKeyFile = p.files.Write("sa.key", keyPEM)
	p.SAPublicKeyFile = p.files.Write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	return p
}

// IssueServing issues a serving certificate signed by the cluster CA. Each
// name is a DNS or IP SAN; the first is also the common name.
func (p *PKI) IssueServing(names ...string) KeyPair { return p.CA.IssueServing(names...) }

// IssueClient issues a client certificate signed by the client CA (which
// kube-apiserver trusts): CN is the user name, orgs are the groups.
func (p *PKI) IssueClient(cn string, orgs ...string) KeyPair {
	return p.ClientCA.IssueClient(cn, orgs...)
}

// CertPool returns a pool holding the given CAs.
func CertPool(cas ...*CA) *x509.CertPool { return testkit.CertPool(cas...) }

// HTTPClient returns an HTTP client trusting the cluster CA.
func (p *PKI) HTTPClient() *http.Client { return HTTPClientFor(CertPool(p.CA)) }

// HTTPClientFor returns an HTTP client with its own transport trusting roots.
func HTTPClientFor(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		},
	}
}

// NewCA creates a self-signed CA; its certificate is written to <file>.crt.
func (p *PKI) NewCA(file, cn string) *CA {
	p.t.Helper()
	return p.files.NewCA(file, cn)
}
