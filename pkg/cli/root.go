// Package cli is the `portcullis` command: the user's side of Portcullis
// (login, kubectl exec credential plugin, kubeconfig entries, whoami, logout).
//
// Commands get their dependencies (I/O streams, clock, HTTP client, cache
// directory) injected through Deps so each one is testable on its own. It
// must never print or log a token except where the command's output is the
// credential itself (exec-credential), and never write a cache file readable
// by other users.
package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/version"
)

// Deps are what commands use of the outside world.
type Deps struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// DefaultDeps are the process's own streams and environment.
func DefaultDeps() *Deps {
	return &Deps{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// NewRootCommand returns the `portcullis` command.
func NewRootCommand(d *Deps) *cobra.Command {
	root := &cobra.Command{
		Use:   "portcullis",
		Short: "Log in to Kubernetes clusters through Portcullis",
		Long: `portcullis logs you in to Kubernetes clusters with your company identity,
through a Portcullis server, and serves kubectl as an exec credential plugin.`,
		SilenceUsage: true,
	}
	root.SetIn(d.Stdin)
	root.SetOut(d.Stdout)
	root.SetErr(d.Stderr)
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "portcullis %s\n", version.Get().GitVersion)
		},
	})
	return root
}
