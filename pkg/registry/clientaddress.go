package registry

import (
	"context"
	"net"
	"net/http"
)

type clientAddressKey struct{}

// WithClientAddress records the address of the peer that sent the request
// (its TCP connection, never a header a client could forge) for the
// per-client rate limit of TokenCredentialRequests. Wrap the API handler
// with it, inside the generic handler chain.
func WithClientAddress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		host, _, err := net.SplitHostPort(req.RemoteAddr)
		if err != nil {
			host = req.RemoteAddr
		}
		if host != "" {
			req = req.WithContext(context.WithValue(req.Context(), clientAddressKey{}, host))
		}
		next.ServeHTTP(w, req)
	})
}

// ClientAddressFrom returns the peer address WithClientAddress recorded.
func ClientAddressFrom(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(clientAddressKey{}).(string)
	return a, ok
}
