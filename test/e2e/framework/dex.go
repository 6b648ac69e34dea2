package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

// DexUser is a static password user of Dex's local connector (connector id
// "local"). Users log in with their email.
type DexUser struct {
	Email    string
	Username string
	Password string
	UserID   string
}

// DexClient is a static OAuth2 client of Dex.
type DexClient struct {
	ID           string
	Secret       string // empty for public clients
	Name         string
	RedirectURIs []string
	Public       bool
}

// DefaultDexUsers are the users StartDex configures when DexOptions.Users is
// empty.
var DefaultDexUsers = []DexUser{
	{Email: "alice@example.com", Username: "alice", Password: "alice-password", UserID: "alice-id"},
	{Email: "bob@example.com", Username: "bob", Password: "bob-password", UserID: "bob-id"},
}

// DefaultDexRedirectURI is registered for the confidential client when
// DexOptions.RedirectURIs is empty. Nothing listens there: PasswordLogin stops
// at the redirect and hands back the URL.
const DefaultDexRedirectURI = "http://127.0.0.1:1/e2e/callback"

// DexOptions configures StartDex.
type DexOptions struct {
	// PKI signs Dex's serving certificate; a new one when nil.
	PKI *PKI

	// ClientID and ClientSecret of the confidential client; defaults
	// "portcullis" and a random secret.
	ClientID     string
	ClientSecret string
	// RedirectURIs of the confidential client; DefaultDexRedirectURI when
	// empty.
	RedirectURIs []string
	// PublicClientID, when set, adds a public client (no secret) with
	// PublicClientRedirectURIs (Dex also accepts loopback redirects for
	// public clients).
	PublicClientID           string
	PublicClientRedirectURIs []string
	// ExtraClients are added as they are.
	ExtraClients []DexClient

	// Users of the password database; DefaultDexUsers when empty.
	Users []DexUser

	// PasswordGrant enables the resource-owner password grant with the local
	// connector (oauth2.passwordConnector: local).
	PasswordGrant bool
	// MockCallbackConnector adds the connector "mock" (type mockCallback): a
	// fixed user (kilgore@kilgore.trout, groups [authors]) without a form.
	MockCallbackConnector bool
	// AuthProxyConnector adds the connector "authproxy": the user and groups
	// come from the X-Remote-User / X-Remote-Group headers of the request to
	// <issuer>/callback/authproxy.
	AuthProxyConnector bool
	// AlwaysShowLoginScreen shows the connector chooser even with one
	// connector.
	AlwaysShowLoginScreen bool

	// BcryptCost hashes the static passwords; bcrypt.DefaultCost (10) when
	// zero. Dex refuses, at login, a hash cheaper than 10 or dearer than 16.
	BcryptCost int
	// LogLevel is Dex's logger.level; "debug" when empty.
	LogLevel string

	// IDTokenTTL is expiry.idTokens (Dex's default 24h when zero).
	IDTokenTTL time.Duration

	// PersistentStorage keeps Dex's state (its signing keys among it) in a
	// SQLite file instead of memory, so that Process.Restart brings back
	// the same keys: tokens issued before an outage verify after it.
	PersistentStorage bool

	// Etcd, when set, is where Dex keeps its state (storage type etcd)
	// instead of memory, so that Dex can be stopped and started again
	// (Dex.Process.Stop, Dex.Restart) keeping its signing keys and the
	// refresh tokens it issued: an outage of the IdP, not a new IdP.
	// It takes precedence over PersistentStorage.
	Etcd *Etcd
}

// Dex is a running Dex over HTTPS with in-memory storage.
type Dex struct {
	IssuerURL    string // https://127.0.0.1:<port>/dex
	CAFile       string // CA of Dex's serving certificate
	ClientID     string // the confidential client
	ClientSecret string
	// PublicClientID is the public client's id, if one was configured.
	PublicClientID string
	Users          []DexUser
	Clients        []DexClient
	PasswordGrant  bool
	Process        *Process

	pki *PKI
	t   testing.TB
}

