package testkit

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
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Dir is a directory that PEM files of a test PKI are written into, each
// under a name of its own.
type Dir struct {
	Path string

	t     testing.TB
	mu    sync.Mutex
	names map[string]int
}

// NewDir returns path as a Dir (created if needed), or a new temporary
// directory when path is empty.
func NewDir(t testing.TB, path string) *Dir {
	t.Helper()
	if path == "" {
		path = t.TempDir()
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return &Dir{Path: path, t: t, names: map[string]int{}}
}

// Write writes data to the file name in d and returns its path.
func (d *Dir) Write(name string, data []byte) string {
	d.t.Helper()
	path := filepath.Join(d.Path, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		d.t.Fatalf("writing %s: %v", path, err)
	}
	return path
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// unique turns base into a file name not used before in d.
func (d *Dir) unique(base string) string {
	base = strings.Trim(unsafeChars.ReplaceAllString(base, "_"), "_")
	d.mu.Lock()
	defer d.mu.Unlock()
	d.names[base]++
	if n := d.names[base]; n > 1 {
		return fmt.Sprintf("%s-%d", base, n)
	}
	return base
}

// CA is a certificate authority of a test PKI (ECDSA P-256).
type CA struct {
	Name     string
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
	CertPEM  []byte
	CertFile string // CertPEM, in the CA's Dir

	dir *Dir
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

// NewCA returns a self-signed CA named cn, its certificate written to a
// temporary directory.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	return NewDir(t, "").NewCA("ca", cn)
}

// NewCA creates a self-signed CA named cn; its certificate is written to
// <file>.crt in d.
func (d *Dir) NewCA(file, cn string) *CA {
	d.t.Helper()
	key := newKey(d.t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(d.t),
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
		d.t.Fatalf("creating CA %s: %v", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		d.t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &CA{Name: cn, Cert: cert, Key: key, CertPEM: certPEM, CertFile: d.Write(d.unique(file)+".crt", certPEM), dir: d}
}

// Pool returns a pool holding only ca.
func (ca *CA) Pool() *x509.CertPool { return CertPool(ca) }

// CertPool returns a pool holding the given CAs.
func CertPool(cas ...*CA) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca.Cert)
	}
	return pool
}

// IssueServing issues a server certificate (also usable as client
// certificate) for names: IP addresses become IP SANs, the rest DNS SANs;
// the first is also the common name.
func (ca *CA) IssueServing(names ...string) KeyPair {
	ca.dir.t.Helper()
	if len(names) == 0 {
		ca.dir.t.Fatal("IssueServing needs at least one name")
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
	ca.dir.t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue("client-"+cn, tmpl)
}

func (ca *CA) issue(base string, tmpl *x509.Certificate) KeyPair {
	t := ca.dir.t
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(23 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("issuing %s: %v", base, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kp := KeyPair{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: ECKeyPEM(t, key)}
	base = ca.dir.unique(base)
	kp.CertFile = ca.dir.Write(base+".crt", kp.CertPEM)
	kp.KeyFile = ca.dir.Write(base+".key", kp.KeyPEM)
	return kp
}

// newKey returns a new ECDSA P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// ECKeyPEM returns key as an "EC PRIVATE KEY" PEM block.
func ECKeyPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}
