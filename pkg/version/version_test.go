package version

import (
	"runtime/debug"
	"strings"
	"testing"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
	baseversion "k8s.io/component-base/version"
)

// unstamped is what component-base holds when no ldflag was given.
var unstamped = apimachineryversion.Info{GitVersion: "v0.0.0-master+$Format:%H$", GitCommit: "$Format:%H$", BuildDate: "1970-01-01T00:00:00Z"}

func settings(kv ...string) []debug.BuildSetting {
	var s []debug.BuildSetting
	for i := 0; i < len(kv); i += 2 {
		s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
	}
	return s
}

func TestVersion(t *testing.T) {
	rev := "6a45fb2abcdef0123456789abcdef0123456789a"
	for _, tc := range []struct {
		name      string
		info      apimachineryversion.Info
		bi        *debug.BuildInfo
		want      apimachineryversion.Info
		wantMajor string
	}{{
		name: "a release build's ldflags win, and the commit comes from the build info",
		info: apimachineryversion.Info{GitVersion: "v1.4.2", GitCommit: "$Format:%H$", BuildDate: "1970-01-01T00:00:00Z"},
		bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", rev, "vcs.modified", "false", "vcs.time", "2026-12-04T20:00:00Z")},
		want: apimachineryversion.Info{GitVersion: "v1.4.2", GitCommit: rev, GitTreeState: "clean", BuildDate: "2026-12-04T20:00:00Z", Major: "1", Minor: "4"},
	}, {
		name: "go install module@version reports the module version",
		info: unstamped,
		bi:   &debug.BuildInfo{Main: debug.Module{Version: "v1.5.0"}},
		want: apimachineryversion.Info{GitVersion: "v1.5.0", Major: "1", Minor: "5"},
	}, {
		name: "go build in a checkout reports the VCS pseudo-version Go computed",
		info: unstamped,
		bi:   &debug.BuildInfo{Main: debug.Module{Version: "v1.5.1-0.20261204200000-6a45fb2abcde+dirty"}, Settings: settings("vcs.revision", rev, "vcs.modified", "true")},
		want: apimachineryversion.Info{GitVersion: "v1.5.1-0.20261204200000-6a45fb2abcde+dirty", GitCommit: rev, GitTreeState: "dirty", Major: "1", Minor: "5"},
	}, {
		name: "a build with only a revision says unknown, with the revision",
		info: unstamped,
		bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", rev)},
		want: apimachineryversion.Info{GitVersion: "v0.0.0-unknown+6a45fb2abcde", GitCommit: rev},
	}, {
		name: "a build with nothing says unknown, never a placeholder",
		info: unstamped,
		bi:   nil,
		want: apimachineryversion.Info{GitVersion: "v0.0.0-unknown"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuild(tc.info, tc.bi); got != tc.want {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestThisBinaryShowsNoPlaceholder(t *testing.T) {
	if !strings.Contains(baseversion.Get().GitCommit, "$Format") {
		t.Skip("built with ldflags")
	}
	got := Get()
	for _, v := range []string{got.GitVersion, got.GitCommit, got.BuildDate} {
		if strings.Contains(v, "$Format") || strings.Contains(v, "master") || strings.HasPrefix(v, "1970") {
			t.Errorf("Get() shows a placeholder: %+v", got)
		}
	}
	if got.GoVersion == "" || got.Platform == "" {
		t.Errorf("Get() lost the Go version or platform: %+v", got)
	}
}
