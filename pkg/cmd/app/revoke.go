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

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/breakglass"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/session"
)

type revokeOptions struct {
	configFile, jti, reason string
	audit                   *genericoptions.AuditOptions
}

func newRevokeCommand(ctx context.Context, sections flagSections) *cobra.Command {
	o := &revokeOptions{audit: genericoptions.NewAuditOptions()}
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke one cluster token by its ID (jti), e.g. a break-glass mint",
		Long: `Revokes one cluster token by its ID (its "jti" claim, recorded in the audit
log of the mint or exchange that issued it as portcullis.dev/jti). Use it for
tokens of no login session (break-glass mints, tokens exchanged for an
identity provider's ID token); end a session with
"kubectl delete sessions.login.portcullis.dev <name>". Every revocation is an
audit event. The same is available through the API to whoever the cluster's
RBAC allows: "kubectl create -f" of a TokenRevocation (docs/operations.md).

With the embedded store (store.type: bolt) and the server running, revoke asks
that server over the Unix socket next to the store file, and the server
audits it, naming the operator from the socket's peer credentials. With the
server stopped, or with the kubernetes store, revoke opens the store itself and
needs the audit flags the server uses (--audit-policy-file and
--audit-log-path or --audit-webhook-config-file). Every replica refuses the
token once the revocation is in the store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			until, err := o.run(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked (the revocation is kept until %s)\n", o.jti, until.UTC().Format(time.RFC3339))
			return nil
		},
	}
	var fss cliflag.NamedFlagSets
	f := fss.FlagSet("revoke")
	f.StringVar(&o.configFile, "config", "", "Portcullis configuration file. Required.")
	f.StringVar(&o.jti, "jti", "", "ID of the token to revoke (its jti claim; audit annotation portcullis.dev/jti). Required.")
	f.StringVar(&o.reason, "reason", "", "Why the token is revoked; recorded in the audit log. Required.")
	o.audit.AddFlags(fss.FlagSet("auditing (when revoke opens the store itself)"))
	sections.add(cmd, fss)
	markRequired(cmd, "config", "jti", "reason")
	return cmd
}

func (o *revokeOptions) run(ctx context.Context) (time.Time, error) {
	if o.configFile == "" {
		return time.Time{}, fmt.Errorf("required flags not set: --config")
	}
	req := breakglass.RevokeRequest{TokenID: o.jti, Reason: o.reason}
	if err := req.Validate(); err != nil {
		return time.Time{}, err
	}
	cfg, err := config.Load(o.configFile)
	if err != nil {
		return time.Time{}, err
	}
	if cfg.Store.Type == "bolt" || cfg.Store.Type == "" {
		until, err := breakglass.RevokeVia(ctx, breakglass.SocketPath(cfg.Store.Path), req)
		if !errors.Is(err, breakglass.ErrNoServer) {
			return until, err
		}
	}

	if errs := o.audit.Validate(); len(errs) > 0 {
		return time.Time{}, fmt.Errorf("audit flags: %v", errs)
	}
	gc := &genericapiserver.Config{}
	if err := o.audit.ApplyTo(gc); err != nil {
		return time.Time{}, fmt.Errorf("audit: %w", err)
	}
	if gc.AuditBackend == nil {
		return time.Time{}, fmt.Errorf("every revocation must be audited: give --audit-policy-file and --audit-log-path (or --audit-webhook-config-file), as for the server (with the embedded store and a running server, the server audits instead)")
	}
	if err := gc.AuditBackend.Run(ctx.Done()); err != nil {
		return time.Time{}, fmt.Errorf("starting the audit backend: %w", err)
	}
	defer gc.AuditBackend.Shutdown()

	st, err := server.OpenStore(ctx, cfg)
	if err != nil {
		return time.Time{}, err
	}
	defer st.Close()
	live := func() *v1alpha1.PortcullisConfiguration { return cfg }
	sessions := session.NewManager(st, session.SettingsFrom(live), nil)
	operator := "unknown"
	if u, err := user.Current(); err == nil {
		operator = u.Username
	}
	host, _ := os.Hostname()
	rev, err := breakglass.Revoke(ctx, sessions, gc.AuditBackend, breakglass.Operator{Name: "local:" + operator, Host: host, Via: "process"}, req)
	return rev.ExpiresAt, err
}
