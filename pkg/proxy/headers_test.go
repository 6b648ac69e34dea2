package proxy

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestSanitizeHeaders(t *testing.T) {
	tests := []struct {
		name    string
		in      http.Header // raw keys, as a client could spell them
		upgrade bool
		want    http.Header
	}{
		{
			name: "ordinary headers pass",
			in:   http.Header{"Accept": {"application/json"}, "User-Agent": {"kubectl"}, "Content-Type": {"application/yaml"}},
			want: http.Header{"Accept": {"application/json"}, "User-Agent": {"kubectl"}, "Content-Type": {"application/yaml"}},
		},
		{
			name: "every Authorization header is dropped",
			in:   http.Header{"Authorization": {"Bearer a", "Bearer b"}, "authorization": {"Basic x"}, "Accept": {"*/*"}},
			want: http.Header{"Accept": {"*/*"}},
		},
		{
			name: "impersonation headers in any case are dropped",
			in: http.Header{
				"Impersonate-User":                    {"admin"},
				"impersonate-group":                   {"system:masters"},
				"IMPERSONATE-UID":                     {"0"},
				"Impersonate-Extra-Scopes":            {"all"},
				"Impersonate-Extra-Portcullis.dev%2F": {"x"},
				"Impersonate_User":                    {"admin"},
				"Impersonateuser":                     {"admin"},
				"Accept":                              {"*/*"},
			},
			want: http.Header{"Accept": {"*/*"}},
		},
		{
			name: "front-proxy and forwarding headers are dropped",
			in: http.Header{
				"X-Remote-User":                  {"admin"},
				"X-Remote-Group":                 {"system:masters"},
				"x-remote-extra-scopes":          {"x"},
				"X-Forwarded-For":                {"1.2.3.4"},
				"X-Forwarded-Host":               {"evil"},
				"X-Forwarded-Proto":              {"http"},
				"Forwarded":                      {"for=1.2.3.4"},
				"X-Real-Ip":                      {"1.2.3.4"},
				"Cookie":                         {"portcullis-session=secret"},
				"Proxy-Authorization":            {"Basic x"},
				"X-Remote-Uid":                   {"0"},
				"X-Kubernetes-Pf-Flowschema-Uid": {"kept"},
			},
			want: http.Header{"X-Kubernetes-Pf-Flowschema-Uid": {"kept"}},
		},
		{
			name: "hop-by-hop headers and those named in Connection are dropped",
			in: http.Header{
				"Connection":        {"keep-alive, X-Secret", "Accept-Language"},
				"Keep-Alive":        {"timeout=5"},
				"Te":                {"trailers"},
				"Trailer":           {"X"},
				"Transfer-Encoding": {"chunked"},
				"Proxy-Connection":  {"keep-alive"},
				"Upgrade":           {"h2c"},
				"X-Secret":          {"1"},
				"Accept-Language":   {"en"},
				"Accept":            {"*/*"},
			},
			want: http.Header{"Accept": {"*/*"}},
		},
		{
			name: "an upgrade keeps exactly Connection: Upgrade and its Upgrade header",
			in: http.Header{
				"Connection":                      {"Upgrade, X-Stream-Protocol-Version-Bogus, Authorization"},
				"Upgrade":                         {"SPDY/3.1"},
				"X-Stream-Protocol-Version":       {"v5.channel.k8s.io"},
				"X-Stream-Protocol-Version-Bogus": {"x"},
				"Authorization":                   {"Bearer user"},
			},
			upgrade: true,
			want: http.Header{
				"Connection":                {"Upgrade"},
				"Upgrade":                   {"SPDY/3.1"},
				"X-Stream-Protocol-Version": {"v5.channel.k8s.io"},
			},
		},
		{
			name: "a WebSocket upgrade keeps its Sec-WebSocket headers",
			in: http.Header{
				"Connection":             {"Upgrade"},
				"Upgrade":                {"websocket"},
				"Sec-Websocket-Key":      {"k"},
				"Sec-Websocket-Version":  {"13"},
				"Sec-Websocket-Protocol": {"v5.channel.k8s.io"},
				"Impersonate-User":       {"admin"},
			},
			upgrade: true,
			want: http.Header{
				"Connection":             {"Upgrade"},
				"Upgrade":                {"websocket"},
				"Sec-Websocket-Key":      {"k"},
				"Sec-Websocket-Version":  {"13"},
				"Sec-Websocket-Protocol": {"v5.channel.k8s.io"},
			},
		},
		{
			name: "Upgrade on a request that is no upgrade is dropped",
			in:   http.Header{"Upgrade": {"websocket"}, "Accept": {"*/*"}},
			want: http.Header{"Accept": {"*/*"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			sanitizeHeaders(h, tt.upgrade)
			if !reflect.DeepEqual(h, tt.want) {
				t.Errorf("sanitizeHeaders(%v) =\n  %v\nwant\n  %v", tt.in, h, tt.want)
			}
		})
	}
}

func TestCredentialsSurviveAClientNamingThemInConnection(t *testing.T) {
	// The order the transport applies: sanitize, then set credentials. A
	// later hop-by-hop pass (Go's reverse proxy does one) sees no
	// Connection header left that could name them.
	h := http.Header{"Connection": {"Authorization, Impersonate-User, Impersonate-Group"}, "Authorization": {"Bearer user"}}
	sanitizeHeaders(h, false)
	setCredentials(h, "Bearer sa-token", &impersonatedUser{User: "alice", Groups: []string{"devs"}})
	if got := h.Values("Connection"); len(got) != 0 {
		t.Fatalf("Connection survived sanitizing: %q", got)
	}
	if got := h.Values("Authorization"); !reflect.DeepEqual(got, []string{"Bearer sa-token"}) {
		t.Errorf("Authorization = %q, want only Portcullis's token", got)
	}
	if got := h.Get("Impersonate-User"); got != "alice" {
		t.Errorf("Impersonate-User = %q, want alice", got)
	}
}

func TestSetCredentials(t *testing.T) {
	h := http.Header{}
	setCredentials(h, "Bearer sa-token", &impersonatedUser{
		User:   "alice@example.com",
		UID:    "u-1",
		Groups: []string{"devs", "ops"},
		Extra: map[string][]string{
			"portcullis.dev/idp": {"corp"},
			"scopes":             {"a", "b"},
			"Weird Key/ünï":      {"v"},
		},
	})
	want := http.Header{
		"Authorization":                                 {"Bearer sa-token"},
		"Impersonate-User":                              {"alice@example.com"},
		"Impersonate-Group":                             {"devs", "ops"},
		"Impersonate-Uid":                               {"u-1"},
		"Impersonate-Extra-Portcullis.dev%2fidp":        {"corp"},
		"Impersonate-Extra-Scopes":                      {"a", "b"},
		"Impersonate-Extra-Weird%20key%2f%c3%bcn%c3%af": {"v"},
	}
	// Header names are compared canonically, as they travel.
	got := http.Header{}
	for k, v := range h {
		got[http.CanonicalHeaderKey(k)] = v
	}
	canonWant := http.Header{}
	for k, v := range want {
		canonWant[http.CanonicalHeaderKey(k)] = v
	}
	if !reflect.DeepEqual(got, canonWant) {
		t.Errorf("setCredentials =\n  %v\nwant\n  %v", got, canonWant)
	}
}

func TestEscapeExtraKeyRoundTripsThroughKubeAPIServerDecoding(t *testing.T) {
	for _, key := range []string{"portcullis.dev/idp", "scopes", "a b/c%d", "example.org/ünï", "k8s.io/x_y~z"} {
		t.Run(key, func(t *testing.T) {
			name := "Impersonate-Extra-" + escapeExtraKey(key)
			// What kube-apiserver does with the (canonicalized) header name.
			canon := http.CanonicalHeaderKey(name)
			decoded, err := url.PathUnescape(strings.ToLower(canon[len("Impersonate-Extra-"):]))
			if err != nil {
				t.Fatalf("kube-apiserver could not unescape %q: %v", canon, err)
			}
			if decoded != strings.ToLower(key) {
				t.Errorf("key %q travels as %q and decodes to %q", key, canon, decoded)
			}
		})
	}
}
