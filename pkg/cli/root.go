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
	"net/http"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/version"
)

// Deps are what commands use of the outside world.
type Deps struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Clock tells the time.
	Clock clock.PassiveClock
	// OpenBrowser opens a URL in the person's browser without waiting.
	OpenBrowser func(url string) error
	// StdinIsTerminal reports whether a person can answer on stdin (for
	// commands run by hand; kubectl says so in KUBERNETES_EXEC_INFO).
	StdinIsTerminal func() bool
	// Transport, when set, carries every HTTP request (tests); otherwise
	// each command builds one trusting --certificate-authority.
	Transport http.RoundTripper
	// UserCacheDir is os.UserCacheDir.
	UserCacheDir func() (string, error)
	// Executable is os.Executable (the command kubeconfig entries run).
	Executable func() (string, error)
	// UserHomeDir is os.UserHomeDir (for ~/.kube/config).
	UserHomeDir func() (string, error)
}

// DefaultDeps are the process's own streams and environment.
func DefaultDeps() *Deps {
	return &Deps{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		Clock:           clock.RealClock{},
		OpenBrowser:     defaultOpenBrowser(os.Getenv, os.Stderr),
		StdinIsTerminal: stdinIsTerminal,
		UserCacheDir:    os.UserCacheDir,
		Executable:      os.Executable,
		UserHomeDir:     os.UserHomeDir,
	}
}

func stdinIsTerminal() bool {
	fi, err := os.Stdin.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// complete fills what a test left unset.
func (d *Deps) complete() {
	if d.Getenv == nil {
		d.Getenv = func(string) string { return "" }
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Stdin == nil {
		d.Stdin = os.Stdin
	}
	if d.Stdout == nil {
		d.Stdout = io.Discard
	}
	if d.Stderr == nil {
		d.Stderr = io.Discard
	}
	if d.OpenBrowser == nil {
		d.OpenBrowser = defaultOpenBrowser(d.Getenv, d.Stderr)
	}
	if d.StdinIsTerminal == nil {
		d.StdinIsTerminal = func() bool { return false }
	}
	if d.UserCacheDir == nil {
		d.UserCacheDir = os.UserCacheDir
	}
	if d.Executable == nil {
		d.Executable = os.Executable
	}
	if d.UserHomeDir == nil {
		d.UserHomeDir = os.UserHomeDir
	}
}

// NewRootCommand returns the `portcullis` command.
func NewRootCommand(d *Deps) *cobra.Command {
	d.complete()
	root := &cobra.Command{
		Use:   "portcullis",
		Short: "Log in to Kubernetes clusters through Portcullis",
		Long: `portcullis logs you in to Kubernetes clusters with your company identity,
through a Portcullis server, and serves kubectl as an exec credential plugin.

Start with:

  portcullis kubeconfig --server https://portcullis.example.com --cluster prod
  kubectl --context prod get namespaces     # logs you in on first use`,
		SilenceUsage: true,
	}
	root.SetIn(d.Stdin)
	root.SetOut(d.Stdout)
	root.SetErr(d.Stderr)
	root.AddCommand(
		newLoginCommand(d),
		newExecCredentialCommand(d),
		newKubeconfigCommand(d),
		newWhoamiCommand(d),
		newLogoutCommand(d),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintf(cmd.OutOrStdout(), "portcullis %s\n", version.Get().GitVersion)
			},
		},
	)
	return root
}
