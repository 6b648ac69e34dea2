// Package benchsession makes the sessions the store benchmarks fill a store
// with (hack/bench/store, test/e2e's BenchmarkKubernetesSessionScale):
// realistic in size and shape, and derived from their number, so that a
// benchmark holds nothing per session.
package benchsession

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"sync"
	"time"

	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

// Settings are a typical deployment's session settings.
var Settings = session.Settings{
	IdleTimeout:      12 * time.Hour,
	MaxLifetime:      7 * 24 * time.Hour,
	ReuseGrace:       30 * time.Second,
	MaxTokenLifetime: time.Hour,
}

var b64 = base64.RawURLEncoding

func derive(what string, i int) []byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "portcullis-bench/%s/%d", what, i))
	return sum[:]
}

// ID is session i's ID.
func ID(i int) string { return b64.EncodeToString(derive("sid", i)[:16]) }

// FirstSecret is session i's first refresh secret.
func FirstSecret(i int) string { return b64.EncodeToString(derive("secret", i)) }

// RefreshToken is session i's first refresh token, as a client presents it.
func RefreshToken(i int) string { return ID(i) + "." + FirstSecret(i) }

// New is session i as a login makes it, created at created: five groups,
// an upstream refresh token, the hash of its first refresh secret.
func New(i int, created time.Time) store.Session {
	h := sha256.Sum256([]byte(FirstSecret(i)))
	user := fmt.Sprintf("user-%d@example.com", i)
	return store.Session{
		ID:                   ID(i),
		Username:             user,
		UID:                  fmt.Sprintf("CiQ%08d-0000-4000-8000-bench", i),
		Groups:               []string{"devs", "platform", "oncall", "readers", "team-" + strconv.Itoa(i%50)},
		Email:                user,
		IdentityProvider:     "dex",
		UpstreamRefreshToken: b64.EncodeToString(derive("upstream", i)) + b64.EncodeToString(derive("upstream2", i)),
		RefreshTokenHash:     h[:],
		ClientAddress:        "10.1.2.3",
		CreatedAt:            created,
		LastUsedAt:           created,
		IdleTimeout:          Settings.IdleTimeout,
		ExpiresAt:            created.Add(Settings.MaxLifetime),
	}
}

// Refresher refreshes benchmark sessions through a session.Manager, as a
// replica does, keeping the refresh token each refresh rotates to. It is
// safe for concurrent use.
type Refresher struct {
	mu      sync.Mutex
	rotated map[int]string
}

// Refresh refreshes session i with its current refresh token and returns
// how long the refresh took.
func (r *Refresher) Refresh(ctx context.Context, m *session.Manager, i int) (time.Duration, error) {
	r.mu.Lock()
	tok, ok := r.rotated[i]
	r.mu.Unlock()
	if !ok {
		tok = RefreshToken(i)
	}
	start := time.Now()
	res, err := m.Refresh(ctx, tok, nil, nil)
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("refreshing session %d: %w", i, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rotated == nil {
		r.rotated = map[int]string{}
	}
	r.rotated[i] = res.RefreshToken
	return d, nil
}
