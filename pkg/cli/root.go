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
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
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
	// UserHomeDir is os.UserHomeDir (for ~/.kube/config). Which kubeconfig
	// files are read and written otherwise follows kubectl's rules
	// (clientcmd.PathOptions), $KUBECONFIG included, from the process's
	// environment.
	UserHomeDir func() (string, error)
	// Name is how the person runs this command: "portcullis", or
	// "kubectl portcullis" when it runs as a kubectl plugin. Help and
	// the commands it suggests use it.
	Name string

	// verbosity is -v: debug lines on stderr at or below it.
	verbosity int
}

// pluginName is the executable name kubectl looks for to run
// `kubectl portcullis` (krew installs it as a link of that name).
const pluginName = "kubectl-portcullis"

// commandName is how a person runs the binary invoked as argv0.
func commandName(argv0 string) string {
	base := strings.TrimSuffix(strings.ToLower(filepath.Base(argv0)), ".exe")
	if base == pluginName {
		return "kubectl portcullis"
	}
	return "portcullis"
}

// DefaultDeps are the process's own streams and environment.
func DefaultDeps() *Deps {
	name := commandName(os.Args[0])
	executable := os.Executable
	if name != "portcullis" {
		// As a kubectl plugin, kubeconfig entries run the plugin's link
		// (e.g. krew's ~/.krew/bin/kubectl-portcullis), which outlives
		// an upgrade, rather than the versioned file it points to.
		executable = func() (string, error) { return exec.LookPath(os.Args[0]) }
	}
	return &Deps{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		Clock:           clock.RealClock{},
		OpenBrowser:     defaultOpenBrowser(os.Getenv, os.Stderr),
		StdinIsTerminal: func() bool { return isTerminal(os.Stdin) },
		UserCacheDir:    os.UserCacheDir,
		Executable:      executable,
		UserHomeDir:     os.UserHomeDir,
		Name:            name,
	}
}

// isTerminal reports whether f is a terminal a person types in: not merely
// a character device (/dev/null is one too).
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}

// debugf writes a debug line to stderr when -v is at least level. Callers
// never pass a token, a code or a refresh token.
func (d *Deps) debugf(level int, format string, args ...any) {
	if d.verbosity >= level {
		fmt.Fprintf(d.Stderr, "portcullis: "+format+"\n", args...)
	}
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
	if d.Name == "" {
		d.Name = "portcullis"
	}
}

// NewRootCommand returns the `portcullis` command.
func NewRootCommand(d *Deps) *cobra.Command {
	d.complete()
	root := &cobra.Command{
		Use:   "portcullis",
		Short: "Log in to Kubernetes clusters through Portcullis",
		Long: strings.ReplaceAll(`portcullis logs you in to Kubernetes clusters with your company identity,
through a Portcullis server, and serves kubectl as an exec credential plugin.

Start with:

  portcullis kubeconfig --server https://portcullis.example.com --cluster prod
  kubectl --context prod get namespaces     # logs you in on first use`, "portcullis kubeconfig", d.Name+" kubeconfig"),
		SilenceUsage: true,
	}
	if d.Name != "portcullis" {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: d.Name}
	}
	root.PersistentFlags().IntVarP(&d.verbosity, "v", "v", 0, "Debug output on stderr: 1 says what is done (cache, refresh, login, kubeconfig files), 2 adds every request to Portcullis. Tokens are never printed.")
	root.SetIn(d.Stdin)
	root.SetOut(d.Stdout)
	root.SetErr(d.Stderr)
	root.AddCommand(
		newLoginCommand(d),
		newExecCredentialCommand(d),
		newKubeconfigCommand(d),
		newWhoamiCommand(d),
		newLogoutCommand(d),
		newRequestCommand(d),
		newRequestsCommand(d),
		newDecisionCommand(d, "approve", "Approve"),
		newDecisionCommand(d, "deny", "Deny"),
		newGrantsCommand(d),
		newRevokeGrantCommand(d),
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
