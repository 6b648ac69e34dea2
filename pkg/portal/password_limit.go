package portal

import (
	"time"

	"portcullis.dev/portcullis/pkg/clientlimit"
)

// Rate limits of password logins, per replica. A person who mistypes gets
// ten tries at once and one more every six seconds; a client address (a
// NAT of many people) fifty at once and two a second. Beyond that, 429.
var (
	passwordUserLimit   = clientlimit.Limits{PerClient: clientlimit.Rate{Every: 6 * time.Second, Burst: 10}}
	passwordClientLimit = clientlimit.Limits{PerClient: clientlimit.Rate{Every: 500 * time.Millisecond, Burst: 50}}
)

// passwordLimits are the token buckets of password logins: one per user
// name and one per client address (clientlimit bounds their number).
type passwordLimits struct {
	users, clients *clientlimit.Limiter
}

func newPasswordLimits() *passwordLimits {
	return &passwordLimits{users: clientlimit.New(passwordUserLimit), clients: clientlimit.New(passwordClientLimit)}
}
