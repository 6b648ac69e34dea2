package framework

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
)

// SkippedReportEnv names a file to which Main appends the banner of tests
// skipped for a missing component. `go test ./...` shows nothing of a
// passing package's output, so the Makefile's e2e target sets it and prints
// the file after the run.
const SkippedReportEnv = "PORTCULLIS_E2E_SKIPPED_REPORT"

var (
	missingMu sync.Mutex
	missing   = map[string]string{} // test name -> component and how to install it
)

// SkipMissing skips t because component is not installed on this machine,
// and records it: Main ends the run with a banner listing every test skipped
// so, with install, the command that installs the component.
func SkipMissing(t testing.TB, component, install, consequence string) {
	t.Helper()
	missingMu.Lock()
	missing[t.Name()] = fmt.Sprintf("%s is not installed (%s): %s", component, install, consequence)
	missingMu.Unlock()
	t.Skipf("SKIPPED: %s is not installed (%s); %s", component, install, consequence)
}

// reportMissing writes the banner of tests skipped for a missing component,
// if any, to w.
func reportMissing(w io.Writer) {
	missingMu.Lock()
	defer missingMu.Unlock()
	if len(missing) == 0 {
		return
	}
	names := make([]string, 0, len(missing))
	for n := range missing {
		names = append(names, n)
	}
	sort.Strings(names)
	rule := strings.Repeat("!", 78)
	fmt.Fprintf(w, "\n%s\n!!! %d end-to-end test(s) SKIPPED because a component is missing:\n", rule, len(names))
	for _, n := range names {
		fmt.Fprintf(w, "!!!   %s: %s\n", n, missing[n])
	}
	fmt.Fprintf(w, "!!! Install it and run them again (see README.md).\n%s\n\n", rule)
}

// reportMissingEverywhere prints the banner on the test's output and, when
// SkippedReportEnv names a file, appends it there.
func reportMissingEverywhere() {
	reportMissing(os.Stdout)
	path := os.Getenv(SkippedReportEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "writing the skipped-tests report: %v\n", err)
		return
	}
	defer f.Close()
	reportMissing(f)
}
