package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"portcullis.dev/portcullis/pkg/store"
)

// LabelSessionUser is on sessions: a hash of the session's username (a
// username may hold characters a label value cannot, and the label should
// not spell it out), so that a user's sessions are found with a label
// selector instead of reading every session.
const LabelSessionUser = "portcullis.dev/user-hash"

// userLabel is the value of LabelSessionUser: the first 128 bits of the
// username's SHA-256, in hex. Collisions do no harm: ListUserSessions
// compares the decoded usernames.
func userLabel(username string) string {
	sum := sha256.Sum256([]byte(username))
	return hex.EncodeToString(sum[:16])
}

// ListUserSessions lists username's sessions from the API server, sorted by
// ID: those labelled with the username's hash, and those written before the
// label existed (which have no such label), filtered by their username.
func (s *Store) ListUserSessions(ctx context.Context, username string) ([]store.Session, error) {
	out := []store.Session{}
	keep := func(sess store.Session, _ *corev1.Secret) error {
		if sess.Username == username {
			out = append(out, sess)
		}
		return nil
	}
	for _, sel := range []string{
		selector(kindSession) + "," + LabelSessionUser + "=" + userLabel(username),
		selector(kindSession) + ",!" + LabelSessionUser,
	} {
		if err := s.eachSession(ctx, sel, true, keep); err != nil {
			return nil, fmt.Errorf("listing the sessions of %s: %w", username, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
