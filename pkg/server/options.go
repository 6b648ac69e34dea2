package server

import (
	"fmt"
	"net"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/compatibility"
	logsapi "k8s.io/component-base/logs/api/v1"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	logininstall "portcullis.dev/portcullis/pkg/apis/login/install"
	loginopenapi "portcullis.dev/portcullis/pkg/apis/login/openapi"
	"portcullis.dev/portcullis/pkg/version"
)

// certPairName is the base name of the self-signed serving certificate
// written into --cert-dir when no certificate is given.
const certPairName = "portcullis"

// Options are portcullis-server's flags. The shape (one options type per
// concern, each with AddFlags/Validate/ApplyTo) is k8s.io/apiserver's, and
// most of the types are its own, so the flags read as kube-apiserver's do.
type Options struct {
	ConfigFile string

	SecureServing  *genericoptions.SecureServingOptionsWithLoopback
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
	Audit          *genericoptions.AuditOptions
	Features       *genericoptions.FeatureOptions
	Logs           *logsapi.LoggingConfiguration
	Shutdown       ShutdownOptions

	// PortcullisConfig is the configuration file, loaded by Complete.
	PortcullisConfig *v1alpha1.PortcullisConfiguration
}

// NewOptions returns options with Portcullis's defaults.
func NewOptions() *Options {
	o := &Options{
		SecureServing:  genericoptions.NewSecureServingOptions().WithLoopback(),
		Authentication: genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:  genericoptions.NewDelegatingAuthorizationOptions(),
		Audit:          genericoptions.NewAuditOptions(),
		Features:       genericoptions.NewFeatureOptions(),
		Logs:           logsapi.NewLoggingConfiguration(),
	}
	o.SecureServing.BindPort = 8443
	o.SecureServing.ServerCert.CertDirectory = "/var/lib/portcullis/certs"
	o.SecureServing.ServerCert.PairName = certPairName
	// A failed configuration reload is told at /readyz/portcullis-config
	// (field names only, no values), as readable as /readyz itself.
	o.Authorization.AlwaysAllowPaths = append(o.Authorization.AlwaysAllowPaths, "/readyz/"+ConfigReadyzCheck)
	// As kube-apiserver's system:public-info-viewer.
	o.Authorization.AlwaysAllowPaths = append(o.Authorization.AlwaysAllowPaths, "/version", "/version/")
	// Portcullis runs standalone (webhook and proxy modes) as often as
	// aggregated: a kubeconfig for delegated authn/authz is optional.
	o.Authentication.RemoteKubeConfigFileOptional = true
	o.Authorization.RemoteKubeConfigFileOptional = true
	// Anonymous requests are added back by Portcullis's own authenticator
	// chain, after its token authenticator had its say (see authn.go).
	o.Authentication.Anonymous.Enabled = false
	// /metrics is not among the always-allowed paths: it is authorized
	// (authz.go, authorizeMetrics, then the delegated authorizer).
	return o
}

// Flags returns the flags grouped by concern, so --help reads well.
func (o *Options) Flags() cliflag.NamedFlagSets {
	var fss cliflag.NamedFlagSets
	fs := fss.FlagSet("portcullis")
	fs.StringVar(&o.ConfigFile, "config", o.ConfigFile, "Path of the configuration file (config.portcullis.dev/v1alpha1 PortcullisConfiguration). Required; see docs/configuration.md.")
	o.SecureServing.AddFlags(fss.FlagSet("secure serving"))
	o.Authentication.AddFlags(fss.FlagSet("delegated authentication (aggregated API mode)"))
	o.Authorization.AddFlags(fss.FlagSet("delegated authorization (aggregated API mode)"))
	o.Audit.AddFlags(fss.FlagSet("auditing"))
	o.Features.AddFlags(fss.FlagSet("features"))
	o.Shutdown.AddFlags(fss.FlagSet("shutdown"))
	logsapi.AddFlags(o.Logs, fss.FlagSet("logs"))
	return fss
}

// AddFlags adds every flag group to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	for _, f := range o.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
}

// ApplyLogging validates and applies the logging flags (--logging-format,
// -v...). It comes first, as in kube-apiserver, so that even a refused
// configuration file is reported in the chosen format. It may be called
// once per process.
func (o *Options) ApplyLogging() error {
	return logsapi.ValidateAndApply(o.Logs, nil)
}

// Complete loads the configuration file and fills defaults that depend on it.
func (o *Options) Complete() error {
	cfg, err := LoadConfigFile(o.ConfigFile)
	if err != nil {
		return err
	}
	o.PortcullisConfig = cfg
	return nil
}

// LoadConfigFile reads, decodes, defaults and validates the configuration
// file. It is the one way every command (the server at start-up,
// check-config, mint, copy-store, webhook-kubeconfig) loads it, so that
// check-config reports exactly what start-up would.
func LoadConfigFile(path string) (*v1alpha1.PortcullisConfiguration, error) {
	if path == "" {
		return nil, fmt.Errorf("--config is required: give the path of a PortcullisConfiguration file (example: artifacts/config/minimal.yaml)")
	}
	return config.Load(path)
}

