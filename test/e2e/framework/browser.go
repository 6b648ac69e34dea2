package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Browser is an HTTP client that behaves like a browser without a screen:
// a cookie jar, redirects followed (https and plain http on loopback), and
// the ability to fill in Dex's login form. Tests use it to play the person
// in a login that starts at another server (e.g. Portcullis's portal) and
// goes through Dex.
type Browser struct {
	Client *http.Client
}

// NewBrowser returns a Browser trusting the PEM CA files given (and nothing
// else).
func NewBrowser(caFiles ...string) (*Browser, error) {
	pool := x509.NewCertPool()
	for _, f := range caFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f)
		}
	}
	jar, err := newCookieJar()
	if err != nil {
		return nil, err
	}
	return &Browser{Client: &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		Jar:       jar,
		Timeout:   60 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 20 {
				return errors.New("more than 20 redirects")
			}
			return nil
		},
	}}, nil
}

// Page is a page the Browser ended on.
type Page struct {
	URL    *url.URL
	Status int
	Body   []byte
}

// Get loads u, following redirects.
func (b *Browser) Get(ctx context.Context, u string) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

// PostForm submits a form to u, following redirects.
func (b *Browser) PostForm(ctx context.Context, u string, values url.Values) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(values.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *Browser) do(req *http.Request) (*Page, error) {
	resp, err := b.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Page{URL: resp.Request.URL, Status: resp.StatusCode, Body: body}, nil
}

// DexLogin continues from page p (or loads startURL when p is nil) until
// it has filled in Dex's login form with email and password (choosing the
// "local" connector if Dex shows a chooser), and returns the page the
// browser ends on after Dex (whatever the relying party showed).
func (b *Browser) DexLogin(ctx context.Context, p *Page, startURL, email, password string) (*Page, error) {
	var err error
	if p == nil {
		if p, err = b.Get(ctx, startURL); err != nil {
			return nil, err
		}
	}
	for range 3 {
		if _, ok := findLoginForm(p.Body); ok {
			break
		}
		link, ok := findLink(p.Body, "/auth/local")
		if !ok {
			return nil, fmt.Errorf("page %s (%d) has neither Dex's login form nor a link to its local connector: %s", p.URL, p.Status, snippet(p.Body))
		}
		next, err := p.URL.Parse(link)
		if err != nil {
			return nil, err
		}
		if p, err = b.Get(ctx, next.String()); err != nil {
			return nil, err
		}
	}
	form, ok := findLoginForm(p.Body)
	if !ok {
		return nil, fmt.Errorf("no login form at %s: %s", p.URL, snippet(p.Body))
	}
	action, err := p.URL.Parse(form.action)
	if err != nil {
		return nil, err
	}
	values := url.Values{}
	for k, v := range form.hidden {
		values.Set(k, v)
	}
	values.Set(form.loginField, email)
	values.Set(form.passwordField, password)
	after, err := b.PostForm(ctx, action.String(), values)
	if err != nil {
		return nil, err
	}
	if _, again := findLoginForm(after.Body); again {
		return nil, fmt.Errorf("Dex refused the login of %s (it showed the form again)", email)
	}
	return after, nil
}

// FormValue returns the value attribute of the first input named name.
func FormValue(page []byte, name string) (string, bool) {
	marker := `name="` + name + `"`
	i := strings.Index(string(page), marker)
	if i < 0 {
		return "", false
	}
	// The value may come before or after the name within the tag.
	start := strings.LastIndex(string(page[:i]), "<")
	end := strings.Index(string(page[i:]), ">")
	if start < 0 || end < 0 {
		return "", false
	}
	tag := string(page[start : i+end])
	_, v, ok := strings.Cut(tag, `value="`)
	if !ok {
		return "", false
	}
	v, _, _ = strings.Cut(v, `"`)
	return v, true
}
