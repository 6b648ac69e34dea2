package app

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/token"
)

type mintOptions struct {
	configFile, user, uid, cluster, reason string
	groups                                 []string
	ttl                                    time.Duration
	audit                                  *genericoptions.AuditOptions
}

func newMintCommand(ctx context.Context) *cobra.Command {
	o := &mintOptions{audit: genericoptions.NewAuditOptions()}
	cmd := &cobra.Command{
		Use:   "mint",
		Short: "Mint a cluster token offline from the store's signing keys (break-glass, automation)",
		Long: `Mints a cluster token without the IdP: for emergencies when the IdP is down, and
for automation. Every mint is an audit event, so the audit flags the server uses
(--audit-policy-file and --audit-log-path or --audit-webhook-config-file) are
required. The store must not be held by a running server (the embedded store is
a single-process file).`,
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
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "Portcullis configuration file. Required.")
	f.StringVar(&o.user, "user", "", "Kubernetes username of the token. Required.")
	f.StringVar(&o.uid, "uid", "", "Kubernetes user UID of the token.")
	f.StringSliceVar(&o.groups, "group", nil, "Group of the token (repeat for several).")
	f.StringVar(&o.cluster, "cluster", "", "Cluster (clusters[].name) the token is for. Required.")
	f.DurationVar(&o.ttl, "ttl", 15*time.Minute, "Lifetime of the token (at most tokens.maxLifetime).")
	f.StringVar(&o.reason, "reason", "", "Why the token is minted; recorded in the token and the audit log. Required.")
	o.audit.AddFlags(f)
	return cmd
}

func (o *mintOptions) run(ctx context.Context) (string, error) {
	var missing []string
	for flag, v := range map[string]string{"--config": o.configFile, "--user": o.user, "--cluster": o.cluster, "--reason": o.reason} {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("required flags not set: %s", strings.Join(missing, ", "))
	}
	cfg, err := config.Load(o.configFile)
	if err != nil {
		return "", err
	}
	found := false
	for _, c := range cfg.Clusters {
		found = found || c.Name == o.cluster
	}
	if !found {
		return "", fmt.Errorf("cluster %q is not in %s (clusters[].name)", o.cluster, o.configFile)
	}
	if o.ttl <= 0 || o.ttl > cfg.Tokens.MaxLifetime.Duration {
		return "", fmt.Errorf("--ttl must be between 0 and tokens.maxLifetime (%s)", cfg.Tokens.MaxLifetime.Duration)
	}
	if errs := o.audit.Validate(); len(errs) > 0 {
		return "", fmt.Errorf("audit flags: %v", errs)
	}
	gc := &genericapiserver.Config{}
	if err := o.audit.ApplyTo(gc); err != nil {
		return "", fmt.Errorf("audit: %w", err)
	}
	if gc.AuditBackend == nil {
		return "", fmt.Errorf("every mint must be audited: give --audit-policy-file and --audit-log-path (or --audit-webhook-config-file), as for the server")
	}
	if err := gc.AuditBackend.Run(ctx.Done()); err != nil {
		return "", fmt.Errorf("starting the audit backend: %w", err)
	}
	defer gc.AuditBackend.Shutdown()

	st, err := server.OpenStore(cfg)
	if err != nil {
		return "", err
	}
	defer st.Close()
	km, err := server.NewKeys(ctx, cfg, st)
	if err != nil {
		return "", err
	}
	minter, err := token.NewMinter(km, cfg.IssuerURL, nil)
	if err != nil {
		return "", err
	}
	now := time.Now()
	raw, claims, err := minter.Mint(ctx, token.Claims{
		Subject: o.user, Username: o.user, UID: o.uid, Groups: o.groups,
		Audience: []string{o.cluster}, Expiry: now.Add(o.ttl), Reason: o.reason,
	})
	if err != nil {
		return "", err
	}
	operator := "unknown"
	if u, err := user.Current(); err == nil {
		operator = u.Username
	}
	host, _ := os.Hostname()
	ev := &auditinternal.Event{
		Level:                    auditinternal.LevelMetadata,
		AuditID:                  types.UID(uuid.NewString()),
		Stage:                    auditinternal.StageResponseComplete,
		RequestURI:               "portcullis-server mint",
		Verb:                     "create",
		User:                     authnv1.UserInfo{Username: "local:" + operator, Extra: map[string]authnv1.ExtraValue{"host": {host}}},
		ObjectRef:                &auditinternal.ObjectReference{APIGroup: "portcullis.dev", Resource: "tokens", Name: claims.ID},
		ResponseStatus:           &metav1.Status{Status: metav1.StatusSuccess, Code: 201},
		RequestReceivedTimestamp: metav1.NewMicroTime(now),
		StageTimestamp:           metav1.NewMicroTime(time.Now()),
		Annotations: map[string]string{
			"portcullis.dev/user":    o.user,
			"portcullis.dev/groups":  strings.Join(o.groups, ","),
			"portcullis.dev/cluster": o.cluster,
			"portcullis.dev/jti":     claims.ID,
			"portcullis.dev/expires": claims.Expiry.UTC().Format(time.RFC3339),
			"portcullis.dev/reason":  o.reason,
		},
	}
	if !gc.AuditBackend.ProcessEvents(ev) {
		return "", fmt.Errorf("the audit backend refused the mint event: no token is printed")
	}
	return raw, nil
}
