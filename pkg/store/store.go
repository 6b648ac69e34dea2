// Package store keeps Portcullis's durable state: signing keys, sessions (with
// their hashed refresh tokens), revocations and time-bound grants.
//
// Every backend implements Store and must pass the conformance suite in
// pkg/store/storetest. The embedded backend (pkg/store/bolt) is the default;
// pkg/store/kubernetes keeps the same state in Secrets and ConfigMaps of one
// namespace, so that several replicas share it through etcd. Copy moves the
// state from one backend to another.
//
// A store must never silently reset: a file it cannot read is an error that
// names the file and says what to do, not an empty store.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every backend returns (wrapped or not) so callers can use errors.Is.
var (
	// ErrNotFound is returned when the object asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned by Create* when the ID is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict is returned by an update function to abort an update, or by
	// a backend when an optimistic-concurrency check fails after retries.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable is returned when the backend cannot be reached or is
	// failing (for the kubernetes backend: the Kubernetes API server does not
	// answer, times out or answers 5xx). The operation may or may not have
	// taken effect; trying again later is reasonable. Servers answer a request
	// that failed with it with 503 Service Unavailable rather than 500.
	ErrUnavailable = errors.New("state store unavailable")
)

// SigningKey is a private key Portcullis signs cluster tokens with.
// A key is used for signing from ActiveAt until RetireAt, and published in the
// JWKS (so tokens it signed keep verifying) until ExpireAt.
type SigningKey struct {
	ID string `json:"id"`
	// Algorithm is the JOSE algorithm name, e.g. "ES256".
	Algorithm string `json:"algorithm"`
	// PrivateKeyPEM is the PKCS#8 PEM encoding of the private key.
	PrivateKeyPEM []byte    `json:"privateKeyPEM"`
	CreatedAt     time.Time `json:"createdAt"`
	ActiveAt      time.Time `json:"activeAt"`
	RetireAt      time.Time `json:"retireAt"`
	ExpireAt      time.Time `json:"expireAt"`
}

// Session is a logged-in user's refresh session. Cluster tokens carry the
// session's ID in their "sid" claim; deleting or revoking the session makes
// them fail verification.
type Session struct {
	ID string `json:"id"`
	// Identity as resolved at login (and re-resolved at each refresh).
	Username string              `json:"username"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
	Email    string              `json:"email,omitempty"`
	// IdentityProvider is the name of the upstream IdP the user logged in with.
	IdentityProvider string `json:"identityProvider,omitempty"`
	// UpstreamRefreshToken is the IdP's refresh token, if it issued one, used
	// to ask the IdP again at each refresh. Backends must treat it as a secret.
	UpstreamRefreshToken string `json:"upstreamRefreshToken,omitempty"`
	// RefreshTokenHash is the SHA-256 of the current refresh secret. The
	// secret itself is never stored.
	RefreshTokenHash []byte `json:"refreshTokenHash"`
	// PreviousRefreshTokenHash stays valid until PreviousValidUntil: the reuse
	// grace that lets two concurrent clients refresh with the same secret.
	PreviousRefreshTokenHash []byte `json:"previousRefreshTokenHash,omitempty"`
	// PreviousSealedNext is the refresh token the last rotation handed out,
	// sealed (AES-256-GCM) with a key derived from the previous secret, so
	// that within the reuse grace any replica can give it to a client that
	// presents the previous secret, while the store holds nothing usable.
	PreviousSealedNext []byte    `json:"previousSealedNext,omitempty"`
	PreviousValidUntil time.Time `json:"previousValidUntil,omitempty"`
	ClientAddress      string    `json:"clientAddress,omitempty"`
	// Client is what the session was created for (e.g. "browser", "cli",
	// "device"), shown to its user; empty for sessions older than the field.
	Client     string    `json:"client,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	LastUsedAt time.Time `json:"lastUsedAt"`
	// IdleTimeout ends the session when LastUsedAt+IdleTimeout has passed.
	IdleTimeout time.Duration `json:"idleTimeout"`
	// ExpiresAt is the absolute end of the session.
	ExpiresAt time.Time `json:"expiresAt"`
}

// Expired reports whether the session has ended by idleness or age at now.
func (s *Session) Expired(now time.Time) bool {
	if !now.Before(s.ExpiresAt) {
		return true
	}
	return s.IdleTimeout > 0 && !now.Before(s.LastUsedAt.Add(s.IdleTimeout))
}

