package hotpath

import (
	"net/http"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericfilters "k8s.io/apiserver/pkg/server/filters"

	"portcullis.dev/portcullis/pkg/proxy"
)

// Same verbs and subresources kube-apiserver itself treats as long-running.
var (
	upstreamRequestInfo = &apirequest.RequestInfoFactory{
		APIPrefixes:          sets.NewString("api", "apis"),
		GrouplessAPIPrefixes: sets.NewString("api"),
	}
	upstreamLongRunning = genericfilters.BasicLongRunningRequestCheck(
		sets.NewString("watch", "proxy"),
		sets.NewString("attach", "exec", "proxy", "log", "portforward"),
	)
)

// LongRunning extends the generic check: a proxied request is long-running
// (exempt from request timeouts) when the same request sent to the cluster
// itself would be: watches, logs, exec, attach, port-forward, proxy.
func LongRunning(base apirequest.LongRunningRequestCheck) apirequest.LongRunningRequestCheck {
	return func(r *http.Request, info *apirequest.RequestInfo) bool {
		if base != nil && base(r, info) {
			return true
		}
		cluster, ok := ClusterFromPath(r.URL.Path)
		if !ok || !mayBeLongRunning(r.URL.Path, r.URL.RawQuery) {
			return false
		}
		// Only method, path and query matter to the classification.
		inner := &http.Request{Method: r.Method, Header: r.Header, URL: &url.URL{
			Path: r.URL.Path[len(proxy.PathPrefix)+len(cluster):], RawQuery: r.URL.RawQuery,
		}}
		upInfo, err := upstreamRequestInfo.NewRequestInfo(inner)
		if err != nil {
			return false
		}
		return upstreamLongRunning(inner, upInfo)
	}
}

// longRunningMarks are the path segments that can make a request
// long-running: the watch and proxy verbs, the streaming subresources, and
// kube-apiserver's profiling endpoints.
var longRunningMarks = []string{"/watch", "/proxy", "/exec", "/attach", "/portforward", "/log", "/debug/pprof"}

// mayBeLongRunning is a quick test that is true for every request the full
// classification finds long-running, so that most requests skip it: every
// filter of the chain asks, several times per request. A query that spells
// anything with percent-escapes gets the full classification.
func mayBeLongRunning(path, rawQuery string) bool {
	if strings.Contains(rawQuery, "watch") || strings.Contains(rawQuery, "%") {
		return true
	}
	for _, m := range longRunningMarks {
		if strings.Contains(path, m) {
			return true
		}
	}
	return false
}
