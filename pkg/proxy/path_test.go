package proxy

import (
	"net/url"
	"testing"
)

func TestSplitPath(t *testing.T) {
	tests := []struct {
		name     string
		rawURL   string
		want     route
		wantFail bool
	}{
		{name: "a resource path", rawURL: "/clusters/c1/api/v1/namespaces/default/pods", want: route{cluster: "c1", path: "/api/v1/namespaces/default/pods"}},
		{name: "the cluster root", rawURL: "/clusters/c1", want: route{cluster: "c1", path: "/"}},
		{name: "the cluster root with a slash", rawURL: "/clusters/c1/", want: route{cluster: "c1", path: "/"}},
		{name: "escaping after the cluster is kept", rawURL: "/clusters/c1/api/v1/namespaces/ns/services/https:web:443/proxy/a%2Fb", want: route{cluster: "c1", path: "/api/v1/namespaces/ns/services/https:web:443/proxy/a/b", rawPath: "/api/v1/namespaces/ns/services/https:web:443/proxy/a%2Fb"}},
		{name: "no cluster", rawURL: "/clusters/", wantFail: true},
		{name: "an empty cluster segment", rawURL: "/clusters//api", wantFail: true},
		{name: "a dot-dot segment to another cluster", rawURL: "/clusters/a/../b/api", wantFail: true},
		{name: "a dot-dot segment further down", rawURL: "/clusters/a/api/../../b/api", wantFail: true},
		{name: "a dot segment", rawURL: "/clusters/a/./api", wantFail: true},
		{name: "an encoded dot-dot", rawURL: "/clusters/a/%2e%2e/b/api", wantFail: true},
		{name: "an encoded slash in the cluster segment", rawURL: "/clusters/a%2Fb/api", wantFail: true},
		{name: "an encoded slash and dot-dot in the cluster segment", rawURL: "/clusters/a%2F..%2Fb/api", wantFail: true},
		{name: "an escaped cluster name", rawURL: "/clusters/%61/api", wantFail: true},
		{name: "another prefix", rawURL: "/clustersx/a/api", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.rawURL)
			if err != nil {
				t.Fatal(err)
			}
			got, err := splitPath(u)
			if tt.wantFail {
				if err == nil {
					t.Fatalf("splitPath(%q) = %+v, want an error", tt.rawURL, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("splitPath(%q): %v", tt.rawURL, err)
			}
			if got != tt.want {
				t.Errorf("splitPath(%q) = %+v, want %+v", tt.rawURL, got, tt.want)
			}
		})
	}
}

func TestUpstreamURL(t *testing.T) {
	tests := []struct {
		name, base, raw, query, want string
	}{
		{name: "plain", base: "https://10.0.0.1:6443", raw: "/clusters/c/api/v1/pods", query: "watch=1", want: "https://10.0.0.1:6443/api/v1/pods?watch=1"},
		{name: "base with a path", base: "https://lb.example.com/k8s/c1/", raw: "/clusters/c/apis/apps/v1", want: "https://lb.example.com/k8s/c1/apis/apps/v1"},
		{name: "escaping kept", base: "https://h", raw: "/clusters/c/api/v1/namespaces/n/services/s/proxy/a%2Fb", want: "https://h/api/v1/namespaces/n/services/s/proxy/a%2Fb"},
		{name: "root", base: "https://h", raw: "/clusters/c", want: "https://h/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, _ := url.Parse(tt.base)
			u, _ := url.Parse(tt.raw)
			rt, err := splitPath(u)
			if err != nil {
				t.Fatal(err)
			}
			if got := upstreamURL(base, rt, tt.query).String(); got != tt.want {
				t.Errorf("upstreamURL = %q, want %q", got, tt.want)
			}
		})
	}
}
