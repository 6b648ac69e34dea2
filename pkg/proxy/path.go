package proxy

import (
	"fmt"
	"net/url"
	"strings"
)

// PathPrefix is where the proxy is mounted: /clusters/<name>/<upstream path>.
const PathPrefix = "/clusters/"

// route is a request path split into its cluster and the path to send upstream.
type route struct {
	cluster string
	// path and rawPath are the upstream path, decoded and (when the client
	// escaped something) as the client escaped it.
	path, rawPath string
}

// splitPath splits a proxied request URL. It refuses paths whose meaning
// could differ between Portcullis (which authenticated the request for the
// first segment after /clusters/) and a component that normalizes paths:
// dot segments anywhere, and any escaping in the cluster segment, such as
// /clusters/a%2F..%2Fb. The cluster segment is taken from the decoded path,
// as the authenticator takes it.
func splitPath(u *url.URL) (route, error) {
	rest, ok := strings.CutPrefix(u.Path, PathPrefix)
	if !ok {
		return route{}, fmt.Errorf("the path does not start with %s", PathPrefix)
	}
	name, tail, hasTail := strings.Cut(rest, "/")
	if name == "" {
		return route{}, fmt.Errorf("the path names no cluster: use %s<cluster>/", PathPrefix)
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return route{}, fmt.Errorf("the path must not contain %q segments", seg)
		}
	}
	escRest, ok := strings.CutPrefix(u.EscapedPath(), PathPrefix)
	if !ok {
		return route{}, fmt.Errorf("the path does not start with %s", PathPrefix)
	}
	escName, escTail, _ := strings.Cut(escRest, "/")
	if escName != name {
		return route{}, fmt.Errorf("the cluster name in the path must not be escaped")
	}
	r := route{cluster: name, path: "/"}
	if hasTail {
		r.path = "/" + tail
		if u.RawPath != "" {
			r.rawPath = "/" + escTail
		}
	}
	return r, nil
}

// upstreamURL joins the upstream server's base URL and the route's path,
// keeping the client's escaping, and adds the query.
func upstreamURL(base *url.URL, r route, rawQuery string) *url.URL {
	u := *base
	basePath := strings.TrimSuffix(base.Path, "/")
	u.Path = basePath + r.path
	if r.rawPath != "" || base.RawPath != "" {
		baseRaw := strings.TrimSuffix(base.EscapedPath(), "/")
		tailRaw := r.rawPath
		if tailRaw == "" {
			tailRaw = (&url.URL{Path: r.path}).EscapedPath()
		}
		u.RawPath = baseRaw + tailRaw
	} else {
		u.RawPath = ""
	}
	u.RawQuery = rawQuery
	u.Fragment, u.RawFragment = "", ""
	return &u
}
