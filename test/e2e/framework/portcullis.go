package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PortcullisOptions configures StartPortcullis.
type PortcullisOptions struct {
	// ConfigYAML is the content of the file passed as --config.
	ConfigYAML string
	// ExtraArgs are appended after the framework's flags.
	ExtraArgs []string
	// Env is added to the environment of the server.
	Env []string
	// Port is the --secure-port; a free port when zero. Pick it with
	// FreePort beforehand when the configuration must name it (issuerURL).
	Port int
	// Name tells several servers of one test apart (their directories and
	// logs); "portcullis-server" when empty.
	Name string
}

// Portcullis is a running portcullis-server.
type Portcullis struct {
	URL        string // https://127.0.0.1:<port>
	Port       int
	CertDir    string // --cert-dir; the self-signed serving cert is portcullis.crt/.key
	ConfigPath string
	Process    *Process

	t testing.TB
}

// StartPortcullis builds (once per test process) and runs
//
//	portcullis-server --config <file> --bind-address=127.0.0.1 --secure-port=<port> --cert-dir=<dir> <ExtraArgs...>
//
// and waits until https://127.0.0.1:<port>/readyz answers 200.
func StartPortcullis(t testing.TB, opts PortcullisOptions) *Portcullis {
	t.Helper()
	bin := PortcullisServerBinary(t)
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	sub, name := "portcullis", "portcullis-server"
	if opts.Name != "" {
		sub, name = opts.Name, opts.Name
	}
	dir := filepath.Join(WorkDir(t), sub)
	p := &Portcullis{
		URL:        "https://" + hostPort(opts.Port),
		Port:       opts.Port,
		CertDir:    filepath.Join(dir, "certs"),
		ConfigPath: writeFile(t, sub+"/config.yaml", []byte(opts.ConfigYAML), 0o600),
		t:          t,
	}
	if err := os.MkdirAll(p.CertDir, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--config=" + p.ConfigPath,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", opts.Port),
		"--cert-dir=" + p.CertDir,
	}
	args = append(args, opts.ExtraArgs...)
	p.Process = StartProcess(t, ProcessSpec{
		Name:        name,
		Path:        bin,
		Args:        args,
		Env:         opts.Env,
		Dir:         dir,
		StopTimeout: 15 * time.Second,
	})
	if err := p.waitReady(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *Portcullis) waitReady() error {
	// TEST-ONLY: the readiness poll does not verify the server's certificate,
	// because the server may write its self-signed certificate only while
	// starting. Tests check the certificate with CACertPEM/HTTPClient.
	hc := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test-only readiness poll, see above
		},
	}
	defer hc.CloseIdleConnections()
	return p.Process.WaitUntil(context.Background(), 60*time.Second, "ready", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("GET /readyz: %s: %s", resp.Status, snippet(body))
		}
		return nil
	})
}

// CACertFile is the serving certificate the server wrote into CertDir.
func (p *Portcullis) CACertFile() string { return filepath.Join(p.CertDir, "portcullis.crt") }

// CACertPEM returns the server's self-signed serving certificate (to be used
// as the trust anchor of clients). It fails the test if the file is missing.
func (p *Portcullis) CACertPEM() []byte {
	b, err := os.ReadFile(p.CACertFile())
	if err != nil {
		p.t.Fatalf("reading portcullis-server's serving certificate: %v", err)
	}
	return b
}

// HTTPClient returns an HTTP client that trusts only CACertPEM.
func (p *Portcullis) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.CACertPEM()) {
		p.t.Fatalf("%s holds no PEM certificate", p.CACertFile())
	}
	return HTTPClientFor(pool)
}

// Stop terminates the server (SIGTERM, then SIGKILL after 15s). The error
// reports an unclean exit; the test decides whether that matters.
func (p *Portcullis) Stop() error { return p.Process.Stop() }

// Restart stops the server if it runs, starts it again with the same flags,
// configuration and port, and waits until it is ready. It fails the test if
// the server does not become ready.
func (p *Portcullis) Restart() {
	p.t.Helper()
	if err := p.Process.Restart(); err != nil {
		p.t.Fatalf("restarting portcullis-server: %v", err)
	}
	if err := p.waitReady(); err != nil {
		p.t.Fatal(err)
	}
}
