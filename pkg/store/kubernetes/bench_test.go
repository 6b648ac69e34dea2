package kubernetes

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"portcullis.dev/portcullis/pkg/store"
)

// benchStore returns a store whose caches hold n revocations and 3 signing
// keys, as the informers would have filled them.
func benchStore(b *testing.B, n int) *Store {
	b.Helper()
	s, err := New(context.Background(), fake.NewClientset(), Options{Namespace: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("jti-%08d", i)
		s.revocations.put(id, store.Revocation{ID: id, Reason: "logout", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}, fmt.Sprint(i+1))
	}
	for i := range 3 {
		id := fmt.Sprintf("key-%d", i)
		s.keys.put(id, store.SigningKey{ID: id, Algorithm: "ES256", PrivateKeyPEM: make([]byte, 240), ExpireAt: now.Add(time.Hour)}, fmt.Sprint(n+i+1))
	}
	return s
}

// BenchmarkIsRevoked measures the check made on every token verification: a
// session ID and a token ID, against 10,000 revocations in the cache.
func BenchmarkIsRevoked(b *testing.B) {
	s := benchStore(b, 10_000)
	ctx := context.Background()
	check := func(b *testing.B, want bool, ids ...string) {
		b.ReportAllocs()
		for b.Loop() {
			revoked, err := s.IsRevoked(ctx, ids...)
			if err != nil || revoked != want {
				b.Fatalf("IsRevoked = %v, %v", revoked, err)
			}
		}
	}
	b.Run("neither ID revoked", func(b *testing.B) { check(b, false, "sess-live", "jti-live") })
	b.Run("token ID revoked", func(b *testing.B) { check(b, true, "sess-live", "jti-00005000") })
	b.Run("neither ID revoked, parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if revoked, err := s.IsRevoked(ctx, "sess-live", "jti-live"); err != nil || revoked {
					b.Errorf("IsRevoked = %v, %v", revoked, err)
					return
				}
			}
		})
	})
}

// BenchmarkListSigningKeys measures listing 3 keys from the cache (copies).
func BenchmarkListSigningKeys(b *testing.B) {
	s := benchStore(b, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		keys, err := s.ListSigningKeys(ctx)
		if err != nil || len(keys) != 3 {
			b.Fatalf("ListSigningKeys = %d keys, %v", len(keys), err)
		}
	}
}