var (
	bcryptMu    sync.Mutex
	bcryptCache = map[string]string{}
)

// bcryptHash hashes with cost (bcrypt.DefaultCost when zero): Dex refuses
// static passwords hashed with a lower cost ("does not meet minimum cost
// requirement").
func bcryptHash(t testing.TB, password string, cost int) string {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	bcryptMu.Lock()
	defer bcryptMu.Unlock()
	key := fmt.Sprintf("%d/%s", cost, password)
	if h, ok := bcryptCache[key]; ok {
		return h
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	bcryptCache[key] = string(h)
	return string(h)
}

// StartDex starts Dex and waits until it serves its discovery document.
func StartDex(t testing.TB, opts DexOptions) *Dex {
	t.Helper()
	bin := ToolBinary(t, "dex")
	if opts.PKI == nil {
		opts.PKI = NewPKI(t)
	}
	if opts.ClientID == "" {
		opts.ClientID = "portcullis"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = randomHex(t, 16)
	}
	if len(opts.RedirectURIs) == 0 {
		opts.RedirectURIs = []string{DefaultDexRedirectURI}
	}
	if len(opts.Users) == 0 {
		opts.Users = DefaultDexUsers
	}
	port := FreePort(t)
	serving := opts.PKI.IssueServing("127.0.0.1", "localhost")
	d := &Dex{
		IssuerURL:      fmt.Sprintf("https://%s/dex", hostPort(port)),
		CAFile:         opts.PKI.CA.CertFile,
		ClientID:       opts.ClientID,
		ClientSecret:   opts.ClientSecret,
		PublicClientID: opts.PublicClientID,
		Users:          opts.Users,
		PasswordGrant:  opts.PasswordGrant,
		pki:            opts.PKI,
		t:              t,
	}
	d.Clients = append(d.Clients, DexClient{ID: opts.ClientID, Secret: opts.ClientSecret, Name: "Portcullis", RedirectURIs: opts.RedirectURIs})
	if opts.PublicClientID != "" {
		d.Clients = append(d.Clients, DexClient{ID: opts.PublicClientID, Name: "Portcullis CLI", RedirectURIs: opts.PublicClientRedirectURIs, Public: true})
	}
	d.Clients = append(d.Clients, opts.ExtraClients...)

	// Dex reads YAML; JSON is YAML.
	type obj = map[string]any
	var clients, users, connectors []obj
	for _, c := range d.Clients {
		co := obj{"id": c.ID, "name": c.Name, "redirectURIs": c.RedirectURIs}
		if c.Name == "" {
			co["name"] = c.ID
		}
		if c.Public {
			co["public"] = true
		} else {
			co["secret"] = c.Secret
		}
		clients = append(clients, co)
	}
	for _, u := range d.Users {
		users = append(users, obj{"email": u.Email, "username": u.Username, "userID": u.UserID, "hash": bcryptHash(t, u.Password, opts.BcryptCost)})
	}
	if opts.MockCallbackConnector {
		connectors = append(connectors, obj{"type": "mockCallback", "id": "mock", "name": "Mock"})
	}
	if opts.AuthProxyConnector {
		connectors = append(connectors, obj{"type": "authproxy", "id": "authproxy", "name": "AuthProxy",
			"config": obj{"userHeader": "X-Remote-User", "groupHeader": "X-Remote-Group"}})
	}
	oauth2Cfg := obj{"skipApprovalScreen": true, "alwaysShowLoginScreen": opts.AlwaysShowLoginScreen}
	if opts.PasswordGrant {
		oauth2Cfg["passwordConnector"] = "local"
	}
	storage := obj{"type": "memory"}
	switch {
	case opts.Etcd != nil:
		storage = obj{"type": "etcd", "config": obj{"endpoints": []string{opts.Etcd.URL}, "namespace": "dex-" + randomHex(t, 4) + "/"}}
	case opts.PersistentStorage:
		storage = obj{"type": "sqlite3", "config": obj{"file": filepath.Join(WorkDir(t), "dex", "dex.db")}}
	}
	logLevel := opts.LogLevel
	if logLevel == "" {
		logLevel = "debug"
	}
	cfg := obj{
		"issuer":  d.IssuerURL,
		"storage": storage,
		"web": obj{
			"https":   hostPort(port),
			"tlsCert": serving.CertFile,
			"tlsKey":  serving.KeyFile,
		},
		"logger":           obj{"level": logLevel},
		"oauth2":           oauth2Cfg,
		"enablePasswordDB": true,
		"staticPasswords":  users,
		"staticClients":    clients,
	}
	if len(connectors) > 0 {
		cfg["connectors"] = connectors
	}
	if opts.IDTokenTTL > 0 {
		cfg["expiry"] = obj{"idTokens": opts.IDTokenTTL.String()}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := writeFile(t, "dex/config.yaml", b, 0o600)

	d.Process = StartProcess(t, ProcessSpec{
		Name:        "dex",
		Path:        bin,
		Args:        []string{"serve", cfgFile},
		StopTimeout: 5 * time.Second,
	})
	if err := d.waitServing(); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *Dex) waitServing() error {
	hc := d.HTTPClient()
	defer hc.CloseIdleConnections()
	return d.Process.WaitUntil(context.Background(), 30*time.Second, "serving discovery", func(ctx context.Context) error {
		_, err := d.Discovery(ctx, hc)
		return err
	})
}

// Restart stops Dex if it runs, starts it again with the same
// configuration and port, and waits until it serves its discovery
// document. Without DexOptions.Etcd the new Dex has forgotten every token
// and key of the old one.
func (d *Dex) Restart() {
	d.t.Helper()
	if err := d.Process.Restart(); err != nil {
		d.t.Fatalf("restarting dex: %v", err)
	}
	if err := d.waitServing(); err != nil {
		d.t.Fatal(err)
	}
}

// DexDiscovery is the part of Dex's discovery document the tests use.
type DexDiscovery struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	DeviceEndpoint        string   `json:"device_authorization_endpoint"`
	GrantTypesSupported   []string `json:"grant_types_supported"`
	ScopesSupported       []string `json:"scopes_supported"`
	ClaimsSupported       []string `json:"claims_supported"`
}

// Discovery fetches <issuer>/.well-known/openid-configuration with hc (Dex's
// own HTTPClient when nil).
func (d *Dex) Discovery(ctx context.Context, hc *http.Client) (*DexDiscovery, error) {
	if hc == nil {
		hc = d.HTTPClient()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.IssuerURL+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET discovery: %s: %s", resp.Status, body)
	}
	var disc DexDiscovery
	if err := json.Unmarshal(body, &disc); err != nil {
		return nil, fmt.Errorf("decoding discovery: %w", err)
	}
	return &disc, nil
}

// HTTPClient returns an HTTP client that trusts Dex's CA.
func (d *Dex) HTTPClient() *http.Client { return d.pki.HTTPClient() }

// OAuth2Config returns an oauth2 configuration for one of Dex's clients.
func (d *Dex) OAuth2Config(clientID, secret, redirectURI string, scopes []string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: secret,
		RedirectURL:  redirectURI,
		Scopes:       scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   d.IssuerURL + "/auth",
			TokenURL:  d.IssuerURL + "/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
}

// Context returns ctx carrying Dex's HTTP client for golang.org/x/oauth2 (and
// go-oidc, which reads the same key).
func (d *Dex) Context(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, d.HTTPClient())
}

