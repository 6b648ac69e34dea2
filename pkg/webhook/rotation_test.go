package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKeyRotationUnderLoad: many goroutines send reviews of freshly minted
// tokens (and of tokens minted a while ago, by keys since retired) through
// the handler while the signing key is rotated over and over. Not one valid
// review may be lost.
func TestKeyRotationUnderLoad(t *testing.T) {
	f := newFixture(t)
	duration := 3 * time.Second
	if testing.Short() {
		duration = time.Second
	}
	workers := 4 * runtime.GOMAXPROCS(0)
	if workers < 8 {
		workers = 8
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()

	var (
		rotations atomic.Int64
		reviews   atomic.Int64
		lost      atomic.Int64
		mu        sync.Mutex
		failures  []string
		kids      = map[string]bool{}
		wg        sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		lost.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := f.km.Rotate(context.Background()); err != nil {
				fail("rotate: %v", err)
				return
			}
			rotations.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()

	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			version := versions[w%len(versions)]
			var older []string // tokens minted earlier, most likely by retired keys
			for i := 0; ctx.Err() == nil; i++ {
				c := claimsFor(clusterC1)
				c.Username = fmt.Sprintf("user-%d-%d", w, i)
				raw, _, err := f.minter.Mint(context.Background(), c)
				if err != nil {
					fail("mint: %v", err)
					return
				}
				mu.Lock()
				kids[kidOf(raw)] = true
				mu.Unlock()
				toReview := []string{raw}
				if len(older) > 0 {
					toReview = append(toReview, older[i%len(older)])
				}
				for _, tok := range toReview {
					res := f.serve("POST", PathPrefix+"/"+clusterC1, reviewBody(t, version, tok, audDefault))
					reviews.Add(1)
					var out reviewResponse
					if res.code != 200 || json.Unmarshal(res.body, &out) != nil {
						fail("HTTP %d: %s", res.code, res.body)
						continue
					}
					if !out.Status.Authenticated {
						fail("valid token refused: %q", out.Status.Error)
					}
				}
				if len(older) < 32 {
					older = append(older, raw)
				} else if i%7 == 0 {
					older[i%len(older)] = raw
				}
			}
		}()
	}
	wg.Wait()

	t.Logf("%d reviews by %d goroutines, %d rotations, tokens signed by %d keys, in %s",
		reviews.Load(), workers, rotations.Load(), len(kids), duration)
	if n := lost.Load(); n > 0 {
		t.Fatalf("%d valid reviews lost; first failures:\n%s", n, strings.Join(failures, "\n"))
	}
	if rotations.Load() < 10 || len(kids) < 10 {
		t.Fatalf("only %d rotations and %d signing keys used: the test did not exercise rotation", rotations.Load(), len(kids))
	}
	if reviews.Load() < int64(workers) {
		t.Fatalf("only %d reviews", reviews.Load())
	}
}

// kidOf returns the kid of a compact JWS header, for counting keys.
func kidOf(raw string) string {
	h, _, _ := strings.Cut(raw, ".")
	b, err := b64.DecodeString(h)
	if err != nil {
		return ""
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &hdr)
	return hdr.Kid
}
