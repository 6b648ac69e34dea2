package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// mintN mints n distinct tokens.
func mintN(b *testing.B, f *fixture, n int) []string {
	b.Helper()
	out := make([]string, n)
	for i := range out {
		out[i], _ = f.mint()
	}
	return out
}

// BenchmarkVerifyCold verifies a token never seen before on every iteration:
// parse, key lookup, signature, claims, revocation lookup, cache insert.
func BenchmarkVerifyCold(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	tokens := mintN(b, f, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.ver.Verify(ctx, tokens[i], testAudience); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if f.hits.Load() != 0 {
		b.Fatalf("%d cache hits in a cold benchmark", f.hits.Load())
	}
}

// BenchmarkES256VerifyRaw is one bare ECDSA P-256 verification, the floor
// under BenchmarkVerifyCold.
func BenchmarkES256VerifyRaw(b *testing.B) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("header.payload"))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	pub := &priv.PublicKey
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.Verify(pub, digest[:], r, s) {
			b.Fatal("verification failed")
		}
	}
}

// BenchmarkVerifyCached verifies the same token over and over: hash, cache
// lookup, time/audience checks, revocation lookup, claims copy.
func BenchmarkVerifyCached(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	raw, _ := f.mint()
	if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCachedParallel is BenchmarkVerifyCached from GOMAXPROCS
// goroutines, to show lock contention if any.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	tokens := mintN(b, f, 64)
	for _, raw := range tokens {
		if _, err := f.ver.Verify(ctx, raw, testAudience); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := f.ver.Verify(ctx, tokens[i%len(tokens)], testAudience); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkMint(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	c := f.claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.minter.Mint(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}
