package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// The CLI opens the login page with $PORTCULLIS_BROWSER (a command that gets
// the URL as its last argument). In these tests that command is this very
// test binary with browserHelperEnv set: it then plays the person at the
// browser (through Dex's login form, back to Portcullis, on to the CLI's
// loopback listener) and exits before any test runs.
const (
	browserHelperEnv = "PORTCULLIS_E2E_BROWSER_HELPER"
	// browserCAsEnv lists the PEM CA files the helper trusts (comma-separated).
	browserCAsEnv = "PORTCULLIS_E2E_BROWSER_CAS"
	// browserUserEnv is "email:password" of the Dex user to log in as.
	browserUserEnv = "PORTCULLIS_E2E_BROWSER_USER"
	// browserLogEnv is a file the helper appends one line to per login.
	browserLogEnv = "PORTCULLIS_E2E_BROWSER_LOG"
)

func init() {
	if os.Getenv(browserHelperEnv) != "1" {
		return
	}
	os.Exit(runBrowserHelper(os.Args[len(os.Args)-1]))
}

func runBrowserHelper(loginURL string) int {
	logLine := func(format string, args ...any) {
		f, err := os.OpenFile(os.Getenv(browserLogEnv), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintf(f, format+"\n", args...)
			f.Close()
		}
		fmt.Fprintf(os.Stderr, "browser helper: "+format+"\n", args...)
	}
	email, password, _ := strings.Cut(os.Getenv(browserUserEnv), ":")
	b, err := framework.NewBrowser(strings.Split(os.Getenv(browserCAsEnv), ",")...)
	if err != nil {
		logLine("error %v", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := b.DexLogin(ctx, nil, loginURL, email, password)
	if err != nil {
		logLine("error %v", err)
		return 1
	}
	if p.Status != 200 || !strings.Contains(string(p.Body), "Login complete") {
		logLine("error: ended on %s (%d): %.300s", p.URL, p.Status, p.Body)
		return 1
	}
	logLine("login %s", email)
	return 0
}
