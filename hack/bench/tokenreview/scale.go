package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// The -scale mode: the webhook's cost curve as the number of distinct live
// tokens grows (issue 17). For each N, a fresh portcullis-server reviews
// tokens that the clients pick uniformly at random among N distinct ones, so
// that once N exceeds the verification cache (tokens.cacheSize) the cache
// hit ratio falls towards cacheSize/N and most reviews pay for a signature
// check.

// scalePoint is what one N measured.
type scalePoint struct {
	tokens    int
	phase     *phase
	rssKiB    int64 // VmRSS of portcullis-server after the measurement
	hwmKiB    int64 // VmHWM (peak resident)
	mintTime  time.Duration
	cacheSize int
}

func (p *scalePoint) hitRatio() float64 {
	if p.phase.hits+p.phase.misses == 0 {
		return 0
	}
	return p.phase.hits / (p.phase.hits + p.phase.misses)
}

func runScale(ctx context.Context, o *options, sizes []int) error {
	env, cleanup, err := newBenchEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	cacheSize := o.cacheSize
	if cacheSize == 0 {
		cacheSize = v1alpha1.DefaultTokenCacheSize
	}
	load0 := loadAverage()
	es256 := es256VerifyCPU(time.Second)
	logf("one ES256 verification (crypto/ecdsa, P-256): %s of CPU; verification cache: %d tokens", us(es256), cacheSize)
	var points []*scalePoint
	for _, n := range sizes {
		p, err := measureScale(ctx, o, env, n, cacheSize)
		if err != nil {
			return fmt.Errorf("%d tokens: %w", n, err)
		}
		points = append(points, p)
		if o.csv != "" { // written after every point: a long run leaves what it measured
			if err := writeScaleCSV(o.csv, points); err != nil {
				return err
			}
		}
	}
	reportScale(o, points, es256, cacheSize, load0, loadAverage())
	return nil
}

func measureScale(ctx context.Context, o *options, env *benchEnv, n, cacheSize int) (*scalePoint, error) {
	runtime.GOMAXPROCS(numCPU())
	start := time.Now()
	bodies, _, err := mintBodies(ctx, env.cfgPath, n, 0)
	if err != nil {
		return nil, err
	}
	mintTime := time.Since(start)
	runtime.GOMAXPROCS(o.clientProcs)
	logf("%d tokens: minted in %s; starting a fresh portcullis-server", n, mintTime.Round(time.Millisecond))
	pc, tlsConfig, err := env.startPortcullis(o.serverProcs)
	if err != nil {
		return nil, err
	}
	defer pc.stop()
	t := &target{
		phase: newPhase(strconv.Itoa(n)),
		c:     newClient(env.base, env.reviewPath, tlsConfig, o.proto, o.conns),
		srv:   pc,
		next: func() ([]byte, error) {
			return bodies[rand.IntN(len(bodies))], nil
		},
		scrape: true,
	}
	defer t.c.close()
	// Fill the verification cache as a long-running server's would be: with
	// as many of the N tokens as it holds. Under uniform picks and the
	// cache's arbitrary eviction, the hit ratio is then already at its
	// steady state, about min(1, cacheSize/N).
	if err := t.c.sendAll(o.concurrency, bodies[:min(n, cacheSize)], authenticated); err != nil {
		return nil, fmt.Errorf("filling the cache: %w", err)
	}
	logf("%d tokens: measuring for %s", n, o.duration)
	if err := t.measure(o.concurrency, o.duration); err != nil {
		return nil, err
	}
	if err := pc.exited(); err != nil {
		return nil, err
	}
	p := &scalePoint{tokens: n, phase: t.phase, mintTime: mintTime, cacheSize: cacheSize}
	p.rssKiB, p.hwmKiB, err = pc.memory()
	if err != nil {
		return nil, err
	}
	r := t.res
	if r.errors > 0 {
		return nil, fmt.Errorf("%d reviews failed; first: %w", r.errors, r.firstErr)
	}
	logf("%d tokens: %.0f reviews/s, p50 %s, p99 %s, server CPU %s/review, cache hits %.1f %%, RSS %.1f MiB",
		n, r.rate(), ms(r.percentile(0.50)), ms(r.percentile(0.99)), us(t.cpuPerReview()), 100*p.hitRatio(), float64(p.rssKiB)/1024)
	return p, nil
}

var scaleCSVHeader = []string{"tokens", "cache_size", "reviews", "seconds", "reviews_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_review", "cache_hit_ratio", "rss_mib", "peak_rss_mib"}

func writeScaleCSV(path string, points []*scalePoint) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(scaleCSVHeader)
	for _, p := range points {
		r := p.phase.res
		_ = w.Write([]string{
			strconv.Itoa(p.tokens),
			strconv.Itoa(p.cacheSize),
			strconv.FormatInt(r.reviews, 10),
			fmt.Sprintf("%.2f", r.elapsed.Seconds()),
			fmt.Sprintf("%.0f", r.rate()),
			fmt.Sprintf("%.3f", float64(r.percentile(0.50))/float64(time.Millisecond)),
			fmt.Sprintf("%.3f", float64(r.percentile(0.99))/float64(time.Millisecond)),
			fmt.Sprintf("%.1f", float64(p.phase.cpuPerReview())/float64(time.Microsecond)),
			fmt.Sprintf("%.4f", p.hitRatio()),
			fmt.Sprintf("%.1f", float64(p.rssKiB)/1024),
			fmt.Sprintf("%.1f", float64(p.hwmKiB)/1024),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reportScale prints the curve as a markdown table.
func reportScale(o *options, points []*scalePoint, es256 time.Duration, cacheSize int, load0, load1 string) {
	fmt.Printf("Webhook cost curve: %s, %d cores; portcullis-server GOMAXPROCS=%d, load generator GOMAXPROCS=%d; %s, %d connections, %d in flight; %s per point; verification cache %d tokens; load average %s → %s\n\n",
		cpuModel(), numCPU(), o.serverProcs, o.clientProcs, o.proto, o.conns, o.concurrency, o.duration, cacheSize, load0, load1)
	fmt.Println("| distinct live tokens | reviews/s | p50 | p99 | server CPU/review | cache hits | RSS (peak) |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range points {
		r := p.phase.res
		fmt.Printf("| %d | %.0f | %s | %s | %s | %.1f %% | %.1f MiB (%.1f) |\n", p.tokens, r.rate(),
			ms(r.percentile(0.50)), ms(r.percentile(0.99)), us(p.phase.cpuPerReview()), 100*p.hitRatio(),
			float64(p.rssKiB)/1024, float64(p.hwmKiB)/1024)
	}
	fmt.Printf("\n- one ES256 verification (crypto/ecdsa P-256, measured here in CPU time): %s\n", us(es256))
	if hit, miss, ok := missCost(points); ok {
		fmt.Printf("- least-squares fit of server CPU/review against the miss ratio: %s per review when every token is cached, **+%s per miss** (%.1f× one ES256 verification)\n",
			us(hit), us(miss), float64(miss)/float64(es256))
	}
}

// missCost fits CPU per review = hit + missRatio·miss over the points.
func missCost(points []*scalePoint) (hit, miss time.Duration, ok bool) {
	var n, sx, sy, sxx, sxy float64
	for _, p := range points {
		x, y := 1-p.hitRatio(), float64(p.phase.cpuPerReview())
		n, sx, sy, sxx, sxy = n+1, sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if n < 2 || d < 1e-9 {
		return 0, 0, false
	}
	b := (n*sxy - sx*sy) / d
	return time.Duration((sy - b*sx) / n), time.Duration(b), true
}
