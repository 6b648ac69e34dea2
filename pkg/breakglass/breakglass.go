// Package breakglass mints cluster tokens without the IdP, for emergencies
// and automation, and writes an audit event for every one: no token is
// handed out unless the audit backend took its event.
//
// A running server with the embedded store holds its file alone, so
// `portcullis-server mint` asks that server over a Unix socket next to the
// file (SocketPath). Whoever may open that socket could read the store's
// signing keys anyway: the socket is the file's owner's only (0600), and the
// operator named in the audit event is the one the kernel reports for the
// connection (SO_PEERCRED), not one the client claims. With the Kubernetes
// store, mint opens the store itself, as every replica does.
package breakglass

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/token"
)

// Request is what an operator asks for.
type Request struct {
	User    string        `json:"user"`
	UID     string        `json:"uid,omitempty"`
	Groups  []string      `json:"groups,omitempty"`
	Cluster string        `json:"cluster"`
	TTL     time.Duration `json:"ttl"`
	Reason  string        `json:"reason"`
}

// Operator is who asked, as the audit event records it.
type Operator struct {
	// Name is "local:<user>" for a mint run on the host, with how it was
	// learned (the kernel for the socket, the process's own user otherwise).
	Name string
	Host string
	// Via says how the request reached the minter: "process" or "socket".
	Via string
}

// Validate checks r against cfg and says what to fix.
func (r Request) Validate(cfg *v1alpha1.PortcullisConfiguration) error {
	var missing []string
	for flag, v := range map[string]string{"--user": r.User, "--cluster": r.Cluster, "--reason": r.Reason} {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("required flags not set: %s", strings.Join(missing, ", "))
	}
	found := false
	for _, c := range cfg.Clusters {
		found = found || c.Name == r.Cluster
	}
	if !found {
		return fmt.Errorf("cluster %q is not configured (clusters[].name)", r.Cluster)
	}
	if r.TTL <= 0 || r.TTL > cfg.Tokens.MaxLifetime.Duration {
		return fmt.Errorf("--ttl must be more than 0 and at most tokens.maxLifetime (%s)", cfg.Tokens.MaxLifetime.Duration)
	}
	return nil
}

// Mint validates r, mints the token and audits it. The token is returned
// only once the backend has accepted the event.
func Mint(ctx context.Context, cfg *v1alpha1.PortcullisConfiguration, m *token.Minter, backend audit.Backend, op Operator, r Request) (string, error) {
	if backend == nil {
		return "", fmt.Errorf("every mint must be audited, and no audit backend is configured: give --audit-policy-file and --audit-log-path (or --audit-webhook-config-file)")
	}
	if err := r.Validate(cfg); err != nil {
		return "", err
	}
	now := time.Now()
	raw, claims, err := m.Mint(ctx, token.Claims{
		Subject: r.User, Username: r.User, UID: r.UID, Groups: r.Groups,
		Audience: []string{r.Cluster}, Expiry: now.Add(r.TTL), Reason: r.Reason,
	})
	if err != nil {
		return "", err
	}
	ev := &auditinternal.Event{
		Level:                    auditinternal.LevelMetadata,
		AuditID:                  types.UID(uuid.NewString()),
		Stage:                    auditinternal.StageResponseComplete,
		RequestURI:               "portcullis-server mint",
		Verb:                     "create",
		User:                     authnv1.UserInfo{Username: op.Name, Extra: map[string]authnv1.ExtraValue{"host": {op.Host}, "via": {op.Via}}},
		ObjectRef:                &auditinternal.ObjectReference{APIGroup: "portcullis.dev", Resource: "tokens", Name: claims.ID},
		ResponseStatus:           &metav1.Status{Status: metav1.StatusSuccess, Code: 201},
		RequestReceivedTimestamp: metav1.NewMicroTime(now),
		StageTimestamp:           metav1.NewMicroTime(time.Now()),
		Annotations: map[string]string{
			"portcullis.dev/user":    r.User,
			"portcullis.dev/groups":  strings.Join(r.Groups, ","),
			"portcullis.dev/cluster": r.Cluster,
			"portcullis.dev/jti":     claims.ID,
			"portcullis.dev/expires": claims.Expiry.UTC().Format(time.RFC3339),
			"portcullis.dev/reason":  r.Reason,
		},
	}
	if !backend.ProcessEvents(ev) {
		return "", fmt.Errorf("the audit backend refused the mint event: no token is handed out")
	}
	return raw, nil
}
