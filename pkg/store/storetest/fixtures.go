package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/store"
)

// base is the reference time of every fixture. It has a nanosecond part so
// that backends which lose precision are caught.
var base = time.Date(2031, time.March, 4, 5, 6, 7, 123456789, time.UTC)

func signingKey(id string) store.SigningKey {
	return store.SigningKey{
		ID:            id,
		Algorithm:     "ES256",
		PrivateKeyPEM: []byte("-----BEGIN PRIVATE KEY-----\nfake key " + id + "\n-----END PRIVATE KEY-----\n"),
		CreatedAt:     base,
		ActiveAt:      base.Add(time.Hour),
		RetireAt:      base.Add(24 * time.Hour),
		ExpireAt:      base.Add(48 * time.Hour),
	}
}

func session(id string) store.Session {
	return store.Session{
		ID:                       id,
		Username:                 "alice@example.com",
		UID:                      "uid-" + id,
		Groups:                   []string{"devs", "oncall"},
		Extra:                    map[string][]string{"example.com/team": {"platform", "sre"}},
		Email:                    "alice@example.com",
		IdentityProvider:         "corp-oidc",
		UpstreamRefreshToken:     "fake-upstream-refresh-" + id,
		RefreshTokenHash:         []byte{0x01, 0x02, 0x03, 0xfe},
		PreviousRefreshTokenHash: []byte{0x0a, 0x0b},
		PreviousSealedNext:       []byte{0x0c, 0x0d},
		PreviousValidUntil:       base.Add(30 * time.Second),
		ClientAddress:            "192.0.2.10",
		Client:                   "cli",
		CreatedAt:                base,
		LastUsedAt:               base.Add(time.Minute),
		IdleTimeout:              8 * time.Hour,
		ExpiresAt:                base.Add(7 * 24 * time.Hour),
	}
}

func revocation(id string) store.Revocation {
	return store.Revocation{
		ID:        id,
		Reason:    "logout",
		RevokedBy: "alice@example.com",
		RevokedAt: base,
		ExpiresAt: base.Add(time.Hour),
	}
}

func grant(id string) store.Grant {
	return store.Grant{
		ID:        id,
		Username:  "bob@example.com",
		Cluster:   "prod-eu-1",
		Groups:    []string{"incident-responders", "cluster-admins"},
		Reason:    "INC-1234",
		GrantedBy: "carol@example.com",
		CreatedAt: base,
		NotBefore: base.Add(time.Minute),
		ExpiresAt: base.Add(4 * time.Hour),
	}
}

// Normalisation: backends may return times in another location or without
// the monotonic reading, and empty slices or maps as nil. Those differences
// are not observable through the API, so comparisons ignore them.

func normTime(t time.Time) time.Time { return t.UTC() }

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func normStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func normSigningKey(k store.SigningKey) store.SigningKey {
	k.PrivateKeyPEM = normBytes(k.PrivateKeyPEM)
	k.CreatedAt, k.ActiveAt = normTime(k.CreatedAt), normTime(k.ActiveAt)
	k.RetireAt, k.ExpireAt = normTime(k.RetireAt), normTime(k.ExpireAt)
	return k
}

func normSession(s store.Session) store.Session {
	s.Groups = normStrings(s.Groups)
	if len(s.Extra) == 0 {
		s.Extra = nil
	} else {
		extra := make(map[string][]string, len(s.Extra))
		for k, v := range s.Extra {
			extra[k] = normStrings(v)
		}
		s.Extra = extra
	}
	s.RefreshTokenHash = normBytes(s.RefreshTokenHash)
	s.PreviousRefreshTokenHash = normBytes(s.PreviousRefreshTokenHash)
	s.PreviousSealedNext = normBytes(s.PreviousSealedNext)
	s.PreviousValidUntil = normTime(s.PreviousValidUntil)
	s.CreatedAt, s.LastUsedAt = normTime(s.CreatedAt), normTime(s.LastUsedAt)
	s.ExpiresAt = normTime(s.ExpiresAt)
	return s
}

func normRevocation(r store.Revocation) store.Revocation {
	r.RevokedAt, r.ExpiresAt = normTime(r.RevokedAt), normTime(r.ExpiresAt)
	return r
}

func normGrant(g store.Grant) store.Grant {
	g.Groups = normStrings(g.Groups)
	g.CreatedAt, g.NotBefore = normTime(g.CreatedAt), normTime(g.NotBefore)
	g.ExpiresAt = normTime(g.ExpiresAt)
	return g
}

func normAll[T any](items []T, norm func(T) T, id func(T) string) []T {
	out := make([]T, len(items))
	for i, it := range items {
		out[i] = norm(it)
	}
	sort.Slice(out, func(i, j int) bool { return id(out[i]) < id(out[j]) })
	return out
}

func keyID(k store.SigningKey) string  { return k.ID }
func sessionID(s store.Session) string { return s.ID }
func revID(r store.Revocation) string  { return r.ID }
func grantID(g store.Grant) string     { return g.ID }

func assertEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s differs:\n got: %+v\nwant: %+v", what, got, want)
	}
}

func assertSession(t *testing.T, got, want store.Session) {
	t.Helper()
	assertEqual(t, fmt.Sprintf("session %q", want.ID), normSession(got), normSession(want))
}

func assertKeys(t *testing.T, s store.Store, want ...store.SigningKey) {
	t.Helper()
	got, err := s.ListSigningKeys(context.Background())
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	assertEqual(t, "signing keys", normAll(got, normSigningKey, keyID), normAll(want, normSigningKey, keyID))
}

func assertSessions(t *testing.T, s store.Store, want ...store.Session) {
	t.Helper()
	got, err := s.ListSessions(context.Background())
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	assertEqual(t, "sessions", normAll(got, normSession, sessionID), normAll(want, normSession, sessionID))
}

func assertRevocations(t *testing.T, s store.Store, want ...store.Revocation) {
	t.Helper()
	got, err := s.ListRevocations(context.Background())
	if err != nil {
		t.Fatalf("ListRevocations: %v", err)
	}
	assertEqual(t, "revocations", normAll(got, normRevocation, revID), normAll(want, normRevocation, revID))
}

func assertGrants(t *testing.T, s store.Store, want ...store.Grant) {
	t.Helper()
	got, err := s.ListGrants(context.Background())
	if err != nil {
		t.Fatalf("ListGrants: %v", err)
	}
	assertEqual(t, "grants", normAll(got, normGrant, grantID), normAll(want, normGrant, grantID))
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// dup returns a deep copy of v, so that a fixture handed to a store shares
// no slice or map with the value the test later compares against (otherwise
// a store that keeps the caller's slices would go unnoticed).
func dup[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}
