package portal

import (
	"net/http"
	"strconv"
	"time"

	"portcullis.dev/portcullis/pkg/clientlimit"
)

// Anyone may start a login or ask for a device code, and each keeps an
// entry in the login-state store until it expires (10 minutes; a device
// code's two entries up to 20). Without a limit one client could fill the
// store (10,000 entries in memory) in a second and lock everyone out of
// login for 10 minutes. So each client (its address; IPv6 by /64) has a
// bucket, under a global one far larger:
//
//   - DefaultStartLimits: a client may start 20 logins at once, then one
//     every 6 seconds; all clients together 500 at once, then 5 a second.
//     A device code costs deviceCodeCost (its entries live up to twice as
//     long as a login's). At that global rate the entries alive at any
//     time stay under loginstate.DefaultMaxInMemory, so the store never
//     fills: a flood from many addresses is answered 429 while it lasts,
//     and leaves nothing behind.
//   - DefaultUserCodeLimits: wrong user codes on the device page, 10 at once
//     per client, then one every 2 seconds; all clients together 300, then
//     5 a second. One client's guessing no longer turns every other user's
//     right code into a 429; guessing a live code stays hopeless (each try
//     hits one of at most 10,000 live codes among 20^8).
//   - maxUserCodeEntries: a right user code starts at most that many logins
//     at the IdP; past it the code is refused, so a code seen over
//     someone's shoulder cannot be used again and again.
var (
	DefaultStartLimits = clientlimit.Limits{
		PerClient: clientlimit.Rate{Every: 6 * time.Second, Burst: 20},
		Global:    clientlimit.Rate{Every: 200 * time.Millisecond, Burst: 500},
	}
	DefaultUserCodeLimits = clientlimit.Limits{
		PerClient: clientlimit.Rate{Every: 2 * time.Second, Burst: 10},
		Global:    clientlimit.Rate{Every: 200 * time.Millisecond, Burst: 300},
	}
)

const (
	deviceCodeCost     = 3
	maxUserCodeEntries = 5
)

// clientKey is the rate-limit bucket of the client that sent r.
func clientKey(r *http.Request) string { return clientlimit.Key(clientAddress(r)) }

// allowStart takes n tokens of r's client for a login start or device code;
// the start gives them back (Taken.Refund) when it left nothing behind.
func (p *Portal) allowStart(r *http.Request, n int) (clientlimit.Taken, bool) {
	return p.starts.TakeN(clientKey(r), p.now(), n)
}

// retryAfter sets Retry-After to l's refill time.
func retryAfter(w http.ResponseWriter, l *clientlimit.Limiter) {
	w.Header().Set("Retry-After", strconv.Itoa(int((l.RetryAfter()+time.Second-1)/time.Second)))
}

// tooManyStarts answers a client over its login-start limit with a page.
func (p *Portal) tooManyStarts(w http.ResponseWriter, r *http.Request, flow string) {
	p.metrics.logins.WithLabelValues(flow, outcomeThrottled).Inc()
	auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeThrottled, "portcullis.dev/flow", flow)
	retryAfter(w, p.starts)
	p.renderError(w, r, http.StatusTooManyRequests, "Too many logins started",
		"Too many logins were started from your address. Wait a minute and try again.", "")
}
