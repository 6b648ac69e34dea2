package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// CA is a certificate authority of the test PKI.
type CA struct {
	Name     string
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
	CertPEM  []byte
	CertFile string // PEM, in the PKI directory
	pki      *PKI
}

// KeyPair is a certificate and its private key, as PEM and as files.
type KeyPair struct {
	Cert     *x509.Certificate
	CertPEM  []byte
	KeyPEM   []byte
	CertFile string
	KeyFile  string
}

// TLSCertificate returns the pair as a tls.Certificate.
func (k KeyPair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(k.CertPEM, k.KeyPEM)
}

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
	mu    sync.Mutex
	names map[string]int
}

// NewPKI generates a fresh PKI for the test.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: filepath.Join(WorkDir(t), "pki"), t: t, names: map[string]int{}}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
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
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p.SAKeyFile = p.write("sa.key", keyPEM)
	p.SAPublicKeyFile = p.write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
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
func CertPool(cas ...*CA) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca.Cert)
	}
	return pool
}

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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          p.nextSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		p.t.Fatalf("creating CA %s: %v", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &CA{Name: cn, Cert: cert, Key: key, CertPEM: certPEM, CertFile: p.write(file+".crt", certPEM), pki: p}
}

// IssueServing issues a server certificate (also usable as client
// certificate) for names: IP addresses become IP SANs, the rest DNS SANs.
func (ca *CA) IssueServing(names ...string) KeyPair {
	ca.pki.t.Helper()
	if len(names) == 0 {
		ca.pki.t.Fatal("IssueServing needs at least one name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.issue("serving-"+names[0], tmpl)
}

// IssueClient issues a client certificate with common name cn and
// organizations orgs (Kubernetes reads them as user name and groups).
func (ca *CA) IssueClient(cn string, orgs ...string) KeyPair {
	ca.pki.t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue("client-"+cn, tmpl)
}

func (ca *CA) issue(base string, tmpl *x509.Certificate) KeyPair {
	p := ca.pki
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl.SerialNumber = p.nextSerial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(23 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		p.t.Fatalf("issuing %s: %v", base, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatal(err)
	}
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		p.t.Fatal(err)
	}
	kp := KeyPair{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}
	base = p.uniqueName(base)
	kp.CertFile = p.write(base+".crt", kp.CertPEM)
	kp.KeyFile = p.write(base+".key", kp.KeyPEM)
	return kp
}

func ecKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func (p *PKI) nextSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		p.t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func (p *PKI) uniqueName(base string) string {
	base = strings.Trim(unsafeChars.ReplaceAllString(base, "_"), "_")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names[base]++
	if n := p.names[base]; n > 1 {
		return fmt.Sprintf("%s-%d", base, n)
	}
	return base
}

func (p *PKI) write(name string, data []byte) string {
	p.t.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		p.t.Fatalf("writing %s: %v", path, err)
	}
	return path
}
