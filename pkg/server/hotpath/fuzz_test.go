package hotpath

import (
	"net/http"
	"net/url"
	"testing"

	apirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// FuzzLongRunningClassification checks the proxied-request classification
// on arbitrary methods, paths and queries: it never panics, it agrees with
// kube-apiserver's own classification of the same request sent to the
// cluster, and the quick test in front of it (mayBeLongRunning) never says
// no where the full classification says yes (a watch classified as an
// ordinary request would be cut off by the request deadline).
//
//	go test ./pkg/server/hotpath -run '^$' -fuzz FuzzLongRunningClassification -fuzztime 60s
func FuzzLongRunningClassification(f *testing.F) {
	for _, s := range []struct{ method, path, query string }{
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods", "watch=true"},
		{"GET", "/clusters/c1/api/v1/watch/namespaces/default/pods", ""},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods/p/log", "follow=true"},
		{"POST", "/clusters/c1/api/v1/namespaces/default/pods/p/exec", "command=ls"},
		{"GET", "/clusters/c1/api/v1/namespaces/default/pods/p/portforward", ""},
		{"GET", "/clusters/c1/api/v1/namespaces/default/services/s:80/proxy/x", ""},
		{"GET", "/clusters/c1/apis/apps/v1/deployments", "%77atch=1"},
		{"GET", "/clusters/c1/apis/apps/v1/deployments", "watch=0"},
		{"GET", "/clusters/c1/debug/pprof/profile", "seconds=30"},
		{"GET", "/clusters/c1/api/v1/namespaces/default/configmaps", "labelSelector=a%3Db"},
		{"DELETE", "/clusters/c1/api/v1/namespaces/default/pods", "watch=1"},
		{"GET", "/clusters/c1", ""},
		{"GET", "/clusters/", ""},
		{"GET", "/tokenreview/c1", ""},
	} {
		f.Add(s.method, s.path, s.query)
	}
	full := LongRunning(nil)
	f.Fuzz(func(t *testing.T, method, path, query string) {
		cluster, ok := ClusterFromPath(path)
		r := &http.Request{Method: method, Header: http.Header{}, URL: &url.URL{Path: path, RawQuery: query}}
		got := full(r, &apirequest.RequestInfo{})
		if !ok {
			if got {
				t.Fatalf("%s %s?%s is not a proxied path but is long-running", method, path, query)
			}
			return
		}
		inner := &http.Request{Method: method, Header: http.Header{}, URL: &url.URL{Path: path[len("/clusters/")+len(cluster):], RawQuery: query}}
		info, err := upstreamRequestInfo.NewRequestInfo(inner)
		want := err == nil && upstreamLongRunning(inner, info)
		if got != want {
			t.Fatalf("%s %s?%s: long-running %v, kube-apiserver's classification says %v", method, path, query, got, want)
		}
		if want && !mayBeLongRunning(path, query) {
			t.Fatalf("%s %s?%s is long-running but the quick test says no", method, path, query)
		}
	})
}