// Validate aggregates every flag error.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.SecureServing.Validate()...)
	errs = append(errs, o.Shutdown.Validate()...)
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	errs = append(errs, o.Audit.Validate()...)
	errs = append(errs, o.Features.Validate()...)
	errs = append(errs, logsapi.Validate(o.Logs, nil, nil).ToAggregate())
	return utilerrors.NewAggregate(errs)
}

// Config returns the server's configuration from completed, validated
// options.
func (o *Options) Config() (*Config, error) {
	scheme, codecs := NewCodecs()
	gc, err := o.genericConfig(codecs)
	if err != nil {
		return nil, err
	}
	return &Config{
		GenericConfig: gc,
		ExtraConfig: ExtraConfig{
			Portcullis:      o.PortcullisConfig,
			ConfigFile:      o.ConfigFile,
			ServingCertFile: o.SecureServing.ServerCert.CertKey.CertFile,
			Scheme:          scheme,
			Codecs:          codecs,
		},
	}, nil
}

// genericConfig builds the k8s.io/apiserver configuration: serving, audit,
// delegated authn/authz, and the OpenAPI of login.portcullis.dev (the
// generic server needs it to install an API group). Portcullis's own
// authenticator and authorizer are put in front of the delegated ones by New.
func (o *Options) genericConfig(codecs serializer.CodecFactory) (*genericapiserver.RecommendedConfig, error) {
	if err := o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}); err != nil {
		return nil, fmt.Errorf("creating a self-signed serving certificate in %s: %w (set --cert-dir to a writable folder, or give --tls-cert-file and --tls-private-key-file)", o.SecureServing.ServerCert.CertDirectory, err)
	}
	c := genericapiserver.NewRecommendedConfig(codecs)
	// Portcullis serves no Kubernetes built-in APIs: the compatibility
	// version only matters to the generic server's own bookkeeping.
	c.EffectiveVersion = effectiveVersion{EffectiveVersion: compatibility.NewEffectiveVersionFromString("", "", "")}
	if err := o.SecureServing.ApplyTo(&c.SecureServing, &c.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("secure serving: %w", err)
	}
	if err := o.Authentication.ApplyTo(&c.Authentication, c.SecureServing, nil); err != nil {
		return nil, fmt.Errorf("delegated authentication: %w", err)
	}
	if err := o.Authorization.ApplyTo(&c.Authorization); err != nil {
		return nil, fmt.Errorf("delegated authorization: %w", err)
	}
	if err := o.Audit.ApplyTo(&c.Config); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	o.Shutdown.ApplyTo(&c.Config)
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(loginopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(logininstall.OpenAPINamerScheme()))
	c.OpenAPIConfig.Info.Title, c.OpenAPIConfig.Info.Version = "Portcullis", "v1alpha1"
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(loginopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(logininstall.OpenAPINamerScheme()))
	c.OpenAPIV3Config.Info.Title, c.OpenAPIV3Config.Info.Version = "Portcullis", "v1alpha1"
	return c, nil
}

// effectiveVersion is the generic server's compatibility version with
// Portcullis's version information: the generic server serves /version from
// Info, and without a binary version (Portcullis serves no Kubernetes
// built-in APIs to emulate) Info is nil and /version is not installed.
type effectiveVersion struct {
	compatibility.EffectiveVersion
}

func (effectiveVersion) Info() *apimachineryversion.Info {
	info := version.Get()
	return &info
}

// NewCodecs returns a codec factory over a fresh scheme with the types the
// server serves.
func NewCodecs() (*runtime.Scheme, serializer.CodecFactory) {
	scheme := runtime.NewScheme()
	// The generic chain answers errors (401, 403, 429...) with a Status.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	scheme.AddUnversionedTypes(schema.GroupVersion{Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	logininstall.Install(scheme)
	return scheme, serializer.NewCodecFactory(scheme)
}

// ShutdownOptions are the generic server's graceful-shutdown settings, with
// kube-apiserver's flag names. With several replicas behind a Service, a
// delay lets endpoints drop a stopping replica (its /readyz fails at once)
// before it stops accepting connections.
type ShutdownOptions struct {
	Delay time.Duration
}

// AddFlags adds the shutdown flags.
func (o *ShutdownOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.Delay, "shutdown-delay-duration", o.Delay, "Time to delay the termination. During that time the server keeps serving requests normally while /readyz returns failure, so that load balancers (a Service's endpoints) stop sending new requests first. Set it above the readiness probe's period when running several replicas.")
}

// Validate checks the shutdown flags.
func (o *ShutdownOptions) Validate() []error {
	if o.Delay < 0 {
		return []error{fmt.Errorf("--shutdown-delay-duration must be 0 or more, got %s", o.Delay)}
	}
	return nil
}

// ApplyTo sets the generic server's shutdown settings.
func (o *ShutdownOptions) ApplyTo(c *genericapiserver.Config) {
	c.ShutdownDelayDuration = o.Delay
}
