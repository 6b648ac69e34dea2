// Package server assembles portcullis-server on k8s.io/apiserver's generic
// server: every endpoint (TokenReview webhook, discovery and JWKS, portal,
// proxy, aggregated API) sits behind the generic handler chain, so TLS,
// authentication, audit, authorization, panic recovery, max-in-flight and
// long-running request handling are the apiserver's own.
package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	logininstall "portcullis.dev/portcullis/pkg/apis/login/install"
	loginopenapi "portcullis.dev/portcullis/pkg/apis/login/openapi"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/portal"
	"portcullis.dev/portcullis/pkg/proxy"
	"portcullis.dev/portcullis/pkg/registry"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/pkg/webhook"
)

// Server is a configured portcullis-server, ready to run.
type Server struct {
	Generic  *genericapiserver.GenericAPIServer
	Store    store.Store
	Keys     *token.KeyManager
	Minter   *token.Minter
	Verifier *token.Verifier
	IdPs     *identity.Providers
	Policy   *policy.Holder
	Authn    *authn.Authenticator
	Proxy    *proxy.Proxy

	state  *configState
	opts   *Options
	cancel context.CancelFunc
}

// OpenStore opens the configured state store.
func OpenStore(cfg *v1alpha1.PortcullisConfiguration) (store.Store, error) {
	switch cfg.Store.Type {
	case "bolt":
		return bolt.Open(cfg.Store.Path, bolt.Options{})
	}
	return nil, fmt.Errorf("store.type %q is not supported", cfg.Store.Type)
}

// NewKeys returns the key manager for cfg over st, with a first key ensured.
func NewKeys(ctx context.Context, cfg *v1alpha1.PortcullisConfiguration, st store.Store) (*token.KeyManager, error) {
	km, err := token.NewKeyManager(st, token.KeyOptions{
		RotationPeriod:   cfg.Tokens.KeyRotationPeriod.Duration,
		MaxTokenLifetime: cfg.Tokens.MaxLifetime.Duration,
	})
	if err != nil {
		return nil, err
	}
	if err := km.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("creating the first signing key: %w", err)
	}
	return km, nil
}

