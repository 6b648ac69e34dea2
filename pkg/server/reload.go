package server

import (
	"context"
	"crypto/sha256"
	"os"
	"reflect"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/policy"
)

// configState holds the parts of the configuration that apply without a
// restart: clusters, access policy and group mappings. Readers on the hot
// path load one pointer.
type configState struct {
	cur atomic.Pointer[loaded]
}

type loaded struct {
	cfg      *v1alpha1.PortcullisConfiguration
	mapper   *identity.GroupMapper
	clusters map[string]*v1alpha1.Cluster
}

func newLoaded(cfg *v1alpha1.PortcullisConfiguration) *loaded {
	l := &loaded{cfg: cfg, mapper: identity.NewGroupMapper(cfg.GroupMappings), clusters: map[string]*v1alpha1.Cluster{}}
	for i := range cfg.Clusters {
		l.clusters[cfg.Clusters[i].Name] = &cfg.Clusters[i]
	}
	return l
}

func newConfigState(cfg *v1alpha1.PortcullisConfiguration) *configState {
	s := &configState{}
	s.cur.Store(newLoaded(cfg))
	return s
}

func (s *configState) config() *v1alpha1.PortcullisConfiguration { return s.cur.Load().cfg }

func (s *configState) groupMapper() *identity.GroupMapper { return s.cur.Load().mapper }

func (s *configState) cluster(name string) (*v1alpha1.Cluster, bool) {
	c, ok := s.cur.Load().clusters[name]
	return c, ok
}

func (s *configState) apiAudiences(name string) ([]string, bool) {
	c, ok := s.cluster(name)
	if !ok {
		return nil, false
	}
	return c.APIAudiences, true
}

// defaultCluster is the only cluster when there is exactly one, so a
// single-cluster setup can use /tokenreview without a cluster in the path.
func (s *configState) defaultCluster() string {
	if cs := s.cur.Load().cfg.Clusters; len(cs) == 1 {
		return cs[0].Name
	}
	return ""
}

// watchConfig re-reads the configuration file every interval and applies
// what can change without a restart. An invalid file is logged and ignored:
// the server keeps its last good configuration.
func (s *Server) watchConfig(ctx context.Context, path string, interval time.Duration) {
	var lastSum [32]byte
	if data, err := os.ReadFile(path); err == nil {
		lastSum = sha256.Sum256(data)
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		data, err := os.ReadFile(path)
		if err != nil {
			klog.ErrorS(err, "Re-reading the configuration file; keeping the current configuration", "path", path)
			return
		}
		sum := sha256.Sum256(data)
		if sum == lastSum {
			return
		}
		lastSum = sum
		cfg, err := config.Decode(path, data)
		if err != nil {
			klog.ErrorS(err, "The changed configuration file is invalid; keeping the current configuration", "path", path)
			return
		}
		s.applyConfig(cfg)
	}, interval)
}

// applyConfig swaps in a new configuration's policy, clusters and group
// mappings, and warns about changes that need a restart.
func (s *Server) applyConfig(cfg *v1alpha1.PortcullisConfiguration) {
	old := s.state.config()
	for field, changed := range map[string]bool{
		"issuerURL":         old.IssuerURL != cfg.IssuerURL,
		"store":             old.Store != cfg.Store,
		"tokens":            old.Tokens != cfg.Tokens,
		"identityProviders": !reflect.DeepEqual(old.IdentityProviders, cfg.IdentityProviders),
		"webhook":           !reflect.DeepEqual(old.Webhook, cfg.Webhook),
	} {
		if changed {
			klog.InfoS("Configuration change needs a restart to take effect", "field", field)
		}
	}
	s.state.cur.Store(newLoaded(cfg))
	s.Policy.Store(policy.New(cfg))
	if err := s.Proxy.Update(cfg.Clusters); err != nil {
		klog.ErrorS(err, "The proxy could not take the new clusters; it keeps the previous ones")
	}
	klog.InfoS("Configuration reloaded", "clusters", len(cfg.Clusters), "groupMappings", len(cfg.GroupMappings))
}
