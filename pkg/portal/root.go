package portal

import (
	"net/http"
	"strings"
)

// WithBrowserRootRedirect sends a browser that opens Portcullis's bare
// address ("/") to the portal (303 to /portal/); every other request goes to
// next unchanged.
//
// It runs before authentication and authorization (a browser carries no
// credential, and "/" is not public: the generic server's index of paths is
// for authorized API clients, as in kube-apiserver), so it only takes a
// request that is plainly a person's browser: GET or HEAD of exactly "/",
// asking for HTML, with no Authorization header. API clients (kubectl,
// client-go, the aggregator) ask for JSON, send credentials, or never ask
// for "/", and get what kube-apiserver would answer; discovery, health and
// every other path are untouched.
func WithBrowserRootRedirect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isBrowserRootRequest(r) {
			h := w.Header()
			// The answer depends on these; caches must not serve it to an API client.
			h.Add("Vary", "Accept")
			h.Add("Vary", "Authorization")
			h.Set("Cache-Control", "no-store")
			http.Redirect(w, r, "/portal/", http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isBrowserRootRequest(r *http.Request) bool {
	if r.URL.Path != "/" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	if r.Header.Get("Authorization") != "" {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return true
			}
		}
	}
	return false
}
