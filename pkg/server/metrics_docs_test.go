package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// registered records every collector registered in the legacy registry (the
// one /metrics serves) while this test binary runs. It is installed before
// any test runs, so that the registrations the server makes when it is
// built, lazily, each once per process, are all seen.
var registered struct {
	sync.Mutex
	collectors []prometheus.Collector
}

func init() {
	mustRegister, register := legacyregistry.MustRegister, legacyregistry.Register
	legacyregistry.MustRegister = func(cs ...metrics.Registerable) {
		registered.Lock()
		for _, c := range cs {
			registered.collectors = append(registered.collectors, c)
		}
		registered.Unlock()
		mustRegister(cs...)
	}
	legacyregistry.Register = func(c metrics.Registerable) error {
		registered.Lock()
		registered.collectors = append(registered.collectors, c)
		registered.Unlock()
		return register(c)
	}
}

// descRE takes the name and the variable labels out of a prometheus.Desc's
// String().
var descRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// portcullisMetrics returns the portcullis_* metrics registered so far, with
// their labels.
func portcullisMetrics(t *testing.T) map[string][]string {
	t.Helper()
	registered.Lock()
	defer registered.Unlock()
	out := map[string][]string{}
	for _, c := range registered.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the metric description %s", d)
			}
			if !strings.HasPrefix(m[1], "portcullis_") {
				continue
			}
			var labels []string
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, l)
				}
			}
			sort.Strings(labels)
			out[m[1]] = labels
		}
	}
	return out
}

// buildServer builds (but does not run) a server from a minimal
// configuration, so that every metric it registers is registered.
func buildServer(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:8443
store:
  path: `+filepath.Join(dir, "state.db")+`
clusters:
- name: c1
  access: {allUsers: true}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := NewOptions()
	o.ConfigFile = cfgPath
	o.SecureServing.ServerCert.CertDirectory = filepath.Join(dir, "certs")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	o.SecureServing.Listener = l
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.Complete().New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Proxy.Close(); s.Store.Close() })
}

// documentedRE matches a metric's row in docs/operations.md: its name, then
// its labels.
var documentedRE = regexp.MustCompile("(?m)^\\| `(portcullis_[a-z_]+)` \\|([^|]*)\\|")

func TestEveryMetricIsDocumentedWithItsLabels(t *testing.T) {
	buildServer(t)
	got := portcullisMetrics(t)
	if len(got) == 0 {
		t.Fatal("no portcullis_ metric was registered: the recording of registrations is broken")
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, m := range documentedRE.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = m[2]
	}
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		labels, ok := documented[name]
		if !ok {
			t.Errorf("docs/operations.md does not document the metric %s (labels %v): add a row to its metrics table", name, got[name])
			continue
		}
		for _, l := range got[name] {
			if !strings.Contains(labels, "`"+l+"`") {
				t.Errorf("docs/operations.md documents %s without its label %s", name, l)
			}
		}
	}
	for name := range documented {
		if _, ok := got[name]; !ok {
			t.Errorf("docs/operations.md documents %s, which the server does not register", name)
		}
	}
}
