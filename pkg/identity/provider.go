package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	kubeoidc "k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/jwtpeek"
)

var (
	// ErrNotReady is wrapped by errors that a retry may cure: the provider
	// has not loaded its discovery document or signing keys yet, or cannot
	// reach its IdP right now.
	ErrNotReady = errors.New("identity provider not ready")
	// ErrRejected is wrapped by errors about a token the provider refuses.
	ErrRejected = errors.New("token rejected")
)

// VerifyError is the error of VerifyIDToken. Its text is short, safe to show
// to the caller and to log: it never contains the token.
type VerifyError struct {
	// Provider is the name of the identity provider.
	Provider string
	// Reason says why, in a few words.
	Reason string
	// NotReady is true when the provider could not verify yet (see
	// ErrNotReady): the caller may retry later.
	NotReady bool
}

func (e *VerifyError) Error() string {
	if e.NotReady {
		return fmt.Sprintf("identity provider %q is not ready (%s); retry shortly", e.Provider, e.Reason)
	}
	return fmt.Sprintf("identity provider %q rejected the token: %s", e.Provider, e.Reason)
}

// Unwrap makes errors.Is(err, ErrNotReady) and errors.Is(err, ErrRejected) work.
func (e *VerifyError) Unwrap() error {
	if e.NotReady {
		return ErrNotReady
	}
	return ErrRejected
}

// discoveryTimeout bounds one OpenID discovery request of the login portal.
const discoveryTimeout = 15 * time.Second

// Provider is one configured upstream identity provider.
//
// Its ID-token verifier starts fetching the IdP's discovery document and keys
// in the background when it is made, and retries every 10 seconds until it
// succeeds (kube-apiserver's behaviour, so an IdP running on the cluster it
// authenticates for can come up later). Until then HealthCheck returns an
// error and VerifyIDToken returns an error wrapping ErrNotReady.
type Provider struct {
	cfg     v1alpha1.IdentityProvider
	issuer  string
	authn   kubeoidc.AuthenticatorTokenWithHealthCheck
	client  *http.Client
	dclient *http.Client // client for discovery (honours issuer.discoveryURL)

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	upstream *oidc.Provider // go-oidc v3 provider, after a successful discovery
}

// NewProvider makes the provider of one configured IdP. ctx bounds the
// provider's life: its background discovery and key fetching stop when ctx
// is done (or Close is called), after which the provider must not be used.
func NewProvider(ctx context.Context, cfg v1alpha1.IdentityProvider) (*Provider, error) {
	return newProvider(ctx, cfg, providerOptions{})
}

type providerOptions struct {
	// compiler is shared between providers: a CEL environment is costly.
	compiler authenticationcel.Compiler
	// disallowedIssuers are issuers no IdP may have (Portcullis's own).
	disallowedIssuers []string
}

