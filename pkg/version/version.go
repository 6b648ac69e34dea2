package version

import (
	"runtime/debug"
	"strings"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/component-base/version"
)

// unset marks a component-base variable that -ldflags did not set: its
// defaults are `git archive` placeholders.
const unset = "$Format:"

// placeholderBuildDate is component-base's default build date.
const placeholderBuildDate = "1970-01-01T00:00:00Z"

// Get returns component-base's version information, with what -ldflags did
// not set taken from the binary's build information.
func Get() apimachineryversion.Info {
	info, _ := debug.ReadBuildInfo()
	return complete(version.Get(), info)
}

// String is Get().GitVersion: what `portcullis version` and
// `portcullis-server version` print.
func String() string { return Get().GitVersion }

// complete fills v's unset fields from bi (which may be nil).
func complete(v apimachineryversion.Info, bi *debug.BuildInfo) apimachineryversion.Info {
	var revision, vcsTime string
	modified := false
	mainVersion := ""
	if bi != nil {
		mainVersion = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if strings.Contains(v.GitVersion, unset) || v.GitVersion == "" {
		switch {
		case mainVersion != "" && mainVersion != "(devel)":
			// `go install portcullis.dev/portcullis/cmd/...@v1.2.3`, or the
			// pseudo-version (with +dirty) go build stamps from the checkout.
			v.GitVersion = mainVersion
		case revision != "":
			v.GitVersion = "v0.0.0-" + short(revision)
			if modified {
				v.GitVersion += "+dirty"
			}
		default:
			v.GitVersion = "v0.0.0-unknown"
		}
	}
	if strings.Contains(v.GitCommit, unset) || v.GitCommit == "" {
		v.GitCommit = revision
	}
	if v.GitTreeState == "" && revision != "" {
		v.GitTreeState = "clean"
		if modified {
			v.GitTreeState = "dirty"
		}
	}
	if v.BuildDate == placeholderBuildDate && vcsTime != "" {
		// The commit's time, not the build's: builds stay reproducible.
		v.BuildDate = vcsTime
	}
	return v
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
