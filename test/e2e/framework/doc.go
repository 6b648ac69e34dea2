// Package framework runs real components on loopback for Portcullis'
// end-to-end tests: etcd, kube-apiserver, Dex, the portcullis-server binary and
// the real kubectl from PATH.
//
// Every component is started for one test (testing.TB) and stopped by that
// test's cleanup: its process group is terminated and waited for. Each
// component writes stdout and stderr to a log file in the test's work
// directory (see WorkDir). When a test fails, the cleanup prints the last 200
// lines of every component's log, with a header naming the component, and
// keeps the work directory.
//
// Set KEEP_E2E_LOGS=1 (or run `go test -v`) to keep the work directory of every
// test; KEEP_E2E_LOGS=/some/dir keeps them under that directory instead of
// $TMPDIR/portcullis-e2e.
//
// The control-plane tools are built by hack/build-tools.sh into _output/bin
// (once per test process, serialised across processes with a file lock); the
// project's binaries are built with `go build` into a temporary directory
// once per test process. A build failure fails the calling test with the
// build output: nothing is skipped.
package framework
