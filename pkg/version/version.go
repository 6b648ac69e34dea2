// Package version says which Portcullis this is, for `version` commands and
// the server's /version endpoint.
//
// A release build stamps the version with -ldflags -X into
// k8s.io/component-base/version, as Kubernetes does (see the Makefile). A
// plain `go build` or `go install` stamps nothing there, and
// component-base then holds "git archive" placeholders such as
// "$Format:%H$": those are never shown. Go records the module version and
// the VCS revision in every binary instead (runtime/debug build info), and
// they are used for whatever was not stamped.
package version

import (
	"runtime/debug"
	"strings"

	utilversion "k8s.io/apimachinery/pkg/util/version"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	baseversion "k8s.io/component-base/version"
)

// unknownVersion is the version of a build that carries neither ldflags
// nor a module version (a `go build` outside a VCS checkout).
const unknownVersion = "v0.0.0-unknown"

// Get returns Portcullis's version information.
func Get() apimachineryversion.Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(baseversion.Get(), bi)
}

// fromBuild fills in what ldflags left as placeholders from the build info.
func fromBuild(info apimachineryversion.Info, bi *debug.BuildInfo) apimachineryversion.Info {
	settings := map[string]string{}
	if bi != nil {
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if placeholder(info.GitVersion) {
		info.GitVersion = unknownVersion
		if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.GitVersion = bi.Main.Version
		} else if rev := settings["vcs.revision"]; rev != "" {
			info.GitVersion = unknownVersion + "+" + short(rev)
		}
	}
	if placeholder(info.GitCommit) {
		info.GitCommit = settings["vcs.revision"]
	}
	if info.GitTreeState == "" {
		switch settings["vcs.modified"] {
		case "true":
			info.GitTreeState = "dirty"
		case "false":
			info.GitTreeState = "clean"
		}
	}
	if info.BuildDate == "1970-01-01T00:00:00Z" {
		// Unknown; the commit's time is the closest Go records.
		info.BuildDate = settings["vcs.time"]
	}
	info.Major, info.Minor = "", ""
	if v, err := utilversion.ParseSemantic(info.GitVersion); err == nil {
		info.Major, info.Minor = utilversion.Itoa(v.Major()), utilversion.Itoa(v.Minor())
	}
	return info
}

// placeholder reports a component-base value that no ldflag replaced.
func placeholder(s string) bool {
	return s == "" || strings.Contains(s, "$Format") || strings.HasPrefix(s, "v0.0.0-master")
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
