package hotpath

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"

	apirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// The quick test never says no where the full classification says yes.
func TestMayBeLongRunningCoversTheFullCheck(t *testing.T) {
	full := LongRunning(nil)
	segments := []string{"api", "apis", "v1", "apps", "namespaces", "default", "pods", "p", "watch", "proxy", "exec", "attach", "portforward", "log", "status", "debug", "pprof", "profile", "services", "x"}
	queries := []string{"", "watch=true", "watch=1", "follow=true", "%77atch=true", "labelSelector=a", "watch"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		path := "/clusters/c1"
		for range 1 + rng.IntN(7) {
			path += "/" + segments[rng.IntN(len(segments))]
		}
		query := queries[rng.IntN(len(queries))]
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: query}}
		inner := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: strings.TrimPrefix(path, "/clusters/c1"), RawQuery: query}}
		info, err := upstreamRequestInfo.NewRequestInfo(inner)
		if err != nil {
			continue
		}
		if upstreamLongRunning(inner, info) && !mayBeLongRunning(path, query) {
			t.Fatalf("%s?%s is long-running but the quick test says no", path, query)
		}
		if full(r, &apirequest.RequestInfo{}) != upstreamLongRunning(inner, info) {
			t.Fatalf("%s?%s: longRunning and the upstream classification disagree", path, query)
		}
	}
}

func TestLongRunningProxiedRequests(t *testing.T) {
	check := LongRunning(nil)
	for _, tt := range []struct {
		method, path, query string
		want                bool
	}{
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods", "watch=true", true},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods/p/log", "follow=true", true},
		{"POST", "/clusters/c1/api/v1/namespaces/default/pods/p/exec", "command=sh", true},
		{"POST", "/clusters/c1/api/v1/namespaces/default/pods/p/portforward", "", true},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods", "", false},
		{"GET", "/clusters/c1/apis/apps/v1/deployments", "", false},
		{"GET", "/tokenreview/c1", "", false},
		{"GET", "/clusters/c1/api/v1/watch/namespaces/default/pods", "", true},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods", "%77atch=true", true},
		{"GET", "/clusters/c1/api/v1/namespaces/default/services/s/proxy/x", "", true},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods/p/attach", "", true},
		{"GET", "/clusters/c1/debug/pprof/profile", "seconds=10", true},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods/p", "", false},
	} {
		r := &http.Request{Method: tt.method, URL: &url.URL{Path: tt.path, RawQuery: tt.query}}
		if got := check(r, &apirequest.RequestInfo{}); got != tt.want {
			t.Errorf("%s %s?%s long-running = %v, want %v", tt.method, tt.path, tt.query, got, tt.want)
		}
	}
}
