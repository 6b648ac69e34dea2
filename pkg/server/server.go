// Package server assembles portcullis-server on k8s.io/apiserver's generic
// server: every endpoint (TokenReview webhook, discovery and JWKS, portal,
// proxy, aggregated API) sits behind the generic handler chain, so TLS,
// authentication, audit, authorization, panic recovery, max-in-flight and
// long-running request handling are the apiserver's own.
//
// The assembly follows k8s.io/sample-apiserver: Options (flags) → Complete →
// Validate → Config → Complete → New → PrepareRun → Run. The hot paths'
// handler chain is in pkg/server/hotpath, the webhook callers' client
// certificates in pkg/webhook/callerauth.
package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"k8s.io/apiserver/pkg/audit"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/breakglass"
	"portcullis.dev/portcullis/pkg/clientlimit"
	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/ldap"
	"portcullis.dev/portcullis/pkg/notify"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/portal"
	"portcullis.dev/portcullis/pkg/proxy"
	"portcullis.dev/portcullis/pkg/registry"
	"portcullis.dev/portcullis/pkg/server/hotpath"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/kubernetes"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/pkg/webhook"
	"portcullis.dev/portcullis/pkg/webhook/callerauth"
)

// Server is a configured portcullis-server, ready to run.
type Server struct {
	Generic *genericapiserver.GenericAPIServer
	Store   store.Store
	// Notifier sends access request transitions to notifications.webhook.
	Notifier *notify.Webhook
	Keys     *token.KeyManager
	Minter   *token.Minter
	Verifier *token.Verifier
	IdPs     *identity.Providers
	// Directories are the LDAP identity providers (password logins).
	Directories *ldap.Directories
	Policy      *policy.Holder
	Authn       *authn.Authenticator
	Proxy       *proxy.Proxy
	Sessions    *session.Manager

	state   *configState
	reload  *reloadStatus
	backend *stateBackend
	config  *v1alpha1.PortcullisConfiguration // as loaded at start
	cancel  context.CancelFunc
}

// NewKeys returns the key manager for cfg over st, with a first key ensured.
// chores says whether this process may rotate and delete keys now (nil:
// always; mint passes one that never does).
func NewKeys(ctx context.Context, cfg *v1alpha1.PortcullisConfiguration, st store.Store, chores func() bool) (*token.KeyManager, error) {
	opts := token.KeyOptions{
		RotationPeriod:   cfg.Tokens.KeyRotationPeriod.Duration,
		MaxTokenLifetime: cfg.Tokens.MaxLifetime.Duration,
		Chores:           chores,
	}
	if _, shared := st.(*kubernetes.Store); shared {
		// Keys are read from the store's informer cache: reloading often
		// costs nothing, and lets a rotation publish a new key to every
		// replica a few seconds ahead of its use.
		opts.ReloadInterval = sharedStoreKeyReload
	}
	km, err := token.NewKeyManager(st, opts)
	if err != nil {
		return nil, err
	}
	if err := km.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("creating the first signing key: %w", err)
	}
	return km, nil
}

