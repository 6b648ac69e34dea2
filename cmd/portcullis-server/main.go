// Command portcullis-server is the Portcullis authentication gateway.
package main

import (
	"os"

	"k8s.io/component-base/cli"

	"portcullis.dev/portcullis/pkg/cmd/app"
)

func main() {
	os.Exit(cli.Run(app.NewServerCommand(app.SignalContext())))
}
