package server

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// Config is portcullis-server's configuration: the generic server's, and
// what Portcullis adds to it. Options.Config builds it.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

// ExtraConfig is what Portcullis adds to the generic server's configuration.
type ExtraConfig struct {
	// Portcullis is the configuration file as loaded, from ConfigFile, which
	// is re-read every 2 seconds (see watchConfig).
	Portcullis *v1alpha1.PortcullisConfiguration
	ConfigFile string
	// ServingCertFile is the serving certificate, offered by the portal to
	// clients that must trust it.
	ServingCertFile string
	// Scheme and Codecs hold the types the server serves (NewCodecs).
	Scheme *runtime.Scheme
	Codecs serializer.CodecFactory
}

type completedConfig struct {
	// GenericConfig is completed by New, not by Complete: completing it
	// puts the loopback client's token authenticator in front of the
	// authenticator it has then, and that must be Portcullis's, which New
	// builds over the opened store.
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   *ExtraConfig
}

// CompletedConfig is a Config that went through Complete; only this package
// can make one.
type CompletedConfig struct {
	*completedConfig
}

// Complete readies the configuration for New. Portcullis derives nothing
// more from it; the generic part is completed by New (see completedConfig).
func (c *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{
		GenericConfig: c.GenericConfig,
		ExtraConfig:   &c.ExtraConfig,
	}}
}