// Tokens logs in a static-password user for a client: with the password
// grant when Dex enables it (DexOptions.PasswordGrant), otherwise with the
// authorization-code flow through Dex's login form (PasswordLogin), using the
// client's first redirect URI. Scopes default to openid, email, profile,
// groups, offline_access.
func (d *Dex) Tokens(ctx context.Context, email, password, clientID, secret string, scopes []string) (*oauth2.Token, error) {
	if len(scopes) == 0 {
		scopes = []string{"openid", "email", "profile", "groups", "offline_access"}
	}
	octx := d.Context(ctx)
	if d.PasswordGrant {
		tok, err := d.OAuth2Config(clientID, secret, "", scopes).PasswordCredentialsToken(octx, email, password)
		if err != nil {
			return nil, fmt.Errorf("password grant: %w", err)
		}
		return tok, nil
	}
	var redirect string
	for _, c := range d.Clients {
		if c.ID == clientID && len(c.RedirectURIs) > 0 {
			redirect = c.RedirectURIs[0]
		}
	}
	if redirect == "" {
		return nil, fmt.Errorf("client %q has no redirect URI for the code flow (and the password grant is off)", clientID)
	}
	cfg := d.OAuth2Config(clientID, secret, redirect, scopes)
	state := randomHex(d.t, 12)
	verifier := oauth2.GenerateVerifier()
	back, err := d.PasswordLogin(ctx, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), email, password)
	if err != nil {
		return nil, err
	}
	q := back.Query()
	if e := q.Get("error"); e != "" {
		return nil, fmt.Errorf("dex redirected with error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		return nil, fmt.Errorf("state mismatch in redirect %s", back)
	}
	tok, err := cfg.Exchange(octx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchanging the code: %w", err)
	}
	return tok, nil
}

