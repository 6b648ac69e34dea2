package proxy

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSplitPath feeds the proxy's path classification arbitrary request
// targets, parsed as net/http parses them. It must never panic, and what it
// accepts must mean the same thing to Portcullis and to the upstream server:
//   - the cluster is the first segment of the decoded path after
//     /clusters/, as the authenticator takes it (so a token is checked for
//     the cluster the request goes to);
//   - the upstream path has no dot segment, decoded or escaped, and stays
//     below the upstream server's base path once joined, re-encoded and
//     parsed again (so no normalization by a server or proxy on the way
//     moves it elsewhere);
//   - the client's escaping is kept: the escaped upstream path decodes to
//     the decoded one.
//
// Long run (make fuzz runs every target):
//
//	go test ./pkg/proxy -run '^$' -fuzz FuzzSplitPath -fuzztime 60s
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{
		"/clusters/c1/api/v1/namespaces/default/pods",
		"/clusters/c1",
		"/clusters/c1/",
		"/clusters/c1/api/v1/namespaces/ns/services/https:web:443/proxy/a%2Fb",
		"/clusters/c1/api/v1/namespaces/default/pods?watch=1&resourceVersion=0",
		"/clusters/",
		"/clusters//api",
		"/clusters/a/../b/api",
		"/clusters/a/api/../../b/api",
		"/clusters/a/./api",
		"/clusters/a/%2e%2e/b/api",
		"/clusters/a/%2E%2e/%2e/api",
		"/clusters/a%2Fb/api",
		"/clusters/a%2F..%2Fb/api",
		"/clusters/%61/api",
		"/clustersx/a/api",
		"/clusters/a/api%2F..%2F..%2Fb",
		"/clusters/a/api/v1/namespaces/%2e%2e",
		"/clusters/a//api//v1",
		"/clusters/a/api;/v1",
		"/clusters/a/api/v1/%00",
		"/clusters/a/api/v1/%zz",
		"/clusters/a/\\..\\b",
		"/clusters/a/api#frag",
		"//clusters/a/api",
		"/clusters/a/api?x=%2e%2e%2f",
		"*",
		"http://evil.example.com/clusters/a/api",
	} {
		f.Add(s)
	}
	base, err := url.Parse("https://lb.example.com/k8s/c1/")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 before any handler
		}
		r, err := splitPath(u)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("a refusal without a message")
			}
			return
		}
		rest, ok := strings.CutPrefix(u.Path, PathPrefix)
		if !ok {
			t.Fatalf("accepted %q, which is not below %s", target, PathPrefix)
		}
		first, _, _ := strings.Cut(rest, "/")
		if r.cluster == "" || r.cluster != first || strings.Contains(r.cluster, "/") {
			t.Fatalf("%q: cluster %q, but the authenticator takes %q", target, r.cluster, first)
		}
		if !strings.HasPrefix(r.path, "/") {
			t.Fatalf("%q: upstream path %q does not start with /", target, r.path)
		}
		if hasDotSegment(r.path, false) {
			t.Fatalf("%q: upstream path %q has a dot segment", target, r.path)
		}
		if r.rawPath != "" {
			dec, err := url.PathUnescape(r.rawPath)
			if err != nil || dec != r.path {
				t.Fatalf("%q: escaped upstream path %q decodes to %q (%v), not %q", target, r.rawPath, dec, err, r.path)
			}
		}
		up := upstreamURL(base, r, u.RawQuery)
		if up.Host != base.Host || up.Scheme != base.Scheme || up.User != nil {
			t.Fatalf("%q: upstream URL %s leaves the upstream server", target, up)
		}
		again, err := url.Parse(up.String())
		if err != nil {
			t.Fatalf("%q: the upstream URL %q does not parse: %v", target, up.String(), err)
		}
		if again.Host != base.Host || !strings.HasPrefix(again.Path, "/k8s/c1/") || hasDotSegment(again.Path, false) || hasDotSegment(again.EscapedPath(), true) {
			t.Fatalf("%q: the upstream URL %q leaves the base path (%q)", target, up.String(), again.Path)
		}
		if again.Path != "/k8s/c1"+r.path {
			t.Fatalf("%q: the upstream URL %q carries path %q, want %q", target, up.String(), again.Path, "/k8s/c1"+r.path)
		}
	})
}

// hasDotSegment reports a "." or ".." segment of a path; of an escaped
// path (escaped), once decoded as the upstream server decodes it.
func hasDotSegment(p string, escaped bool) bool {
	for _, seg := range strings.Split(p, "/") {
		if dec, err := url.PathUnescape(seg); escaped && err == nil {
			seg = dec
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
