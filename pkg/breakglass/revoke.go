package breakglass

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/store"
)

// `portcullis-server revoke` revokes one cluster token by its ID (jti) on
// the host, like mint: through the running server's socket with the embedded
// store, or by opening the store. The same revocation is available through
// the API (TokenRevocation) to whoever the cluster's RBAC allows.

const revokePath = "/revoke"

// RevokeRequest names the token to revoke and why.
type RevokeRequest struct {
	TokenID string `json:"tokenID"`
	Reason  string `json:"reason"`
}

// Validate says what to fix.
func (r RevokeRequest) Validate() error {
	var missing []string
	if strings.TrimSpace(r.TokenID) == "" {
		missing = append(missing, "--jti")
	}
	if strings.TrimSpace(r.Reason) == "" {
		missing = append(missing, "--reason")
	}
	if len(missing) > 0 {
		return fmt.Errorf("required flags not set: %s", strings.Join(missing, ", "))
	}
	if len(r.TokenID) > 128 || strings.IndexFunc(r.TokenID, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}) >= 0 {
		return errors.New("--jti must be a token ID as Portcullis issues them (the audit annotation portcullis.dev/jti): letters, digits, '-' and '_'")
	}
	return nil
}

// Revoker revokes a token by ID, keeping the revocation as long as a token
// can live (pkg/session.Manager.RevokeTokenID).
type Revoker interface {
	RevokeTokenID(ctx context.Context, jti, reason, by string) (store.Revocation, error)
}

// Revoke validates r, revokes the token and audits it. The revocation is
// written first (a token must not stay valid because the audit failed);
// a refused audit event is then an error, so the operator knows.
func Revoke(ctx context.Context, rv Revoker, backend audit.Backend, op Operator, r RevokeRequest) (store.Revocation, error) {
	if backend == nil {
		return store.Revocation{}, fmt.Errorf("every revocation must be audited, and no audit backend is configured: give --audit-policy-file and --audit-log-path (or --audit-webhook-config-file)")
	}
	if err := r.Validate(); err != nil {
		return store.Revocation{}, err
	}
	now := time.Now()
	rev, err := rv.RevokeTokenID(ctx, r.TokenID, r.Reason, op.Name)
	if err != nil {
		return store.Revocation{}, err
	}
	ev := &auditinternal.Event{
		Level:                    auditinternal.LevelMetadata,
		AuditID:                  types.UID(uuid.NewString()),
		Stage:                    auditinternal.StageResponseComplete,
		RequestURI:               "portcullis-server revoke",
		Verb:                     "create",
		User:                     authnv1.UserInfo{Username: op.Name, Extra: map[string]authnv1.ExtraValue{"host": {op.Host}, "via": {op.Via}}},
		ObjectRef:                &auditinternal.ObjectReference{APIGroup: "login.portcullis.dev", Resource: "tokenrevocations", Name: r.TokenID},
		ResponseStatus:           &metav1.Status{Status: metav1.StatusSuccess, Code: 201},
		RequestReceivedTimestamp: metav1.NewMicroTime(now),
		StageTimestamp:           metav1.NewMicroTime(time.Now()),
		Annotations: map[string]string{
			"portcullis.dev/jti":                r.TokenID,
			"portcullis.dev/revocation-reason":  r.Reason,
			"portcullis.dev/revocation-expires": rev.ExpiresAt.UTC().Format(time.RFC3339),
		},
	}
	if !backend.ProcessEvents(ev) {
		return rev, fmt.Errorf("token %s IS revoked, but the audit backend refused the event: record it by hand", r.TokenID)
	}
	return rev, nil
}

type revokeAnswer struct {
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// revokeHandler serves POST /revoke with a JSON RevokeRequest.
func revokeHandler(rv Revoker, backend audit.Backend) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reply := func(code int, a revokeAnswer) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(a)
		}
		if r.Method != http.MethodPost {
			reply(http.StatusMethodNotAllowed, revokeAnswer{Error: "only POST " + revokePath + " is served here"})
			return
		}
		op, err := peerOperator(r)
		if err != nil {
			reply(http.StatusForbidden, revokeAnswer{Error: "cannot tell who is asking: " + err.Error()})
			return
		}
		var req RevokeRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(http.StatusBadRequest, revokeAnswer{Error: "decoding the request: " + err.Error()})
			return
		}
		if err := req.Validate(); err != nil {
			reply(http.StatusBadRequest, revokeAnswer{Error: err.Error()})
			return
		}
		rev, err := Revoke(r.Context(), rv, backend, op, req)
		if err != nil {
			reply(http.StatusInternalServerError, revokeAnswer{ExpiresAt: rev.ExpiresAt, Error: err.Error()})
			return
		}
		klog.InfoS("Break-glass token revocation", "operator", op.Name, "jti", req.TokenID, "reason", req.Reason, "keptUntil", rev.ExpiresAt)
		reply(http.StatusCreated, revokeAnswer{ExpiresAt: rev.ExpiresAt})
	}
}

// RevokeVia asks the server listening on the socket at path to revoke; it
// returns when the revocation is kept until.
func RevokeVia(ctx context.Context, path string, req RevokeRequest) (time.Time, error) {
	if _, err := os.Stat(path); err != nil {
		return time.Time{}, fmt.Errorf("%w %s: %v", ErrNoServer, path, err)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialSocket(ctx, path)
		},
	}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	body, err := json.Marshal(req)
	if err != nil {
		return time.Time{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://portcullis"+revokePath, bytes.NewReader(body))
	if err != nil {
		return time.Time{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return time.Time{}, fmt.Errorf("%w %s: %v", ErrNoServer, path, err)
		}
		return time.Time{}, fmt.Errorf("asking the running server to revoke: %w", err)
	}
	defer resp.Body.Close()
	var a revokeAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&a); err != nil {
		return time.Time{}, fmt.Errorf("reading the running server's answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return time.Time{}, fmt.Errorf("the running server does not revoke through its socket (an older version?): %s", a.Error)
	}
	if resp.StatusCode != http.StatusCreated {
		return a.ExpiresAt, fmt.Errorf("the running server answered: %s", a.Error)
	}
	return a.ExpiresAt, nil
}