// New builds the server. Portcullis's state comes first: the generic
// server's authenticator and authorizer are Portcullis's, built over it.
func (c CompletedConfig) New(ctx context.Context) (*Server, error) {
	s := &Server{config: c.ExtraConfig.Portcullis}
	ctx, s.cancel = context.WithCancel(ctx)
	if err := s.openState(ctx); err != nil {
		return nil, err
	}
	if err := s.secureGenericChain(c.GenericConfig); err != nil {
		return nil, err
	}
	generic, err := c.GenericConfig.Complete().New("portcullis-server", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	s.Generic = generic
	if err := s.installLoginAPI(c.ExtraConfig); err != nil {
		return nil, err
	}
	if err := s.installHandlers(c.ExtraConfig, c.GenericConfig.AuditBackend == nil); err != nil {
		return nil, err
	}
	s.addHooks(ctx, c.ExtraConfig.ConfigFile, c.GenericConfig.AuditBackend)
	return s, nil
}

// openState opens the store and builds what every endpoint shares: signing
// keys, minter, verifier, identity providers, policy and the authentication
// decision. ctx bounds the background work of keys and providers.
func (s *Server) openState(ctx context.Context) error {
	cfg := s.config
	var err error
	if s.backend, err = openStateBackend(ctx, cfg); err != nil {
		return err
	}
	s.Store = s.backend.Store
	if s.Keys, err = NewKeys(ctx, cfg, s.Store, s.backend.Chores.IsLeader); err != nil {
		return err
	}
	if s.Minter, err = token.NewMinter(s.Keys, cfg.IssuerURL, nil); err != nil {
		return err
	}
	tm := tokenMetrics()
	if s.Verifier, err = token.NewVerifier(s.Keys, cfg.IssuerURL, s.Store, token.VerifierOptions{
		CacheSize:   cfg.Tokens.CacheSize,
		OnCacheHit:  tm.hit,
		OnCacheMiss: tm.miss,
	}); err != nil {
		return err
	}
	if s.IdPs, err = identity.NewProviders(ctx, cfg); err != nil {
		return fmt.Errorf("identity providers: %w", err)
	}
	if err := s.openDirectories(ctx); err != nil {
		return err
	}
	s.state = newConfigState(cfg)
	s.Notifier = notify.New(s.state.config)
	s.Policy = &policy.Holder{}
	s.Policy.Store(policy.New(cfg))
	// One session manager, so that the Session API's delete and the
	// portal's logout end sessions the same way.
	// Revocations are kept as long as the longest token the minter issues,
	// even after a reload lowers tokens.maxLifetime (which needs a restart
	// to reach the minter).
	s.Sessions = session.NewManager(s.Store, session.KeepingRevocationsFor(session.SettingsFrom(s.state.config), s.Minter.MaxTokenLifetime()), nil)
	s.Authn = &authn.Authenticator{
		IssuerURL: cfg.IssuerURL,
		Verifier:  s.Verifier,
		IdPs:      s.IdPs,
		Groups:    s.state.groupMapper,
		Policy:    s.Policy,
		Grants:    s.Store,
	}
	return nil
}

// secureGenericChain puts Portcullis's authenticator and authorizer in front
// of the delegated ones, classifies proxied long-running requests, and
// routes the hot paths through their shorter chain (hotpath.Chain).
func (s *Server) secureGenericChain(gc *genericapiserver.RecommendedConfig) error {
	webhookAuthn, err := callerauth.New(s.config.Webhook)
	if err != nil {
		return err
	}
	if caFile := s.config.Webhook.ClientCAFile; caFile != "" {
		// TLS only asks for client certificates from CAs the serving info
		// knows; without this kube-apiserver's certificate is never sent.
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("webhook-client-ca", caFile)
		if err != nil {
			return fmt.Errorf("webhook.clientCAFile: %w", err)
		}
		if err := gc.Authentication.ApplyClientCert(ca, gc.SecureServing); err != nil {
			return err
		}
	}
	gc.Authentication.Authenticator = newRequestAuthenticator(s.Authn, s.state, webhookAuthn, gc.Authentication.Authenticator)
	if gc.Authorization.Authorizer, err = buildAuthorizer(gc.Authorization.Authorizer); err != nil {
		return err
	}
	gc.Config.LongRunningFunc = hotpath.LongRunning(gc.Config.LongRunningFunc)
	buildChain := gc.BuildHandlerChainFunc
	gc.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		// The exchange's per-client rate limit sees the peer address.
		full := buildChain(registry.WithClientAddress(h), c)
		// A browser at the bare address gets the portal (no credential, no
		// authorization needed: it is only a redirect).
		return portal.WithBrowserRootRedirect(hotpath.NewRouter(full, hotpath.Chain(h, c)))
	}
	return nil
}

// installLoginAPI serves the aggregated API login.portcullis.dev.
func (s *Server) installLoginAPI(extra *ExtraConfig) error {
	loginGroup, err := registry.NewAPIGroupInfo(extra.Scheme, extra.Codecs, registry.Options{
		Authn:    s.Authn,
		Minter:   s.Minter,
		Store:    s.Store,
		Sessions: s.Sessions,
		Revoker:  s.Sessions,
		Config:   s.state.config,
		Notify:   s.Notifier.Notify,
	})
	if err != nil {
		return err
	}
	if err := s.Generic.InstallAPIGroup(loginGroup); err != nil {
		return fmt.Errorf("installing the login.portcullis.dev API: %w", err)
	}
	return nil
}

// installHandlers serves discovery and keys, the TokenReview webhook, the
// proxy and the login portal on the generic server's mux.
func (s *Server) installHandlers(extra *ExtraConfig, unaudited bool) error {
	cfg := s.config
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
	var err error
	if s.Proxy, err = proxy.New(cfg.Clusters, proxy.Options{Unaudited: unaudited}); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	mux.HandlePrefix(proxy.PathPrefix, s.Proxy)
	mux.HandlePrefix(webhook.PathPrefix+"/", wh)

	servingCert := extra.ServingCertFile
	loginPortal, err := portal.New(portal.Deps{
		Config:      s.state.config,
		IdPs:        s.IdPs,
		Directories: s.Directories,
		Groups:      s.state.groupMapper,
		Policy:      s.Policy,
		Store:       s.Store,
		Logins:      s.backend.Logins,
		Sessions:    s.Sessions,
		Minter:      s.Minter,
		IssuerURL:   cfg.IssuerURL,
		StartLimits: startLimits(cfg.Portal.LoginStartLimits),
		Access:      registry.NewAccessService(s.Store, s.state.config, nil, s.Notifier.Notify),
		ServingCA: func() []byte {
			b, _ := os.ReadFile(servingCert)
			return b
		},
	})
	if err != nil {
		return err
	}
	loginPortal.Install(mux)
	return nil
}