// Revocation marks a session ID or a token ID (jti) as revoked. It is kept
// until ExpiresAt, after which nothing it revokes could verify anyway.
type Revocation struct {
	ID        string    `json:"id"`
	Reason    string    `json:"reason,omitempty"`
	RevokedBy string    `json:"revokedBy,omitempty"`
	RevokedAt time.Time `json:"revokedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Grant is a time-bound privilege grant: extra groups for a user on a cluster
// between NotBefore and ExpiresAt (e.g. during an incident).
type Grant struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Cluster   string    `json:"cluster"`
	Groups    []string  `json:"groups"`
	Reason    string    `json:"reason"`
	GrantedBy string    `json:"grantedBy"`
	CreatedAt time.Time `json:"createdAt"`
	NotBefore time.Time `json:"notBefore"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Access request states. A request is Pending until enough approvers
// approve it (Approved: its grant exists), one denies it (Denied), it waits
// too long (Expired), or its grant is revoked (Revoked).
const (
	AccessRequestPending  = "Pending"
	AccessRequestApproved = "Approved"
	AccessRequestDenied   = "Denied"
	AccessRequestExpired  = "Expired"
	AccessRequestRevoked  = "Revoked"
)

// Approval is one approver's yes.
type Approval struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// AccessRequest is a user's request for extra groups on a cluster for a
// while. Approving it creates the Grant GrantID.
type AccessRequest struct {
	ID       string        `json:"id"`
	Username string        `json:"username"`
	Cluster  string        `json:"cluster"`
	Groups   []string      `json:"groups"`
	Duration time.Duration `json:"duration"`
	Reason   string        `json:"reason"`
	State    string        `json:"state"`
	// Approvals so far, in order.
	Approvals []Approval `json:"approvals,omitempty"`
	// DecidedBy and DecidedAt name who moved the request out of Pending
	// (the last approver, the denier, the revoker) and when;
	// DecisionReason is what they said.
	DecidedBy      string    `json:"decidedBy,omitempty"`
	DecidedAt      time.Time `json:"decidedAt,omitempty"`
	DecisionReason string    `json:"decisionReason,omitempty"`
	// GrantID is the grant approval created; NotBefore and GrantExpiresAt
	// its window.
	GrantID        string    `json:"grantID,omitempty"`
	NotBefore      time.Time `json:"notBefore,omitempty"`
	GrantExpiresAt time.Time `json:"grantExpiresAt,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	// PendingUntil is when a request still pending counts as Expired.
	PendingUntil time.Time `json:"pendingUntil"`
	// ExpiresAt is when the record itself may be garbage-collected: after
	// its grant's window and the time it is kept for the record.
	ExpiresAt time.Time `json:"expiresAt"`
}

// Store is the state Portcullis keeps. All methods are safe for concurrent use.
// Returned values are copies: changing them does not change the store.
type Store interface {
	// Signing keys.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	CreateSigningKey(ctx context.Context, k SigningKey) error
	DeleteSigningKey(ctx context.Context, id string) error

	// Sessions.
	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, id string) (Session, error)
	// UpdateSession reads the session, calls update on a copy and writes the
	// result atomically. If update returns an error nothing is written and
	// that error is returned. A backend with optimistic concurrency (the
	// kubernetes one) calls update again, on the freshly read session, when
	// another writer got in first, so update must only change the session.
	UpdateSession(ctx context.Context, id string, update func(*Session) error) (Session, error)
	DeleteSession(ctx context.Context, id string) error
	ListSessions(ctx context.Context) ([]Session, error)
	// ListUserSessions returns the sessions whose Username is username
	// (exactly), sorted by ID: what the portal shows a user as theirs.
	ListUserSessions(ctx context.Context, username string) ([]Session, error)

	// Revocations. IsRevoked reports whether any of ids is revoked; it is on
	// the hot path of every token verification and must be cheap.
	Revoke(ctx context.Context, r Revocation) error
	IsRevoked(ctx context.Context, ids ...string) (bool, error)
	ListRevocations(ctx context.Context) ([]Revocation, error)

	// Grants.
	CreateGrant(ctx context.Context, g Grant) error
	ListGrants(ctx context.Context) ([]Grant, error)
	DeleteGrant(ctx context.Context, id string) error

	// Access requests. They are few and read only by the API, so backends
	// may read them from their durable state on each call.
	CreateAccessRequest(ctx context.Context, r AccessRequest) error
	GetAccessRequest(ctx context.Context, id string) (AccessRequest, error)
	// UpdateAccessRequest is UpdateSession's twin: update runs on a fresh
	// copy (more than once after a conflict) and only its result is written.
	UpdateAccessRequest(ctx context.Context, id string, update func(*AccessRequest) error) (AccessRequest, error)
	ListAccessRequests(ctx context.Context) ([]AccessRequest, error)

	// GarbageCollect deletes expired sessions, revocations, grants, access
	// requests (ExpiresAt passed) and signing keys (ExpireAt passed) and returns how many it deleted.
	GarbageCollect(ctx context.Context, now time.Time) (int, error)

	Close() error
}

// CloneAccessRequest returns a copy of r that shares nothing with it.
func CloneAccessRequest(r AccessRequest) AccessRequest {
	if r.Groups != nil {
		r.Groups = append([]string{}, r.Groups...)
	}
	if r.Approvals != nil {
		r.Approvals = append([]Approval{}, r.Approvals...)
	}
	return r
}