func newProvider(ctx context.Context, cfg v1alpha1.IdentityProvider, opts providerOptions) (*Provider, error) {
	if cfg.Name == "" {
		return nil, errors.New("identity provider: name is required")
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	if cfg.UserInfo != nil {
		ui := *cfg.UserInfo
		if ui.GroupsClaim == "" {
			ui.GroupsClaim = v1alpha1.DefaultUserInfoGroups
		}
		cfg.UserInfo = &ui
	}
	if cfg.DisplayName == "" {
		cfg.DisplayName = cfg.Name
	}
	fail := func(format string, args ...any) (*Provider, error) {
		return nil, fmt.Errorf("identity provider %q: "+format, append([]any{cfg.Name}, args...)...)
	}

	jwt, err := cfg.JWTAuthenticator()
	if err != nil {
		return fail("converting to a kube-apiserver JWT authenticator: %w", err)
	}
	if len(jwt.Issuer.Audiences) == 0 && cfg.ClientID != "" {
		// The config's defaulting does this; NewProvider may be given an
		// undefaulted IdP.
		jwt.Issuer.Audiences = []string{cfg.ClientID}
	}

	var caPEM []byte
	switch {
	case cfg.Issuer.CertificateAuthority != "" && cfg.CertificateAuthorityFile != "":
		return fail("set either issuer.certificateAuthority or certificateAuthorityFile, not both")
	case cfg.Issuer.CertificateAuthority != "":
		caPEM = []byte(cfg.Issuer.CertificateAuthority)
	case cfg.CertificateAuthorityFile != "":
		if caPEM, err = os.ReadFile(cfg.CertificateAuthorityFile); err != nil {
			return fail("reading certificateAuthorityFile: %w", err)
		}
	}

	var roots *x509.CertPool // nil: the system roots
	var caContent kubeoidc.CAContentProvider
	if len(caPEM) > 0 {
		if roots, err = certutil.NewPoolFromBytes(caPEM); err != nil {
			return fail("reading the issuer's CA certificates: %w", err)
		}
		content, err := dynamiccertificates.NewStaticCAContent("identity-provider-"+cfg.Name, caPEM)
		if err != nil {
			return fail("reading the issuer's CA certificates: %w", err)
		}
		caContent = content
	}

	compiler := opts.compiler
	if compiler == nil {
		compiler = authenticationcel.NewDefaultCompiler()
	}
	ctx, cancel := context.WithCancel(ctx)
	authn, err := kubeoidc.New(ctx, kubeoidc.Options{
		JWTAuthenticator:  jwt,
		CAContentProvider: caContent,
		Compiler:          compiler,
		// As kube-apiserver does for its structured authentication
		// configuration. "none" and HMAC algorithms are never accepted.
		SupportedSigningAlgs: kubeoidc.AllValidSigningAlgorithms(),
		DisallowedIssuers:    opts.disallowedIssuers,
	})
	if err != nil {
		cancel()
		return fail("%w", err)
	}

	client := &http.Client{
		Transport: utilnet.SetTransportDefaults(&http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		}),
		Timeout: 30 * time.Second,
	}
	dclient := client
	if d := cfg.Issuer.DiscoveryURL; d != nil && *d != "" {
		target, err := url.Parse(*d)
		if err != nil {
			cancel()
			return fail("parsing issuer.discoveryURL: %w", err)
		}
		c := *client
		c.Transport = &discoveryRewriter{
			base:   client.Transport,
			from:   strings.TrimSuffix(cfg.Issuer.URL, "/") + "/.well-known/openid-configuration",
			target: target,
		}
		dclient = &c
	}

	return &Provider{
		cfg:     cfg,
		issuer:  cfg.Issuer.URL,
		authn:   authn,
		client:  client,
		dclient: dclient,
		ctx:     ctx,
		cancel:  cancel,
	}, nil
}

// Name is the IdP's name in URLs, sessions, tokens and logs.
func (p *Provider) Name() string { return p.cfg.Name }

// DisplayName is the IdP's name on the login page.
func (p *Provider) DisplayName() string { return p.cfg.DisplayName }

// Issuer is the IdP's issuer URL (the "iss" of its ID tokens).
func (p *Provider) Issuer() string { return p.issuer }

// AcceptsIDTokens reports whether the IdP's own ID tokens may be used as
// bearer tokens (identityProviders[].acceptIDTokens).
func (p *Provider) AcceptsIDTokens() bool { return p.cfg.AcceptIDTokens }

// HTTPClient is a client that trusts the IdP's configured CA (or the system
// roots), for talking to the IdP (e.g. the login portal's code exchange, via
// oidc.ClientContext or oauth2.HTTPClient).
func (p *Provider) HTTPClient() *http.Client { return p.client }

// HealthCheck returns nil once the provider has loaded the IdP's discovery
// document and can verify ID tokens.
func (p *Provider) HealthCheck() error {
	if err := p.authn.HealthCheck(); err != nil {
		return fmt.Errorf("identity provider %q: %w", p.cfg.Name, err)
	}
	return nil
}

// WaitReady waits until HealthCheck succeeds or ctx is done.
func (p *Provider) WaitReady(ctx context.Context) error {
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		return p.authn.HealthCheck() == nil, nil
	})
	if err != nil {
		if herr := p.HealthCheck(); herr != nil {
			return herr
		}
		return err
	}
	return nil
}

