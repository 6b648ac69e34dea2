package framework

import (
	"strings"
	"testing"
)

func TestSkipMissingReport(t *testing.T) {
	missingMu.Lock()
	saved := missing
	missing = map[string]string{"TestB": "b is not installed (apt-get install b): nothing checked", "TestA": "a is not installed (x): y"}
	missingMu.Unlock()
	defer func() { missingMu.Lock(); missing = saved; missingMu.Unlock() }()
	var b strings.Builder
	reportMissing(&b)
	out := b.String()
	if !strings.Contains(out, "2 end-to-end test(s) SKIPPED") || strings.Index(out, "TestA") > strings.Index(out, "TestB") || !strings.Contains(out, "apt-get install b") {
		t.Errorf("report:\n%s", out)
	}
}
