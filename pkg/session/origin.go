package session

import (
	"context"

	"portcullis.dev/portcullis/pkg/store"
)

// Origin is where a session was created from, kept in the session so that
// its user can tell their sessions apart (the portal's "your sessions").
type Origin struct {
	// Client names what the session is for: "browser", "cli", "device".
	Client string
	// Address is the client's network address.
	Address string
}

// Create stores a new session for id, created from clientAddress by an
// unnamed client, and returns it with its refresh token.
func (m *Manager) Create(ctx context.Context, id User, upstreamRefreshToken, clientAddress string) (store.Session, string, error) {
	return m.CreateFrom(ctx, id, upstreamRefreshToken, Origin{Address: clientAddress})
}
