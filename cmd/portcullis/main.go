// Command portcullis is the user's CLI: login, kubectl exec credential
// plugin, kubeconfig entries, whoami and logout.
package main

import (
	"os"

	"portcullis.dev/portcullis/pkg/cli"
)

func main() {
	if err := cli.NewRootCommand(cli.DefaultDeps()).Execute(); err != nil {
		os.Exit(1)
	}
}