// New builds the server from completed, validated options.
func New(ctx context.Context, o *Options) (*Server, error) {
	cfg := o.Config
	scheme, codecs := NewCodecs()
	gc, err := o.genericConfig(codecs)
	if err != nil {
		return nil, err
	}

	s := &Server{opts: o}
	ctx, s.cancel = context.WithCancel(ctx)
	if s.Store, err = OpenStore(cfg); err != nil {
		return nil, err
	}
	if s.Keys, err = NewKeys(ctx, cfg, s.Store); err != nil {
		return nil, err
	}
	if s.Minter, err = token.NewMinter(s.Keys, cfg.IssuerURL, nil); err != nil {
		return nil, err
	}
	tm := tokenMetrics()
	if s.Verifier, err = token.NewVerifier(s.Keys, cfg.IssuerURL, s.Store, token.VerifierOptions{
		CacheSize:   cfg.Tokens.CacheSize,
		OnCacheHit:  tm.hit,
		OnCacheMiss: tm.miss,
	}); err != nil {
		return nil, err
	}
	if s.IdPs, err = identity.NewProviders(ctx, cfg); err != nil {
		return nil, fmt.Errorf("identity providers: %w", err)
	}
	s.state = newConfigState(cfg)
	s.Policy = &policy.Holder{}
	s.Policy.Store(policy.New(cfg))
	s.Authn = &authn.Authenticator{
		IssuerURL: cfg.IssuerURL,
		Verifier:  s.Verifier,
		IdPs:      s.IdPs,
		Groups:    s.state.groupMapper,
		Policy:    s.Policy,
		Grants:    s.Store,
	}

	webhookAuthn, err := newWebhookClientAuthenticator(cfg.Webhook)
	if err != nil {
		return nil, err
	}
	if cfg.Webhook.ClientCAFile != "" {
		// TLS only asks for client certificates from CAs the serving info
		// knows; without this kube-apiserver's certificate is never sent.
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("webhook-client-ca", cfg.Webhook.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("webhook.clientCAFile: %w", err)
		}
		if err := gc.Authentication.ApplyClientCert(ca, gc.SecureServing); err != nil {
			return nil, err
		}
	}
	gc.Authentication.Authenticator = newRequestAuthenticator(s.Authn, s.state, webhookAuthn, gc.Authentication.Authenticator)
	if gc.Authorization.Authorizer, err = newAuthorizer(gc.Authorization.Authorizer); err != nil {
		return nil, err
	}
	gc.Config.LongRunningFunc = longRunning(gc.Config.LongRunningFunc)

	// aggregated API wiring (helper) — begin: OpenAPI of login.portcullis.dev
	// (the generic server needs it to install an API group), anyone may create
	// TokenCredentialRequests and WhoAmIRequests, and the exchange's
	// per-client rate limit sees the peer address.
	gc.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(loginopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(logininstall.OpenAPINamerScheme()))
	gc.OpenAPIConfig.Info.Title, gc.OpenAPIConfig.Info.Version = "Portcullis", "v1alpha1"
	gc.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(loginopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(logininstall.OpenAPINamerScheme()))
	gc.OpenAPIV3Config.Info.Title, gc.OpenAPIV3Config.Info.Version = "Portcullis", "v1alpha1"
	gc.Authorization.Authorizer = registry.WithPublicResources(gc.Authorization.Authorizer)
	buildChain := gc.BuildHandlerChainFunc
	gc.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		// The TokenReview webhook and the proxy get a shorter chain of the
		// same generic filters (see hotPathChain).
		// The proxy judges a client's own Impersonate-* headers against the
		// upstream cluster's RBAC, so they must be set aside before the
		// generic chain's impersonation filter sees them.
		full := buildChain(registry.WithClientAddress(h), c)
		return &hotPathRouter{full: full, hot: hotPathChain(h, c)}
	}
	// aggregated API wiring (helper) — end

	s.Generic, err = gc.Complete().New("portcullis-server", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}

	// One session manager, so that the Session API's delete and the portal's
	// logout end sessions the same way.
	sessions := session.NewManager(s.Store, session.SettingsFrom(s.state.config), nil)

	// aggregated API wiring (helper) — begin: serve login.portcullis.dev.
	loginGroup, err := registry.NewAPIGroupInfo(scheme, codecs, registry.Options{
		Authn:    s.Authn,
		Minter:   s.Minter,
		Store:    s.Store,
		Sessions: sessions,
		Config:   s.state.config,
	})
	if err != nil {
		return nil, err
	}
	if err := s.Generic.InstallAPIGroup(loginGroup); err != nil {
		return nil, fmt.Errorf("installing the login.portcullis.dev API: %w", err)
	}
	// aggregated API wiring (helper) — end
	mux := s.Generic.Handler.NonGoRestfulMux
	mux.Handle("/.well-known/openid-configuration", token.DiscoveryHandler(cfg.IssuerURL))
	mux.Handle("/openid/v1/jwks", token.JWKSHandler(s.Keys))
	wh := &webhook.Handler{
		Authn:          s.Authn,
		APIAudiences:   s.state.apiAudiences,
		DefaultCluster: s.state.defaultCluster,
		Metrics:        webhook.DefaultMetrics(),
	}
	mux.Handle(webhook.PathPrefix, wh)
	proxy.RegisterMetrics()
	if s.Proxy, err = proxy.New(cfg.Clusters, proxy.Options{Unaudited: gc.AuditBackend == nil}); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	mux.HandlePrefix(ClusterPathPrefix, s.Proxy)
	mux.HandlePrefix(webhook.PathPrefix+"/", wh)

	// portal wiring (helper)
	servingCert := o.SecureServing.ServerCert.CertKey.CertFile
	loginPortal, err := portal.New(portal.Deps{
		Config:    s.state.config,
		IdPs:      s.IdPs,
		Groups:    s.state.groupMapper,
		Policy:    s.Policy,
		Store:     s.Store,
		Sessions:  sessions,
		Minter:    s.Minter,
		IssuerURL: cfg.IssuerURL,
		ServingCA: func() []byte {
			b, _ := os.ReadFile(servingCert)
			return b
		},
	})
	if err != nil {
		return nil, err
	}
	loginPortal.Install(mux)
	// end portal wiring (helper)

	s.Generic.AddPostStartHookOrDie("portcullis-keys", func(hc genericapiserver.PostStartHookContext) error {
		go s.Keys.Run(ctx)
		return nil
	})
	s.Generic.AddPostStartHookOrDie("portcullis-config-reload", func(hc genericapiserver.PostStartHookContext) error {
		go s.watchConfig(ctx, o.ConfigFile, 2*time.Second)
		return nil
	})
	s.Generic.AddPreShutdownHookOrDie("portcullis-store", func() error {
		s.cancel()
		s.Proxy.Close()
		return nil
	})
	return s, nil
}

// Run serves until ctx is done (SIGTERM), then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	defer func() {
		if err := s.Store.Close(); err != nil {
			klog.ErrorS(err, "Closing the store")
		}
	}()
	klog.InfoS("Starting portcullis-server", "issuer", s.opts.Config.IssuerURL, "clusters", len(s.opts.Config.Clusters), "identityProviders", len(s.opts.Config.IdentityProviders))
	return s.Generic.PrepareRun().RunWithContext(ctx)
}

var _ http.Handler = (*webhook.Handler)(nil)