// Close stops the provider's background work. The provider must not be used
// afterwards.
func (p *Provider) Close() { p.cancel() }

// VerifyIDToken verifies an ID token of this IdP and maps it to an identity
// with kube-apiserver's semantics (claim mappings, claimValidationRules,
// userValidationRules). Identity.Email is the token's "email" claim unless
// "email_verified" is false. Groups with a reserved prefix (IsReservedGroup)
// are dropped. Errors are *VerifyError.
func (p *Provider) VerifyIDToken(ctx context.Context, raw string) (*Identity, error) {
	if p.authn.HealthCheck() != nil {
		return nil, p.notReady("its discovery document and signing keys are not loaded yet")
	}
	if iss, ok := jwtpeek.Issuer(raw); !ok {
		return nil, p.rejected("not a JWT")
	} else if iss != p.issuer {
		return nil, p.rejected("issued by another issuer")
	}
	resp, ok, err := p.authn.AuthenticateToken(ctx, raw)
	if err != nil {
		reason := safeReason(err, raw)
		klog.V(4).InfoS("Identity provider rejected an ID token", "identityProvider", p.cfg.Name, "reason", reason)
		switch msg := err.Error(); {
		case strings.Contains(msg, "authenticator not initialized"):
			return nil, p.notReady("its discovery document and signing keys are not loaded yet")
		case strings.Contains(msg, "fetching keys"):
			return nil, p.notReady("its signing keys could not be fetched")
		}
		return nil, p.rejected(reason)
	}
	if !ok || resp == nil || resp.User == nil {
		return nil, p.rejected("not accepted")
	}
	u := resp.User
	id := &Identity{
		Username:         u.GetName(),
		UID:              u.GetUID(),
		Groups:           dropReservedGroups(p.cfg.Name, u.GetName(), slices.Clone(u.GetGroups())),
		IdentityProvider: p.cfg.Name,
		// The authenticator verified this very string: its payload is now
		// trustworthy.
		Email: verifiedEmail(raw),
	}
	if extra := u.GetExtra(); len(extra) > 0 {
		id.Extra = make(map[string][]string, len(extra))
		for k, v := range extra {
			id.Extra[k] = slices.Clone(v)
		}
	}
	return id, nil
}

// verifiedEmail returns the "email" claim of a token that has been verified,
// unless "email_verified" says it is not verified. An email_verified that is
// neither a boolean nor a boolean string (some IdPs send "true") counts as
// not verified.
func verifiedEmail(raw string) string {
	payload, ok := jwtpeek.Payload(raw)
	if !ok {
		return ""
	}
	var c struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Email == "" {
		return ""
	}
	if len(c.EmailVerified) == 0 || string(c.EmailVerified) == "null" {
		return c.Email
	}
	var b bool
	if json.Unmarshal(c.EmailVerified, &b) == nil {
		if b {
			return c.Email
		}
		return ""
	}
	var s string
	if json.Unmarshal(c.EmailVerified, &s) == nil && strings.EqualFold(s, "true") {
		return c.Email
	}
	return ""
}

func (p *Provider) notReady(reason string) error {
	return &VerifyError{Provider: p.cfg.Name, Reason: reason, NotReady: true}
}

func (p *Provider) rejected(reason string) error {
	return &VerifyError{Provider: p.cfg.Name, Reason: reason}
}

// OAuth2Config is the login portal's OAuth2 client at this IdP, with the
// endpoints of its discovery document (fetched once, then remembered) and
// the client secret read from clientSecretFile now. An IdP with no
// clientSecretFile is a public client (the portal uses PKCE either way).
func (p *Provider) OAuth2Config(redirectURL string) (*oauth2.Config, error) {
	if p.cfg.ClientID == "" {
		return nil, fmt.Errorf("identity provider %q has no clientID, so nobody can log in through it", p.cfg.Name)
	}
	up, err := p.discover(p.ctx)
	if err != nil {
		return nil, err
	}
	secret, err := p.clientSecret()
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: secret,
		Endpoint:     up.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       slices.Clone(p.cfg.Scopes),
	}, nil
}

