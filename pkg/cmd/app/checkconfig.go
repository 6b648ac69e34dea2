package app

import (
	"fmt"

	"github.com/spf13/cobra"
	cliflag "k8s.io/component-base/cli/flag"

	"portcullis.dev/portcullis/pkg/server"
)

// newCheckConfigCommand validates a configuration file offline, the way the
// server does at start-up (server.LoadConfigFile, the same code and the
// same messages), so that CI can refuse a file before it is rolled out.
func newCheckConfigCommand(sections flagSections) *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "check-config --config FILE",
		Short: "Validate a configuration file offline, as the server does at start-up (exit code 0 or 1)",
		Long: `Reads, defaults and validates a configuration file exactly as portcullis-server
does when it starts, and reports every problem with the same messages, each
with its field path and line. It contacts nothing (no identity provider, no
cluster, no store), so it runs in CI before a rollout. Files the configuration
names (CA bundles, secrets) are checked as at start-up: run it where they exist.

The exit code is 0 for a valid file and 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := server.LoadConfigFile(configFile)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is a valid configuration: issuer %s, %d cluster(s), %d identity provider(s), store %s\n",
				configFile, cfg.IssuerURL, len(cfg.Clusters), len(cfg.IdentityProviders), storeType(cfg.Store.Type))
			return nil
		},
	}
	var fss cliflag.NamedFlagSets
	fss.FlagSet("check-config").StringVar(&configFile, "config", "", "The configuration file to check (as portcullis-server's --config). Required.")
	sections.add(cmd, fss)
	markRequired(cmd, "config")
	return cmd
}

func storeType(t string) string {
	if t == "" {
		return "bolt"
	}
	return t
}
