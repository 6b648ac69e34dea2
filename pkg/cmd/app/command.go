// Package app is portcullis-server's command line: serve (the default),
// webhook-kubeconfig, mint and version.
package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	cliflag "k8s.io/component-base/cli/flag"

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
			if err := o.ApplyLogging(); err != nil {
				return err
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
	sections := flagSections{}
	sections.add(cmd, o.Flags())
	markRequired(cmd, "config")
	cmd.AddCommand(
		newCheckConfigCommand(sections),
		newCopyStoreCommand(ctx, sections),
		newMintCommand(ctx, sections),
		newRevokeCommand(ctx, sections),
		newVersionCommand(sections),
		newWebhookKubeconfigCommand(sections),
	)
	sections.install(cmd)
	return cmd
}

func newVersionCommand(sections flagSections) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "portcullis-server %s\n", version.Get().GitVersion)
		},
	}
	sections.add(cmd, cliflag.NamedFlagSets{})
	return cmd
}

// SignalContext is the context the command runs in: cancelled on SIGTERM or
// SIGINT, so the server shuts down gracefully.
func SignalContext() context.Context { return genericapiserver.SetupSignalContext() }
