package version

import (
	"runtime/debug"
	"strings"
	"testing"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
)

func TestComplete(t *testing.T) {
	placeholder := apimachineryversion.Info{GitVersion: "v0.0.0-master+$Format:%H$", GitCommit: "$Format:%H$", BuildDate: placeholderBuildDate}
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "6a45fb2abcdef0123456789abcdef0123456789a"},
			{Key: "vcs.time", Value: "2026-12-04T20:00:00Z"},
			{Key: "vcs.modified", Value: modified},
		}
	}
	tests := []struct {
		name                         string
		in                           apimachineryversion.Info
		bi                           *debug.BuildInfo
		version, commit, state, date string
	}{
		{
			name:    "ldflags win over the build information",
			in:      apimachineryversion.Info{GitVersion: "v1.2.3", GitCommit: "abc", GitTreeState: "clean", BuildDate: "2026-01-01T00:00:00Z"},
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}, Settings: vcs("false")},
			version: "v1.2.3", commit: "abc", state: "clean", date: "2026-01-01T00:00:00Z",
		},
		{
			name:    "go install of a tagged module reports the module version",
			in:      placeholder,
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}},
			version: "v1.4.0", date: placeholderBuildDate,
		},
		{
			name:    "go build in a checkout reports the pseudo-version and the revision",
			in:      placeholder,
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261204200000-6a45fb2abcde+dirty"}, Settings: vcs("true")},
			version: "v0.0.0-20261204200000-6a45fb2abcde+dirty", commit: "6a45fb2abcdef0123456789abcdef0123456789a", state: "dirty", date: "2026-12-04T20:00:00Z",
		},
		{
			name:    "a devel build with VCS information reports the revision",
			in:      placeholder,
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")},
			version: "v0.0.0-6a45fb2abcde", commit: "6a45fb2abcdef0123456789abcdef0123456789a", state: "clean", date: "2026-12-04T20:00:00Z",
		},
		{
			name:    "a devel build of a modified tree says so",
			in:      placeholder,
			bi:      &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")},
			version: "v0.0.0-6a45fb2abcde+dirty", commit: "6a45fb2abcdef0123456789abcdef0123456789a", state: "dirty", date: "2026-12-04T20:00:00Z",
		},
		{
			name:    "without any build information the placeholder is still not reported",
			in:      placeholder,
			version: "v0.0.0-unknown", date: placeholderBuildDate,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := complete(tt.in, tt.bi)
			if got.GitVersion != tt.version || got.GitCommit != tt.commit || got.GitTreeState != tt.state || got.BuildDate != tt.date {
				t.Errorf("complete() = %q %q %q %q, want %q %q %q %q", got.GitVersion, got.GitCommit, got.GitTreeState, got.BuildDate, tt.version, tt.commit, tt.state, tt.date)
			}
		})
	}
}

// The test binary itself is a plain `go test` build: no -ldflags.
func TestGetNeverReportsAPlaceholder(t *testing.T) {
	v := Get()
	for _, s := range []string{v.GitVersion, v.GitCommit} {
		if strings.Contains(s, "$Format") {
			t.Errorf("Get() = %+v: a placeholder", v)
		}
	}
	if v.GitVersion == "" {
		t.Errorf("Get() has no GitVersion")
	}
}
