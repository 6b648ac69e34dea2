package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"portcullis.dev/portcullis/pkg/portalapi"
)

// apiError is an OAuth error the portal answered, with its HTTP status.
type apiError struct {
	Status int
	portalapi.OAuthError
}

func (e *apiError) Error() string {
	if e.Description != "" {
		return e.Description
	}
	if e.Code != "" {
		return e.Code
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

// sessionEnded reports whether the error means the session is gone and a new
// login is needed.
func sessionEnded(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == "invalid_grant"
}

func isDenied(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == "access_denied"
}

// target is a Portcullis server and how to trust it.
type target struct {
	server  string // normalised: no trailing slash
	cluster string
	caFile  string
	caData  []byte
	idp     string
	device  bool
	// name is how the person runs portcullis (for the commands suggested).
	name string
	// cacheDir is --cache-dir (absolute), if given.
	cacheDir string
}

// portalClient talks to a Portcullis server.
type portalClient struct {
	t    *target
	http *http.Client
}

func (d *Deps) newPortalClient(t *target) (*portalClient, error) {
	hc, err := d.httpClient(t.caFile, t.caData)
	if err != nil {
		return nil, err
	}
	return &portalClient{t: t, http: hc}, nil
}

// httpClient trusts caFile / caData, or the system's roots.
func (d *Deps) httpClient(caFile string, caData []byte) (*http.Client, error) {
	if d.Transport != nil {
		return &http.Client{Transport: d.debugTransport(d.Transport), Timeout: 60 * time.Second}, nil
	}
	var pool *x509.CertPool
	if caFile != "" || len(caData) > 0 {
		pem := caData
		if caFile != "" {
			b, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("reading --certificate-authority: %w", err)
			}
			pem = b
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the certificate authority given holds no PEM certificate")
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: d.debugTransport(tr), Timeout: 60 * time.Second}, nil
}

// debugTransport logs each request's method, address without its query,
// answer and duration at -v=2. Bodies, queries and headers (where tokens
// and codes travel) are never logged.
func (d *Deps) debugTransport(rt http.RoundTripper) http.RoundTripper {
	if d.verbosity < 2 {
		return rt
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		start := time.Now()
		u := *req.URL
		u.RawQuery, u.Fragment, u.User = "", "", nil
		resp, err := rt.RoundTrip(req)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			d.debugf(2, "%s %s: %v (%v)", req.Method, u.String(), err, took)
		} else {
			d.debugf(2, "%s %s: %s (%v)", req.Method, u.String(), resp.Status, took)
		}
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func decodeCAData(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("--certificate-authority-data must be base64 of PEM certificates: %w", err)
	}
	return b, nil
}

// send sends req to the server and returns its answer, the body read (at
// most 1 MiB) and closed.
func (c *portalClient) send(req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, describeConnError(c.t.server, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer of %s: %w", c.t.server, err)
	}
	return resp, raw, nil
}

// decodeAnswer decodes the successful answer raw to path into out.
func (c *portalClient) decodeAnswer(raw []byte, path string, out any) error {
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s answered %s with something that is not a Portcullis answer: is it a Portcullis server?", c.t.server, path)
	}
	return nil
}

func (c *portalClient) do(ctx context.Context, method, path string, form url.Values, out any) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.t.server+path, body)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	resp, raw, err := c.send(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(raw, ae) != nil || ae.Code == "" {
			return fmt.Errorf("%s answered %s to %s: is it a Portcullis server (check --server)?", c.t.server, resp.Status, path)
		}
		return ae
	}
	return c.decodeAnswer(raw, path, out)
}

func (c *portalClient) exchange(ctx context.Context, code, verifier, redirect, cluster string) (*portalapi.TokenResponse, error) {
	var out portalapi.TokenResponse
	err := c.do(ctx, http.MethodPost, portalapi.PathToken, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirect}, "cluster": {cluster},
	}, &out)
	return &out, err
}

func (c *portalClient) refresh(ctx context.Context, refreshToken, cluster string) (*portalapi.TokenResponse, error) {
	var out portalapi.TokenResponse
	err := c.do(ctx, http.MethodPost, portalapi.PathRefresh, url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}, "cluster": {cluster},
	}, &out)
	return &out, err
}

func (c *portalClient) session(ctx context.Context, refreshToken string) (*portalapi.SessionInfo, error) {
	var out portalapi.SessionInfo
	err := c.do(ctx, http.MethodPost, portalapi.PathSession, url.Values{"refresh_token": {refreshToken}}, &out)
	return &out, err
}

func (c *portalClient) logout(ctx context.Context, refreshToken string) (bool, error) {
	var out portalapi.LogoutResponse
	err := c.do(ctx, http.MethodPost, portalapi.PathLogout, url.Values{"refresh_token": {refreshToken}}, &out)
	return out.Revoked, err
}

func (c *portalClient) clusters(ctx context.Context) (*portalapi.ClustersResponse, error) {
	var out portalapi.ClustersResponse
	err := c.do(ctx, http.MethodGet, portalapi.PathClusters, nil, &out)
	return &out, err
}

func (c *portalClient) deviceCode(ctx context.Context, cluster string) (*portalapi.DeviceCodeResponse, error) {
	var out portalapi.DeviceCodeResponse
	err := c.do(ctx, http.MethodPost, portalapi.PathDeviceCode, url.Values{"cluster": {cluster}}, &out)
	return &out, err
}

func (c *portalClient) deviceToken(ctx context.Context, deviceCode, cluster string) (*portalapi.TokenResponse, error) {
	var out portalapi.TokenResponse
	err := c.do(ctx, http.MethodPost, portalapi.PathDeviceToken, url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}, "cluster": {cluster},
	}, &out)
	return &out, err
}

// describeConnError turns a failed request into a message that says what
// went wrong and what to do.
func describeConnError(server string, err error) error {
	var (
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		dnsErr     *net.DNSError
		opErr      *net.OpError
		urlErr     *url.Error
		timeoutErr interface{ Timeout() bool }
	)
	switch {
	case errors.As(err, &hostname):
		return fmt.Errorf("the certificate of %s does not match its name (%v): check the server URL (--server); certificate mismatch", server, hostname.Error())
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the certificate of %s is not signed by an authority this computer trusts: give the CA that signed it with --certificate-authority (ask your administrator which one); certificate mismatch", server)
	case errors.As(err, &invalid):
		return fmt.Errorf("the certificate of %s is not valid (%v): certificate mismatch; tell your administrator", server, invalid.Error())
	case errors.As(err, &verifyErr):
		return fmt.Errorf("the certificate of %s could not be verified (%v): give the right CA with --certificate-authority; certificate mismatch", server, verifyErr.Err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("%s does not speak HTTPS: check the server URL (--server)", server)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot reach Portcullis at %s: the name %s is unknown (check --server and your network)", server, dnsErr.Name)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("cannot reach Portcullis at %s: %v (is the URL right, is the server up, is your network connected?)", server, opErr.Err)
	case errors.As(err, &timeoutErr) && timeoutErr.Timeout():
		return fmt.Errorf("cannot reach Portcullis at %s: the request timed out (is your network connected?)", server)
	case errors.As(err, &urlErr):
		return fmt.Errorf("cannot reach Portcullis at %s: %v", server, urlErr.Err)
	}
	return fmt.Errorf("cannot reach Portcullis at %s: %w", server, err)
}
