package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/server/healthz"
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

// ConfigReadyzCheck is the readiness check that reports a configuration
// change that could not be applied, at /readyz/portcullis-config.
const ConfigReadyzCheck = "portcullis-config"

// reloadStatus is what the last attempts to apply the configuration file
// came to, for the metrics and the readiness check.
type reloadStatus struct {
	mu sync.Mutex
	// served is the hash of the file being served, loaded at servedAt.
	served   [32]byte
	servedAt time.Time
	// failed is the hash of the last change that could not be applied (the
	// zero hash for a file that could not be read) and failure why; failure
	// is nil when the file as it is now is the one served.
	failed   [32]byte
	failedAt time.Time
	failure  error
}

func newReloadStatus(sum [32]byte, now time.Time) *reloadStatus {
	r := &reloadStatus{}
	r.succeeded(sum, now)
	return r
}

func (r *reloadStatus) succeeded(sum [32]byte, now time.Time) {
	r.mu.Lock()
	r.served, r.servedAt, r.failure = sum, now, nil
	r.mu.Unlock()
	m := configReloadMetrics()
	m.lastSuccessful.Set(1)
	m.lastAttempt.Set(float64(now.Unix()))
	m.lastSuccess.Set(float64(now.Unix()))
	m.info.Reset()
	m.info.WithLabelValues(hex.EncodeToString(sum[:])).Set(1)
}

func (r *reloadStatus) failedWith(sum [32]byte, now time.Time, err error) {
	r.mu.Lock()
	r.failed, r.failedAt, r.failure = sum, now, err
	r.mu.Unlock()
	m := configReloadMetrics()
	m.lastSuccessful.Set(0)
	m.lastAttempt.Set(float64(now.Unix()))
	m.reloads.WithLabelValues("failure").Inc()
}

// check is the readiness check ConfigReadyzCheck. A change that cannot be
// applied does not make the replica unready: it keeps serving the last good
// configuration, exactly as before the change, and taking every replica
// out of its Service for a bad ConfigMap would turn a mistake into an
// outage. So /readyz (what probes and load balancers ask) stays ready, and
// the check fails only when asked by name, /readyz/portcullis-config, to
// tell an operator what happened. The message names the fields at fault
// but not their values (the path is readable without credentials); the
// log has the full error.
func (r *reloadStatus) check(req *http.Request) error {
	if req == nil || path.Base(req.URL.Path) != ConfigReadyzCheck {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failure == nil {
		return nil
	}
	what := "could not be read"
	if r.failed != ([32]byte{}) {
		what = fmt.Sprintf("(sha256 %s) is invalid", hex.EncodeToString(r.failed[:]))
	}
	return fmt.Errorf("the configuration file changed at %s and %s: %s; still serving the configuration loaded at %s (sha256 %s), see the log for the full error",
		r.failedAt.UTC().Format(time.RFC3339), what, summarize(r.failure), r.servedAt.UTC().Format(time.RFC3339), hex.EncodeToString(r.served[:]))
}

// summarize names a configuration error's fields and kinds of problem,
// without the values.
func summarize(err error) string {
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		var perr *fs.PathError
		if errors.As(err, &perr) {
			return perr.Op + ": " + perr.Err.Error()
		}
		return "not a configuration file"
	}
	parts := make([]string, 0, len(cerr.Errs))
	for _, e := range cerr.Errs {
		parts = append(parts, fmt.Sprintf("%s: %s", e.Field, e.Type))
	}
	return fmt.Sprintf("%d problem(s): %s", len(cerr.Errs), strings.Join(parts, "; "))
}

// installReloadStatus starts the reload metrics from the file loaded at
// start-up and adds the readiness check ConfigReadyzCheck.
func (s *Server) installReloadStatus(configFile string) {
	data, err := os.ReadFile(configFile)
	if err != nil {
		// Loaded a moment ago: the next reload will say what happened.
		klog.ErrorS(err, "Re-reading the configuration file for its hash", "path", configFile)
	}
	s.reload = newReloadStatus(sha256.Sum256(data), time.Now())
	if err := s.Generic.AddReadyzChecks(healthz.NamedCheck(ConfigReadyzCheck, s.reload.check)); err != nil {
		klog.ErrorS(err, "Adding the configuration reload's readiness check")
	}
}

// watchConfig re-reads the configuration file every interval and applies
// what can change without a restart. A file that cannot be read or is
// invalid is logged, counted in the metrics and reported by the readiness
// check ConfigReadyzCheck; the server keeps its last good configuration.
func (s *Server) watchConfig(ctx context.Context, path string, interval time.Duration) {
	var lastSum [32]byte
	if data, err := os.ReadFile(path); err == nil {
		lastSum = sha256.Sum256(data)
	}
	unreadable := false
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		data, err := os.ReadFile(path)
		if err != nil {
			if !unreadable {
				// Once, not every interval.
				klog.ErrorS(err, "Re-reading the configuration file; keeping the current configuration", "path", path)
				s.reload.failedWith([32]byte{}, time.Now(), err)
				unreadable = true
			}
			return
		}
		sum := sha256.Sum256(data)
		if sum == lastSum && !unreadable {
			return
		}
		lastSum, unreadable = sum, false
		now := time.Now()
		cfg, err := config.Decode(path, data)
		if err != nil {
			klog.ErrorS(err, "The changed configuration file is invalid; keeping the current configuration", "path", path, "sha256", hex.EncodeToString(sum[:]))
			s.reload.failedWith(sum, now, err)
			return
		}
		s.applyConfig(cfg)
		s.reload.succeeded(sum, now)
		configReloadMetrics().reloads.WithLabelValues("success").Inc()
	}, interval)
}

// applyConfig swaps in a new configuration's policy, clusters and group
// mappings, and warns about changes that need a restart.
func (s *Server) applyConfig(cfg *v1alpha1.PortcullisConfiguration) {
	old := s.state.config()
	for field, changed := range map[string]bool{
		"issuerURL":               old.IssuerURL != cfg.IssuerURL,
		"store":                   old.Store != cfg.Store,
		"tokens":                  old.Tokens != cfg.Tokens,
		"identityProviders":       !reflect.DeepEqual(old.IdentityProviders, cfg.IdentityProviders),
		"webhook":                 !reflect.DeepEqual(old.Webhook, cfg.Webhook),
		"portal.loginStartLimits": !reflect.DeepEqual(old.Portal.LoginStartLimits, cfg.Portal.LoginStartLimits),
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
