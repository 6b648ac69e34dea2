// Package e2e holds Portcullis' end-to-end tests: real etcd, kube-apiserver,
// Dex, portcullis-server and kubectl on loopback. See README.md.
package e2e

import (
	"os"
	"testing"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestMain skips nothing: a binary that fails to build fails every test that
// needs it, with the build output.
func TestMain(m *testing.M) { os.Exit(framework.Main(m)) }
