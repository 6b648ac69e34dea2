// Command portcullis-server is the Portcullis authentication gateway.
package main

import (
	"os"

	"k8s.io/component-base/cli"

	"portcullis.dev/portcullis/pkg/cmd/server"
)

func main() {
	os.Exit(cli.Run(server.NewServerCommand(server.SignalContext())))
}
