// Package loginstate keeps the short-lived state of logins in progress:
// pending browser logins, one-time codes for the CLI, device codes. Each
// entry lives for minutes and most are used once.
//
// With one replica the state can live in memory (Memory). With several, any
// replica must be able to serve any step of a login (a device code issued by
// one, approved on a second, polled on a third), so the state lives in the
// Kubernetes API next to the rest of Portcullis's state (Kubernetes), never
// in sticky sessions.
//
// Entries may hold secrets (minted tokens and refresh secrets waiting to be
// picked up): backends must keep them as secrets and never log them.
package loginstate

import (
	"context"
	"errors"
	"time"
)

// Kind names a family of entries; keys are unique within a kind.
type Kind string

// The kinds the portal uses. A kind must be a short DNS label.
const (
	KindAttempt    Kind = "attempt"     // a browser login waiting for the IdP's callback
	KindCode       Kind = "code"        // a one-time code waiting for the CLI
	KindDevice     Kind = "device"      // a device code waiting for approval and polls
	KindDeviceUser Kind = "device-user" // a user code, pointing at its device code
)

var (
	// ErrNotFound: no live entry under that key (never created, taken,
	// removed or expired).
	ErrNotFound = errors.New("loginstate: not found")
	// ErrExists: Create found a live entry under that key.
	ErrExists = errors.New("loginstate: already exists")
	// ErrFull: the backend holds as many live entries as it may.
	ErrFull = errors.New("loginstate: too many logins in progress")
)

// Store keeps entries. All methods are safe for concurrent use, also across
// processes sharing a backend.
type Store interface {
	// Create stores data under kind/key until expires.
	Create(ctx context.Context, kind Kind, key string, data []byte, expires time.Time) error
	// Get returns a live entry's data and expiry.
	Get(ctx context.Context, kind Kind, key string) ([]byte, time.Time, error)
	// Take removes a live entry and returns its data. Of several concurrent
	// Takes of one entry, exactly one succeeds.
	Take(ctx context.Context, kind Kind, key string) ([]byte, error)
	// Update calls f with a live entry's data and stores what f returns;
	// when f returns remove, the entry is removed instead. f may be called
	// more than once (optimistic concurrency); if it returns an error,
	// nothing is written and that error is returned. Update returns the data
	// f last returned.
	Update(ctx context.Context, kind Kind, key string, f func(data []byte) (next []byte, remove bool, err error)) ([]byte, error)
	// Collect removes expired entries and returns how many.
	Collect(ctx context.Context, now time.Time) (int, error)
}