// startLimits are the portal's login-start limits as configured, or nil
// for its defaults (portal.DefaultStartLimits).
func startLimits(l *v1alpha1.ClientRateLimits) *clientlimit.Limits {
	if l == nil {
		return nil
	}
	out := &clientlimit.Limits{PerClient: clientlimit.Rate{Every: l.PerClient.Every.Duration, Burst: l.PerClient.Burst}}
	if l.Global != nil {
		out.Global = clientlimit.Rate{Every: l.Global.Every.Duration, Burst: l.Global.Burst}
	}
	return out
}

// addHooks runs key rotation and configuration reload while the server
// runs, and stops them, and the proxy, when it shuts down.
func (s *Server) addHooks(ctx context.Context, configFile string, auditBackend audit.Backend) {
	if s.backend.Ready != nil {
		if err := s.Generic.AddReadyzChecks(s.backend.Ready); err != nil {
			klog.ErrorS(err, "Adding the state store's readiness check")
		}
	}
	if err := s.Generic.AddReadyzChecks(s.Directories.ReadyzChecks()...); err != nil {
		klog.ErrorS(err, "Adding the LDAP directories' readiness checks")
	}
	s.Generic.AddPostStartHookOrDie("portcullis-keys", func(hc genericapiserver.PostStartHookContext) error {
		go s.Keys.Run(ctx)
		return nil
	})
	s.Generic.AddPostStartHookOrDie("portcullis-notifications", func(hc genericapiserver.PostStartHookContext) error {
		go s.Notifier.Run(ctx)
		return nil
	})
	s.Generic.AddPostStartHookOrDie("portcullis-chores", func(hc genericapiserver.PostStartHookContext) error {
		go s.backend.Chores.Run(ctx)
		go s.runChores(ctx, choresInterval)
		return nil
	})
	if path := s.backend.MintSocket; path != "" {
		s.Generic.AddPostStartHookOrDie("portcullis-mint-socket", func(hc genericapiserver.PostStartHookContext) error {
			go func() {
				if err := breakglass.Serve(ctx, path, s.state.config, s.Minter, auditBackend, s.Sessions); err != nil {
					klog.ErrorS(err, "Break-glass mint through the running server is off")
				}
			}()
			return nil
		})
	}
	s.installReloadStatus(configFile)
	s.Generic.AddPostStartHookOrDie("portcullis-config-reload", func(hc genericapiserver.PostStartHookContext) error {
		go s.watchConfig(ctx, configFile, 2*time.Second)
		return nil
	})
	s.Generic.AddPreShutdownHookOrDie("portcullis-store", func() error {
		s.cancel()
		s.Proxy.Close()
		return nil
	})
}

// PreparedServer is a Server ready to run.
type PreparedServer struct {
	s       *Server
	generic interface{ RunWithContext(context.Context) error }
}

// PrepareRun readies the generic server (health checks, OpenAPI) to run.
func (s *Server) PrepareRun() PreparedServer {
	return PreparedServer{s: s, generic: s.Generic.PrepareRun()}
}

// Run serves until ctx is done (SIGTERM), then shuts down gracefully and
// closes the store.
func (p PreparedServer) Run(ctx context.Context) error {
	s := p.s
	defer func() {
		if err := s.Store.Close(); err != nil {
			klog.ErrorS(err, "Closing the store")
		}
	}()
	klog.InfoS("Starting portcullis-server", "issuer", s.config.IssuerURL, "clusters", len(s.config.Clusters), "identityProviders", len(s.config.IdentityProviders))
	return p.generic.RunWithContext(ctx)
}

// directoryStartTimeout bounds the start-up check of the LDAP directories.
const directoryStartTimeout = 15 * time.Second

// openDirectories makes the LDAP identity providers and binds to each with
// Portcullis's account: a directory that refuses it stops the start (the
// operator must fix ldap.bindDN or ldap.bindPasswordFile), one that cannot
// be reached is logged and left to come up later (its logins answer 503
// until then).
func (s *Server) openDirectories(ctx context.Context) error {
	var err error
	if s.Directories, err = ldap.NewDirectories(s.config); err != nil {
		return fmt.Errorf("LDAP identity providers: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, directoryStartTimeout)
	defer cancel()
	unreachable, err := s.Directories.CheckBindCredentials(cctx)
	if err != nil {
		return fmt.Errorf("LDAP identity providers: %w", err)
	}
	for _, e := range unreachable {
		klog.ErrorS(e, "An LDAP directory cannot be reached at start: its password logins fail until it answers")
	}
	return nil
}
