package portal

// failure is a login or API failure: an HTTP status, an outcome for metrics
// and audit, and words for people. Messages never contain a secret.
type failure struct {
	status  int
	outcome string
	title   string
	message string
	// oauth is the RFC 6749 error code for API clients.
	oauth string
}

func (f *failure) Error() string { return f.title + ": " + f.message }

func fail(status int, outcome, oauthCode, title, message string) *failure {
	return &failure{status: status, outcome: outcome, oauth: oauthCode, title: title, message: message}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func printable(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return ' '
	}
	return r
}
