package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// caFile is an upstream's CA file (upstream.certificateAuthorityFile), read
// again when a TLS handshake needs it and it was last read more than
// recheck ago, and at once when a certificate does not verify against it:
// a rotated CA is trusted from the first connection that needs it, without
// a reload. It reads the file only at handshakes (connections are pooled,
// so rarely), and holds no goroutine and no file watch: a watcher per
// cluster (dynamiccertificates.DynamicFileCAContent) cost six goroutines
// and one inotify
// instance each, and Linux allows 128 inotify instances per user by
// default, which bounded how many clusters one Portcullis could proxy.
type caFile struct {
	name, path string
	recheck    time.Duration
	clock      clock.PassiveClock

	mu   sync.Mutex
	read time.Time // when the file was last read
	pem  []byte    // its content then
	opts x509.VerifyOptions
}

func newCAFile(name, path string, recheck time.Duration, clk clock.PassiveClock) (*caFile, error) {
	c := &caFile{name: name, path: path, recheck: recheck, clock: clk}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.read = clk.Now()
	return c, nil
}

// load reads the file and, if its content changed, takes its certificates
// as the roots. A file that cannot be read or holds no certificate changes
// nothing.
func (c *caFile) load() error {
	data, err := os.ReadFile(c.path)
	if err != nil {
		return err
	}
	if c.pem != nil && bytes.Equal(data, c.pem) {
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("the file is empty; it must hold the PEM certificates of the CA")
	}
	ca, err := dynamiccertificates.NewStaticCAContent(c.name, data)
	if err != nil {
		return err
	}
	opts, _ := ca.VerifyOptions()
	c.pem, c.opts = data, opts
	return nil
}

// verifyOptions are the CA's current roots, after reading the file again
// if force is set or the last read is older than recheck.
func (c *caFile) verifyOptions(force bool) x509.VerifyOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.clock.Now(); force || now.Sub(c.read) >= c.recheck {
		c.read = now
		if err := c.load(); err != nil {
			klog.ErrorS(err, "Reading an upstream CA file again failed; the CA read before stays trusted", "name", c.name, "path", c.path)
		}
	}
	return c.opts
}

// verifyAgainst verifies an upstream's certificate chain and its name, host
// (the upstream server's), as crypto/tls does, with ca's current roots. The
// name is the upstream's own, not the connection's ServerName: the upgrade
// dialer leaves that empty when InsecureSkipVerify is set.
func verifyAgainst(ca *caFile, host string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		err := verifyChain(cs, ca.verifyOptions(false), host)
		if err != nil {
			// The CA may have been rotated since it was read.
			err = verifyChain(cs, ca.verifyOptions(true), host)
		}
		return err
	}
}