// IDToken returns a raw ID token for a static-password user (see Tokens).
func (d *Dex) IDToken(ctx context.Context, email, password, clientID, secret string, scopes []string) (string, error) {
	tok, err := d.Tokens(ctx, email, password, clientID, secret, scopes)
	if err != nil {
		return "", err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", errors.New("token response has no id_token")
	}
	return raw, nil
}

// PasswordLogin plays a browser on Dex's login pages: it GETs authURL (an
// authorization request to Dex, or a page of another server that redirects
// there), chooses the "local" connector if Dex shows a chooser, fills in the
// login form with email and password and follows redirects until the first
// one that leaves Dex's host. That URL (the client's redirect URI with code
// and state, or error) is returned without being requested.
//
// Redirects before Dex (e.g. from a server under test to Dex) are followed;
// it stops only at a redirect away from Dex once Dex has been reached.
func (d *Dex) PasswordLogin(ctx context.Context, authURL, email, password string) (*url.URL, error) {
	dexURL, err := url.Parse(d.IssuerURL)
	if err != nil {
		return nil, err
	}
	return PasswordLogin(ctx, d.HTTPClient(), dexURL.Host, authURL, email, password)
}

type stopAtRedirect struct{ to *url.URL }

func (s *stopAtRedirect) Error() string { return "stopped at redirect to " + s.to.String() }

