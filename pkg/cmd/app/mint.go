package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	cliflag "k8s.io/component-base/cli/flag"

	"portcullis.dev/portcullis/pkg/breakglass"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/token"
)

type mintOptions struct {
	configFile, user, uid, cluster, reason string
	groups                                 []string
	ttl                                    time.Duration
	audit                                  *genericoptions.AuditOptions
}

func newMintCommand(ctx context.Context, sections flagSections) *cobra.Command {
	o := &mintOptions{audit: genericoptions.NewAuditOptions()}
	cmd := &cobra.Command{
		Use:   "mint",
		Short: "Mint a cluster token from the store's signing keys, without the IdP (break-glass, automation)",
		Long: `Mints a cluster token without the IdP: for emergencies when the IdP is down, and
for automation. Every mint is an audit event; no token is printed unless the
event was taken.

With the embedded store (store.type: bolt) and the server running, mint asks
that server over the Unix socket next to the store file (<store.path>.mint.sock,
mode 0600), and the server audits the mint through its own audit backend,
naming the operator from the socket's peer credentials. With the server stopped,
or with the kubernetes store (which any number of processes share), mint opens
the store itself and needs the audit flags the server uses (--audit-policy-file
and --audit-log-path or --audit-webhook-config-file).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := o.run(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), raw)
			return nil
		},
	}
	var fss cliflag.NamedFlagSets
	f := fss.FlagSet("mint")
	f.StringVar(&o.configFile, "config", "", "Portcullis configuration file. Required.")
	f.StringVar(&o.user, "user", "", "Kubernetes username of the token. Required.")
	f.StringVar(&o.uid, "uid", "", "Kubernetes user UID of the token.")
	f.StringSliceVar(&o.groups, "group", nil, "Group of the token (repeat for several).")
	f.StringVar(&o.cluster, "cluster", "", "Cluster (clusters[].name) the token is for. Required.")
	f.DurationVar(&o.ttl, "ttl", 15*time.Minute, "Lifetime of the token (at most tokens.maxLifetime).")
	f.StringVar(&o.reason, "reason", "", "Why the token is minted; recorded in the token and the audit log. Required.")
	o.audit.AddFlags(fss.FlagSet("auditing (when mint opens the store itself)"))
	sections.add(cmd, fss)
	markRequired(cmd, "config", "user", "cluster", "reason")
	return cmd
}

func (o *mintOptions) run(ctx context.Context) (string, error) {
	if o.configFile == "" {
		return "", fmt.Errorf("required flags not set: --config")
	}
	cfg, err := server.LoadConfigFile(o.configFile)
	if err != nil {
		return "", err
	}
	req := breakglass.Request{User: o.user, UID: o.uid, Groups: o.groups, Cluster: o.cluster, TTL: o.ttl, Reason: o.reason}
	if err := req.Validate(cfg); err != nil {
		return "", err
	}
	// A running server with the embedded store holds the file: ask it, and
	// it audits the mint through its own audit backend.
	if cfg.Store.Type == "bolt" || cfg.Store.Type == "" {
		raw, err := breakglass.MintVia(ctx, breakglass.SocketPath(cfg.Store.Path), req)
		if !errors.Is(err, breakglass.ErrNoServer) {
			return raw, err
		}
	}

	if errs := o.audit.Validate(); len(errs) > 0 {
		return "", fmt.Errorf("audit flags: %v", errs)
	}
	gc := &genericapiserver.Config{}
	if err := o.audit.ApplyTo(gc); err != nil {
		return "", fmt.Errorf("audit: %w", err)
	}
	if gc.AuditBackend == nil {
		return "", fmt.Errorf("every mint must be audited: give --audit-policy-file and --audit-log-path (or --audit-webhook-config-file), as for the server (with the embedded store and a running server, the server audits instead)")
	}
	if err := gc.AuditBackend.Run(ctx.Done()); err != nil {
		return "", fmt.Errorf("starting the audit backend: %w", err)
	}
	defer gc.AuditBackend.Shutdown()

	st, err := server.OpenStore(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer st.Close()
	km, err := server.NewKeys(ctx, cfg, st, nil)
	if err != nil {
		return "", err
	}
	minter, err := token.NewMinter(km, cfg.IssuerURL, nil)
	if err != nil {
		return "", err
	}
	operator := "unknown"
	if u, err := user.Current(); err == nil {
		operator = u.Username
	}
	host, _ := os.Hostname()
	return breakglass.Mint(ctx, cfg, minter, gc.AuditBackend, breakglass.Operator{Name: "local:" + operator, Host: host, Via: "process"}, req)
}