func (p *Provider) clientSecret() (string, error) {
	if p.cfg.ClientSecretFile == "" {
		return "", nil
	}
	data, err := os.ReadFile(p.cfg.ClientSecretFile)
	if err != nil {
		// The path is configuration, not a secret; the contents never appear.
		return "", fmt.Errorf("identity provider %q: reading the client secret: %w", p.cfg.Name, err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("identity provider %q: the client secret file %s is empty", p.cfg.Name, p.cfg.ClientSecretFile)
	}
	return secret, nil
}

// discover returns the IdP's go-oidc provider, doing OpenID discovery the
// first time (and again after a failure).
func (p *Provider) discover(ctx context.Context) (*oidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.upstream != nil {
		return p.upstream, nil
	}
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	up, err := oidc.NewProvider(oidc.ClientContext(ctx, p.dclient), p.issuer)
	if err != nil {
		return nil, fmt.Errorf("identity provider %q: OpenID discovery for %s failed: %s: %w",
			p.cfg.Name, p.issuer, truncate(err.Error(), maxReasonLen), ErrNotReady)
	}
	p.upstream = up
	return up, nil
}

// UserInfoGroups asks the IdP's userinfo endpoint for the user's groups,
// with the access token of tokenSource: the values of userInfo.groupsClaim
// (a string or a list of strings), each prefixed with userInfo.groupsPrefix,
// without those that then have a reserved prefix (IsReservedGroup).
// It returns nothing when the IdP has no userInfo configuration or the claim
// is absent. tokenSource must come from the same token response as the ID
// token the identity was taken from.
func (p *Provider) UserInfoGroups(ctx context.Context, tokenSource oauth2.TokenSource) ([]string, error) {
	if p.cfg.UserInfo == nil {
		return nil, nil
	}
	up, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	ts := &recordingTokenSource{base: tokenSource}
	info, err := up.UserInfo(oidc.ClientContext(ctx, p.client), ts)
	if err != nil {
		// The IdP's response is in the error: make sure it cannot carry the
		// access token into a log.
		return nil, fmt.Errorf("identity provider %q: userinfo request failed: %s", p.cfg.Name, safeReason(err, ts.accessToken))
	}
	var claims map[string]json.RawMessage
	if err := info.Claims(&claims); err != nil {
		return nil, fmt.Errorf("identity provider %q: decoding the userinfo response: %w", p.cfg.Name, err)
	}
	claim := p.cfg.UserInfo.GroupsClaim
	values, err := stringOrStrings(claims[claim])
	if err != nil {
		return nil, fmt.Errorf("identity provider %q: userinfo claim %q: %w", p.cfg.Name, claim, err)
	}
	var groups []string
	for _, g := range values {
		if g == "" {
			continue
		}
		groups = append(groups, p.cfg.UserInfo.GroupsPrefix+g)
	}
	return dropReservedGroups(p.cfg.Name, "", groups), nil
}

// recordingTokenSource remembers the access token it handed out, so that it
// can be scrubbed from errors.
type recordingTokenSource struct {
	base        oauth2.TokenSource
	accessToken string
}

func (r *recordingTokenSource) Token() (*oauth2.Token, error) {
	t, err := r.base.Token()
	if t != nil {
		r.accessToken = t.AccessToken
	}
	return t, err
}

// stringOrStrings decodes a claim that may be one string or a list of them
// (as kube-apiserver accepts for its groups claim). Absent or null is empty.
func stringOrStrings(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("is neither a string nor a list of strings")
	}
	return many, nil
}

// discoveryRewriter sends requests for the issuer's well-known discovery
// document to issuer.discoveryURL instead, as kube-apiserver does, so the
// login portal sees the same document as the ID-token verifier.
type discoveryRewriter struct {
	base   http.RoundTripper
	from   string
	target *url.URL
}

func (d *discoveryRewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.String() != d.from {
		return d.base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.URL = d.target
	r.Host = ""
	return d.base.RoundTrip(r)
}
