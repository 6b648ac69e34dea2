// Package app is portcullis-server's command line: serve (the default),
// webhook-kubeconfig, mint and version.
package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/term"

	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/version"
)

// NewServerCommand returns the portcullis-server command.
func NewServerCommand(ctx context.Context) *cobra.Command {
	o := server.NewOptions()
	cmd := &cobra.Command{
		Use:   "portcullis-server",
		Short: "Kubernetes authentication gateway: OIDC login portal, TokenReview webhook, impersonating proxy",
		Long: `portcullis-server lets people reach Kubernetes API servers with their company
identity (any OpenID Connect IdP), with the groups RBAC needs, under one central
policy and one audit trail. See docs/ for the modes it serves.`,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q: portcullis-server takes only flags (see --help)", args)
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			c, err := o.Config()
			if err != nil {
				return err
			}
			s, err := c.Complete().New(ctx)
			if err != nil {
				return err
			}
			return s.PrepareRun().Run(ctx)
		},
	}
	fs := cmd.Flags()
	namedFlagSets := o.Flags()
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, namedFlagSets, cols)

	cmd.AddCommand(newVersionCommand(), newWebhookKubeconfigCommand(), newMintCommand(ctx), newCopyStoreCommand(ctx))
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "portcullis-server %s\n", version.Get().GitVersion)
		},
	}
}

// SignalContext is the context the command runs in: cancelled on SIGTERM or
// SIGINT, so the server shuts down gracefully.
func SignalContext() context.Context { return genericapiserver.SetupSignalContext() }