// PasswordLogin is Dex.PasswordLogin with an explicit HTTP client (its
// transport is reused; a cookie jar is added) and the host:port of Dex.
func PasswordLogin(ctx context.Context, base *http.Client, dexHost, authURL, email, password string) (*url.URL, error) {
	jar, err := newCookieJar()
	if err != nil {
		return nil, err
	}
	reachedDex := false
	hc := &http.Client{
		Transport: base.Transport,
		Jar:       jar,
		Timeout:   base.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 20 {
				return errors.New("more than 20 redirects")
			}
			for _, v := range via {
				if v.URL.Host == dexHost {
					reachedDex = true
				}
			}
			if reachedDex && req.URL.Host != dexHost {
				return &stopAtRedirect{to: req.URL}
			}
			return nil
		},
	}
	do := func(req *http.Request) (*http.Response, []byte, error) {
		resp, err := hc.Do(req)
		var stop *stopAtRedirect
		if errors.As(err, &stop) {
			return nil, nil, stop
		}
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, err
	}
	resp, body, err := do(req)
	for range 3 { // connector chooser → login page
		var stop *stopAtRedirect
		if errors.As(err, &stop) {
			return stop.to, nil
		}
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %s", resp.Request.URL, resp.Status, snippet(body))
		}
		if _, ok := findLoginForm(body); ok {
			break
		}
		link, ok := findLink(body, "/auth/local")
		if !ok {
			return nil, fmt.Errorf("page %s has neither a login form nor a link to the local connector: %s", resp.Request.URL, snippet(body))
		}
		next, err := resp.Request.URL.Parse(link)
		if err != nil {
			return nil, err
		}
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, next.String(), nil)
		if resp, body, err = do(req); err != nil {
			return nil, err
		}
	}
	form, ok := findLoginForm(body)
	if !ok {
		return nil, fmt.Errorf("no login form at %s: %s", resp.Request.URL, snippet(body))
	}
	action, err := resp.Request.URL.Parse(form.action)
	if err != nil {
		return nil, fmt.Errorf("form action %q: %w", form.action, err)
	}
	values := url.Values{}
	for name, v := range form.hidden {
		values.Set(name, v)
	}
	values.Set(form.loginField, email)
	values.Set(form.passwordField, password)
	method := form.method
	if method == "" {
		method = http.MethodPost
	}
	req, err = http.NewRequestWithContext(ctx, method, action.String(), strings.NewReader(values.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err = do(req)
	var stop *stopAtRedirect
	if errors.As(err, &stop) {
		return stop.to, nil
	}
	if err != nil {
		return nil, err
	}
	if _, again := findLoginForm(body); again {
		return nil, fmt.Errorf("login as %q rejected (Dex showed the form again): %s", email, snippet(body))
	}
	return nil, fmt.Errorf("after login, %s answered %s without redirecting away from Dex: %s", resp.Request.URL, resp.Status, snippet(body))
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}

// AuthProxyIDToken logs user in through the "authproxy" connector
// (DexOptions.AuthProxyConnector), asserting groups as the front proxy's
// X-Remote-Group header would, with the authorization-code flow of a
// client (its first redirect URI), and returns the ID token. Scopes are
// openid, email, profile and groups. Dex puts the groups in the token as
// they are: this is how a test gets an IdP to assert any group name.
func (d *Dex) AuthProxyIDToken(ctx context.Context, user string, groups []string, clientID, secret string) (string, error) {
	var redirect string
	for _, c := range d.Clients {
		if c.ID == clientID && len(c.RedirectURIs) > 0 {
			redirect = c.RedirectURIs[0]
		}
	}
	if redirect == "" {
		return "", fmt.Errorf("client %q has no redirect URI", clientID)
	}
	cfg := d.OAuth2Config(clientID, secret, redirect, []string{"openid", "email", "profile", "groups"})
	state := randomHex(d.t, 12)
	verifier := oauth2.GenerateVerifier()
	next := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("connector_id", "authproxy"))
	hc := &http.Client{
		Transport:     d.HTTPClient().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for range 10 {
		if strings.HasPrefix(next, redirect) {
			back, err := url.Parse(next)
			if err != nil {
				return "", err
			}
			q := back.Query()
			if e := q.Get("error"); e != "" {
				return "", fmt.Errorf("dex redirected with error %s: %s", e, q.Get("error_description"))
			}
			if q.Get("state") != state {
				return "", fmt.Errorf("state mismatch in redirect %s", back)
			}
			tok, err := cfg.Exchange(d.Context(ctx), q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				return "", fmt.Errorf("exchanging the code: %w", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			if raw == "" {
				return "", errors.New("token response has no id_token")
			}
			return raw, nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("X-Remote-User", user)
		if len(groups) > 0 {
			req.Header.Set("X-Remote-Group", strings.Join(groups, ","))
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			return "", fmt.Errorf("GET %s: %s without a redirect: %s", req.URL, resp.Status, snippet(body))
		}
		next = loc.String()
	}
	return "", errors.New("more than 10 redirects")
}
