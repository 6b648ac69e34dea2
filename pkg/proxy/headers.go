package proxy

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// hopByHopHeaders (lower case) are meaningful for one connection only (RFC 9110 §7.6.1,
// plus the legacy ones Go's reverse proxy also drops).
var hopByHopHeaders = []string{
	"connection",
	"proxy-connection",
	"keep-alive",
	"proxy-authenticate",
	"proxy-authorization",
	"te",
	"trailer",
	"transfer-encoding",
	"upgrade",
}

// strippedPrefixes are lower-case header-name prefixes no client may send
// upstream: identity assertions kube-apiserver (or something in front of it)
// could believe, and forwarding information only Portcullis may write.
// "impersonate" without the dash also catches Impersonate_User and friends,
// which some proxies translate into the dashed form.
var strippedPrefixes = []string{
	"impersonate",
	"x-remote-",
	"x-forwarded-",
}

// strippedHeaders (lower case) are further client headers never forwarded: credentials
// (Portcullis sets its own), the RFC 7239 and X-Real-Ip forms of forwarding
// information, and cookies (kube-apiserver uses none; Portcullis's portal
// session must not leak upstream).
var strippedHeaders = []string{
	"authorization",
	"cookie",
	"forwarded",
	"x-real-ip",
}

// sanitizeHeaders deletes, in place, every header of a client request that
// must not reach the upstream API server: hop-by-hop headers and the headers
// the client names in Connection, credentials, impersonation and forwarding
// headers, whatever their case. For an upgrade request it keeps Upgrade and
// sets Connection to exactly "Upgrade", so the upgrade (and nothing the
// client listed beside it) reaches the upstream.
//
// Portcullis's own credential and impersonation headers are set after this,
// by setCredentials, so nothing a client sends can delete or replace them.
func sanitizeHeaders(h http.Header, upgrade bool) {
	var upgradeValues []string
	var named []string
	for name, values := range h {
		switch strings.ToLower(name) {
		case "upgrade":
			upgradeValues = append(upgradeValues, values...)
		case "connection":
			for _, v := range values {
				for _, n := range strings.Split(v, ",") {
					if n = strings.ToLower(textproto.TrimString(n)); n != "" {
						named = append(named, n)
					}
				}
			}
		}
	}
	for name := range h {
		if mustStrip(strings.ToLower(name), named) {
			delete(h, name)
		}
	}
	if upgrade && len(upgradeValues) > 0 {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = upgradeValues
	}
}

// mustStrip reports whether a client header (lower-cased name) must not be
// forwarded; named are the lower-cased names the client listed in Connection.
func mustStrip(lower string, named []string) bool {
	if slices.Contains(hopByHopHeaders, lower) || slices.Contains(strippedHeaders, lower) || slices.Contains(named, lower) {
		return true
	}
	for _, p := range strippedPrefixes {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	return false
}

// impersonatedUser is who a proxied request acts as upstream: the
// Impersonate-* headers Portcullis sends.
type impersonatedUser struct {
	User   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// setCredentials sets Portcullis's credential (authorization, the whole
// Authorization header value) and the impersonation headers for id. It must
// run after sanitizeHeaders. The header values share id's slices, which
// belong to the request being forwarded.
func setCredentials(h http.Header, authorization string, id *impersonatedUser) {
	h["Authorization"] = []string{authorization}
	h[authenticationv1.ImpersonateUserHeader] = []string{id.User}
	if len(id.Groups) > 0 {
		// One Impersonate-Group header per group.
		h[authenticationv1.ImpersonateGroupHeader] = id.Groups
	}
	if id.UID != "" {
		h[authenticationv1.ImpersonateUIDHeader] = []string{id.UID}
	}
	for k, vs := range id.Extra {
		if len(vs) > 0 {
			h[extraHeaderName(k)] = vs
		}
	}
}

// extraHeaderNames remembers the canonical Impersonate-Extra- header name of
// each extra key seen: keys come from Portcullis and the operator's claim
// mappings, a handful, and each proxied request carries several.
var extraHeaderNames sync.Map // string → string

// maxExtraHeaderNames bounds extraHeaderNames, should keys ever vary.
const maxExtraHeaderNames = 256

var extraHeaderNameCount atomic.Int32

func extraHeaderName(key string) string {
	if name, ok := extraHeaderNames.Load(key); ok {
		return name.(string)
	}
	name := http.CanonicalHeaderKey(authenticationv1.ImpersonateUserExtraHeaderPrefix + escapeExtraKey(key))
	if extraHeaderNameCount.Load() < maxExtraHeaderNames && extraHeaderNameCount.Add(1) <= maxExtraHeaderNames {
		extraHeaderNames.Store(key, name)
	}
	return name
}

// escapeExtraKey percent-encodes an extra key for an Impersonate-Extra-
// header name, the inverse of kube-apiserver's url.PathUnescape of the name:
// bytes that may appear in a header name are kept, except '%', and the rest
// (notably '/') are encoded. kube-apiserver lower-cases the name before
// unescaping, so keys are lower-cased here to round-trip exactly.
func escapeExtraKey(key string) string {
	key = strings.ToLower(key)
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if isTokenByte(c) && c != '%' {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// isTokenByte reports whether c may appear in an HTTP header name (RFC 9110 tchar).
func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// streamUpgrade reports whether h asks for an upgrade the Kubernetes API
// speaks, for exec, attach, port-forward and the proxy subresources: SPDY
// (kubectl's "SPDY/3.1") or WebSocket, named in Upgrade with Connection
// listing "upgrade". It does not allocate: every proxied request asks.
func streamUpgrade(h http.Header) bool {
	if !anyToken(h["Connection"], func(t string) bool { return strings.EqualFold(t, "upgrade") }) {
		return false
	}
	return anyToken(h["Upgrade"], func(t string) bool {
		return strings.EqualFold(t, "websocket") || (len(t) >= 5 && strings.EqualFold(t[:5], "spdy/"))
	})
}

// anyToken reports whether one of the comma-separated elements of values,
// trimmed, satisfies match.
func anyToken(values []string, match func(string) bool) bool {
	for _, v := range values {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if match(textproto.TrimString(t)) {
				return true
			}
		}
	}
	return false
}

// dropUpgrade removes an upgrade offer from a request's headers: Upgrade,
// and "upgrade" from Connection (the other names Connection lists stay, so
// sanitizeHeaders still drops those headers).
func dropUpgrade(h http.Header) {
	delete(h, "Upgrade")
	var kept []string
	for _, v := range h["Connection"] {
		for _, n := range strings.Split(v, ",") {
			if n = textproto.TrimString(n); n != "" && !strings.EqualFold(n, "upgrade") {
				kept = append(kept, n)
			}
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}
