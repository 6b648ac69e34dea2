package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	cliflag "k8s.io/component-base/cli/flag"

	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
)

// newCopyStoreCommand copies an embedded store into the store a
// configuration names: the one-shot move from one replica on bolt to
// several on the kubernetes store, with nobody logged out.
func newCopyStoreCommand(ctx context.Context, sections flagSections) *cobra.Command {
	var from, configFile string
	cmd := &cobra.Command{
		Use:   "copy-store --from-bolt FILE --config FILE",
		Short: "Copy an embedded (bolt) store into the store a configuration names, e.g. to move to several replicas",
		Long: `Copies every signing key, revocation, grant and session of a bolt state file
into the store of --config (typically store.type: kubernetes), so that tokens
already handed out keep verifying and nobody has to log in again.

Run it with the old server stopped (the bolt file is one process's), before
starting the replicas on the new store. It is idempotent: an item already in
the destination is kept (a session refreshed there is newer), so running it
twice does no harm. Expired items are not copied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := server.LoadConfigFile(configFile)
			if err != nil {
				return err
			}
			if (cfg.Store.Type == "bolt" || cfg.Store.Type == "") && cfg.Store.Path == from {
				return fmt.Errorf("--from-bolt %s is the store --config names: nothing to copy", from)
			}
			src, err := bolt.Open(from, bolt.Options{})
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := server.OpenStore(ctx, cfg)
			if err != nil {
				return err
			}
			defer dst.Close()
			stats, err := store.Copy(ctx, src, dst)
			fmt.Fprintf(cmd.OutOrStdout(), "copied from %s: %s\n", from, stats)
			return err
		},
	}
	var fss cliflag.NamedFlagSets
	f := fss.FlagSet("copy-store")
	f.StringVar(&from, "from-bolt", "", "The bolt state file to copy from (store.path of the old configuration). Required.")
	f.StringVar(&configFile, "config", "", "The configuration whose store receives the copy. Required.")
	sections.add(cmd, fss)
	markRequired(cmd, "from-bolt", "config")
	return cmd
}
