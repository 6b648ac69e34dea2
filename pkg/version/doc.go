// Package version tells which code a Portcullis binary was built from.
//
// The release build (make build, make release, the Dockerfile) sets
// k8s.io/component-base/version's variables with -ldflags, as Kubernetes
// does. A plain `go build` or `go install` sets none of them, and
// component-base would then report its placeholder
// "v0.0.0-master+$Format:%H$"; Get fills what -ldflags left unset from what
// the Go toolchain recorded in the binary (runtime/debug.ReadBuildInfo): the
// module's version (`go install ...@v1.2.3`, or the pseudo-version the go
// command derives from the checkout), else the VCS revision.
//
// It must never report a "$Format" placeholder.
package version
