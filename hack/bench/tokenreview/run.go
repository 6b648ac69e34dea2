package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/pkg/webhook"
)

const (
	benchCluster = "bench"
	// apiAudience is what kube-apiserver sends in spec.audiences by default
	// (its --api-audiences, i.e. its service-account issuer), and the
	// default clusters[].apiAudiences.
	apiAudience = "https://kubernetes.default.svc"
)

// authenticated is how every answer of a successful review looks (compact
// JSON).
var authenticated = []byte(`"authenticated":true`)

// phase is one measured run against one server.
type phase struct {
	id        string // a, b, c or d
	res       *loadResult
	serverCPU time.Duration
	clientCPU time.Duration
	hits      float64 // verification cache hits and misses during the run
	misses    float64
}

func (p *phase) cpuPerReview() time.Duration {
	if p.res.reviews == 0 {
		return 0
	}
	return p.serverCPU / time.Duration(p.res.reviews)
}

// benchEnv is what every mode shares: a working directory with the
// Portcullis configuration and store, the client PKI, and the
// portcullis-server command line.
type benchEnv struct {
	dir        string
	pki        *clientPKI
	port       int
	cfgPath    string
	certDir    string
	args       []string // portcullis-server's
	base       string   // https://127.0.0.1:<port>
	reviewPath string
}

// newBenchEnv prepares the working directory; cleanup removes it unless
// -keep.
func newBenchEnv(o *options) (env *benchEnv, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "tokenreview-bench-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	if o.keep {
		logf("working directory: %s", dir)
		cleanup = func() {}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	pki, err := newClientPKI(dir)
	if err != nil {
		return nil, nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfgYAML := fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
clusters:
- name: %s
  access:
    groups: [ops]
webhook:
  clientCAFile: %s
`, port, filepath.Join(dir, "state.db"), benchCluster, pki.caFile)
	if o.cacheSize != 0 {
		cfgYAML += fmt.Sprintf("tokens:\n  cacheSize: %d\n", o.cacheSize)
	}
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		return nil, nil, err
	}
	certDir := filepath.Join(dir, "certs")
	args := []string{
		"--config=" + cfgPath,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
	}
	if o.audit {
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o600); err != nil {
			return nil, nil, err
		}
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+filepath.Join(dir, "audit.log"))
	}
	if o.profile != "" {
		args = append(args, "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/debug/pprof/*")
	}
	return &benchEnv{
		dir:        dir,
		pki:        pki,
		port:       port,
		cfgPath:    cfgPath,
		certDir:    certDir,
		args:       args,
		base:       fmt.Sprintf("https://127.0.0.1:%d", port),
		reviewPath: webhook.PathPrefix + "/" + benchCluster,
	}, cleanup, nil
}

// startPortcullis starts portcullis-server and waits until it is ready; it
// returns the client's TLS configuration.
func (e *benchEnv) startPortcullis(procs int) (*child, *tls.Config, error) {
	pc, err := startChild(e.dir, "portcullis-server", "portcullis", procs, e.args...)
	if err != nil {
		return nil, nil, err
	}
	tlsConfig, err := waitPortcullis(pc, e.base, filepath.Join(e.certDir, "portcullis.crt"), e.pki)
	if err != nil {
		pc.stop()
		return nil, nil, err
	}
	return pc, tlsConfig, nil
}

func run(ctx context.Context, o *options) error {
	env, cleanup, err := newBenchEnv(o)
	if err != nil {
		return err
	}
	defer cleanup()
	dir, pki, cfgPath := env.dir, env.pki, env.cfgPath
	echoPort, err := freePort()
	if err != nil {
		return err
	}
	load0 := loadAverage()

	// The reference: one raw ES256 verification, in CPU time.
	es256 := es256VerifyCPU(time.Second)
	logf("one ES256 verification (crypto/ecdsa, P-256): %s of CPU", us(es256))

	cold := o.cold
	if cold == 0 {
		// A cold review cannot cost less than the one ES256 verification of
		// its token, so no server core reviews more than one per
		// verification's time: budget for that rate over every round's
		// phase, half as much again for a verification timed under more load
		// here than in the server, and each round's warm-up.
		perCore := float64(time.Second) / float64(es256)
		cold = int(1.5*perCore*float64(o.serverProcs)*o.duration.Seconds()*float64(o.rounds)) + 2*o.concurrency*o.rounds
		cold = min(cold, 500000)
	}
	if !strings.Contains(o.phases, "b") {
		cold = 0
	}
	runtime.GOMAXPROCS(numCPU())
	start := time.Now()
	warmBodies, coldBodies, err := mintBodies(ctx, cfgPath, o.warm, cold)
	if err != nil {
		return err
	}
	logf("minted %d warm and %d cold tokens in %s", len(warmBodies), len(coldBodies), time.Since(start).Round(time.Millisecond))
	runtime.GOMAXPROCS(o.clientProcs)
	// (d) reads a copy of the store: portcullis-server locks the file.
	handlerStore := filepath.Join(dir, "state-d.db")
	if err := copyFile(filepath.Join(dir, "state.db"), handlerStore); err != nil {
		return err
	}

	// (a) and (b): portcullis-server, as cmd/portcullis-server runs it.
	certDir, args, base, reviewPath := env.certDir, env.args, env.base, env.reviewPath
	pc, tlsConfig, err := env.startPortcullis(o.serverProcs)
	if err != nil {
		return err
	}
	defer func() { pc.stop() }()

	// (c): the bare TLS server answers what Portcullis answers.
	probe := newClient(base, reviewPath, tlsConfig, o.proto, 1)
	w := &worker{hc: probe.clients[0]}
	if err := probe.do(w, warmBodies[0], authenticated); err != nil {
		return fmt.Errorf("a first review failed: %w", err)
	}
	answer := slices.Clone(w.buf.Bytes())
	probe.close()
	responseFile := filepath.Join(dir, "response.json")
	if err := os.WriteFile(responseFile, answer, 0o600); err != nil {
		return err
	}
	ec, err := startChild(dir, "echo", "echo", o.serverProcs,
		fmt.Sprintf("-addr=127.0.0.1:%d", echoPort),
		"-cert="+filepath.Join(certDir, "portcullis.crt"), "-key="+filepath.Join(certDir, "portcullis.key"),
		"-client-ca="+pki.caFile, "-response="+responseFile)
	if err != nil {
		return err
	}
	defer ec.stop()
	echoBase := fmt.Sprintf("https://127.0.0.1:%d", echoPort)

	// (d): Portcullis's handler on the bare server.
	handlerPort, err := freePort()
	if err != nil {
		return err
	}
	hc, err := startChild(dir, "handler", "handler", o.serverProcs,
		fmt.Sprintf("-addr=127.0.0.1:%d", handlerPort),
		"-cert="+filepath.Join(certDir, "portcullis.crt"), "-key="+filepath.Join(certDir, "portcullis.key"),
		"-client-ca="+pki.caFile, "-config="+cfgPath, "-store="+handlerStore)
	if err != nil {
		return err
	}
	defer hc.stop()
	handlerBase := fmt.Sprintf("https://127.0.0.1:%d", handlerPort)
	if err := waitEcho(hc, handlerBase, reviewPath, tlsConfig, o.proto, warmBodies[0]); err != nil {
		return fmt.Errorf("(d): %w", err)
	}
	if err := waitEcho(ec, echoBase, reviewPath, tlsConfig, o.proto, warmBodies[0]); err != nil {
		return err
	}

	var (
		results  = map[string][]*phase{}
		warmNext atomic.Int64
		coldNext atomic.Int64
	)
	nextWarm := func() ([]byte, error) {
		return warmBodies[(warmNext.Add(1)-1)%int64(len(warmBodies))], nil
	}
	nextCold := func() ([]byte, error) {
		n := coldNext.Add(1) - 1
		if n >= int64(len(coldBodies)) {
			return nil, errNoMore
		}
		return coldBodies[n], nil
	}
	has := func(id string) bool { return slices.Contains(strings.Split(o.phases, ","), id) }
	for round := 1; round <= o.rounds; round++ {
		if round > 1 && has("a") {
			// A fresh server, so that (a) starts from an empty verification
			// cache rather than one full of (b)'s one-off tokens (which its
			// random eviction pushes out only over many passes).
			if err := pc.exited(); err != nil {
				return err
			}
			pc.stop()
			logf("round %d: restarting portcullis-server", round)
			if pc, err = startChild(dir, "portcullis-server", "portcullis", o.serverProcs, args...); err != nil {
				return err
			}
			if _, err := waitPortcullis(pc, base, filepath.Join(certDir, "portcullis.crt"), pki); err != nil {
				return err
			}
		}
		// (a) and (c), interleaved in short slices so that both see the
		// same background load (the machine may be shared).
		var interleaved []*target
		if has("a") {
			t := &target{phase: newPhase("a"), c: newClient(base, reviewPath, tlsConfig, o.proto, o.conns), srv: pc, next: nextWarm, scrape: true}
			if err := prime(t.c, o.concurrency, warmBodies, round); err != nil {
				return err
			}
			interleaved = append(interleaved, t)
		}
		if has("c") {
			t := &target{phase: newPhase("c"), c: newClient(echoBase, reviewPath, tlsConfig, o.proto, o.conns), srv: ec, next: nextWarm}
			if err := t.c.sendAll(o.concurrency, warmBodies[:min(len(warmBodies), 2000)], authenticated); err != nil {
				return fmt.Errorf("warming up (c): %w", err)
			}
			interleaved = append(interleaved, t)
		}
		if has("d") {
			t := &target{phase: newPhase("d"), c: newClient(handlerBase, reviewPath, tlsConfig, o.proto, o.conns), srv: hc, next: nextWarm}
			// Its verification cache lives as long as the process: one pass
			// fills it in the first round.
			if err := t.c.sendAll(o.concurrency, warmBodies, authenticated); err != nil {
				return fmt.Errorf("warming up (d): %w", err)
			}
			interleaved = append(interleaved, t)
		}
		if len(interleaved) > 0 {
			logf("round %d: measuring %s for %s each, in slices of %s", round, strings.Join(ids(interleaved), " and "), o.duration, o.slice)
			profiled := o.startProfile(interleaved[0], time.Duration(len(interleaved))*o.duration, round)
			for i, done := 0, time.Duration(0); done < o.duration; i++ {
				d := min(o.slice, o.duration-done)
				order := slices.Clone(interleaved)
				if i%2 == 1 {
					slices.Reverse(order)
				}
				for _, t := range order {
					if err := t.measure(o.concurrency, d); err != nil {
						return err
					}
				}
				done += d
			}
			if err := <-profiled; err != nil {
				logf("profiling: %v", err)
			}
		}
		// (b) last: its one-off tokens fill the verification cache.
		var all []*target
		all = append(all, interleaved...)
		if has("b") {
			t := &target{phase: newPhase("b"), c: newClient(base, reviewPath, tlsConfig, o.proto, o.conns), srv: pc, next: nextCold, scrape: true}
			// Open the connections with tokens of their own.
			warmup := make([][]byte, 0, o.concurrency)
			for range o.concurrency {
				if b, err := nextCold(); err == nil {
					warmup = append(warmup, b)
				}
			}
			if err := t.c.sendAll(o.concurrency, warmup, authenticated); err != nil {
				return fmt.Errorf("warming up (b): %w", err)
			}
			logf("round %d: measuring b for %s", round, o.duration)
			profiled := o.startProfile(t, o.duration, round)
			if err := t.measure(o.concurrency, o.duration); err != nil {
				return err
			}
			if err := <-profiled; err != nil {
				logf("profiling: %v", err)
			}
			all = append(all, t)
		}
		for _, t := range all {
			t.c.close()
			p := t.phase
			slices.Sort(p.res.latencies)
			if p.res.errors > 0 {
				return fmt.Errorf("round %d (%s): %d reviews failed; first: %w", round, p.id, p.res.errors, p.res.firstErr)
			}
			if p.res.exhausted {
				logf("round %d (%s): the pre-minted tokens ran out after %s; raise -cold-tokens", round, p.id, p.res.elapsed.Round(time.Millisecond))
			}
			logf("round %d (%s): %.0f reviews/s, p50 %s, p99 %s, server CPU %s/review",
				round, p.id, p.res.rate(), ms(p.res.percentile(0.50)), ms(p.res.percentile(0.99)), us(p.cpuPerReview()))
			results[p.id] = append(results[p.id], p)
		}
	}
	if err := pc.exited(); err != nil {
		return err
	}
	report(o, results, es256, load0, loadAverage())
	return nil
}

// target is one phase being measured: a client of one server.
type target struct {
	*phase
	c      *client
	srv    *child
	next   func() ([]byte, error)
	scrape bool // read the verification cache counters (Portcullis only)
}

func newPhase(id string) *phase { return &phase{id: id, res: &loadResult{}} }

func ids(ts []*target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.id)
	}
	return out
}

// measure runs the client against the target for d and adds the results,
// the server's CPU time and the cache counters to the target's phase.
func (t *target) measure(concurrency int, d time.Duration) error {
	var before map[string]float64
	if t.scrape {
		before = cacheCounters(t.c)
	}
	cpu0, err := t.srv.cpu()
	if err != nil {
		return err
	}
	self0 := selfCPU()
	res := t.c.run(concurrency, d, t.next, authenticated, true)
	t.clientCPU += selfCPU() - self0
	cpu1, err := t.srv.cpu()
	if err != nil {
		return err
	}
	t.serverCPU += cpu1 - cpu0
	if t.scrape {
		after := cacheCounters(t.c)
		t.hits += after["hit"] - before["hit"]
		t.misses += after["miss"] - before["miss"]
	}
	r := t.res
	r.reviews += res.reviews
	r.errors += res.errors
	if r.firstErr == nil {
		r.firstErr = res.firstErr
	}
	r.elapsed += res.elapsed
	r.latencies = append(r.latencies, res.latencies...)
	r.exhausted = r.exhausted || res.exhausted
	return nil
}

// startProfile fetches a CPU profile of portcullis-server over d, if asked.
func (o *options) startProfile(t *target, d time.Duration, round int) <-chan error {
	done := make(chan error, 1)
	if o.profile == "" || t.id == "c" {
		done <- nil
		return done
	}
	go func() {
		done <- fetchProfile(t.c, d, filepath.Join(o.profile, fmt.Sprintf("portcullis-%s-round%d.pprof", t.id, round)))
	}()
	return done
}

// prime reviews the warm set until the verification cache holds it. The
// cache evicts at random when full, so tokens left over from (b) are pushed
// out only gradually: one pass is not enough after (b) has run.
func prime(c *client, concurrency int, warm [][]byte, round int) error {
	for pass := 1; ; pass++ {
		before := cacheCounters(c)
		if err := c.sendAll(concurrency, warm, authenticated); err != nil {
			return fmt.Errorf("priming (a): %w", err)
		}
		after := cacheCounters(c)
		missRate := (after["miss"] - before["miss"]) / float64(len(warm))
		logf("round %d (a): priming pass %d over the %d warm tokens: %.1f %% cache misses", round, pass, len(warm), 100*missRate)
		if missRate < 0.05 || pass == 8 {
			return nil
		}
	}
}

// mintBodies mints warm+cold distinct tokens into the server's store, with
// the server's own code (pkg/server opens the store and ensures a key;
// pkg/token mints), and returns the TokenReviews kube-apiserver would send
// for them.
func mintBodies(ctx context.Context, cfgPath string, warm, cold int) (warmBodies, coldBodies [][]byte, err error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	st, err := server.OpenStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	km, err := server.NewKeys(ctx, cfg, st, nil)
	if err != nil {
		return nil, nil, err
	}
	minter, err := token.NewMinter(km, cfg.IssuerURL, nil)
	if err != nil {
		return nil, nil, err
	}
	bodies := make([][]byte, warm+cold)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		exp      = time.Now().Add(time.Hour)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				user := fmt.Sprintf("user-%d", i)
				raw, _, err := minter.Mint(ctx, token.Claims{
					Subject:          "sub-" + user,
					Username:         user + "@example.com",
					UID:              "uid-" + user,
					Groups:           []string{"ops", "developers"},
					Audience:         []string{benchCluster},
					SessionID:        "session-" + user,
					IdentityProvider: "corp",
					Email:            user + "@example.com",
					Expiry:           exp,
				})
				if err == nil {
					bodies[i], err = json.Marshal(&authenticationv1.TokenReview{
						TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
						Spec:     authenticationv1.TokenReviewSpec{Token: raw, Audiences: []string{apiAudience}},
					})
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	return bodies[:warm], bodies[warm:], nil
}

// waitPortcullis waits until the server has written its self-signed
// certificate and answers /readyz to the client certificate, and returns the
// client's TLS configuration.
func waitPortcullis(pc *child, base, caFile string, pki *clientPKI) (*tls.Config, error) {
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := pc.exited(); err != nil {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			last = err
			continue
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			last = errors.New("no certificate in " + caFile + " yet")
			continue
		}
		cfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12}
		c := newClient(base, "", cfg, "h1", 1)
		_, err = c.get("/readyz")
		c.close()
		if err == nil {
			return cfg, nil
		}
		last = err
	}
	return nil, fmt.Errorf("portcullis-server did not become ready: %v (log: %s)", last, pc.log)
}

func waitEcho(ec *child, base, path string, cfg *tls.Config, proto string, body []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := ec.exited(); err != nil {
			return err
		}
		c := newClient(base, path, cfg, proto, 1)
		last = c.do(&worker{hc: c.clients[0]}, body, authenticated)
		c.close()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer: %v (log: %s)", ec.name, last, ec.log)
}

// fetchProfile writes a CPU profile of the server over most of d.
func fetchProfile(c *client, d time.Duration, path string) error {
	secs := max(1, int((d - 500*time.Millisecond).Seconds()))
	b, err := c.get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// cacheCounters reads portcullis_token_cache_lookups_total from /metrics.
func cacheCounters(c *client) map[string]float64 {
	out := map[string]float64{}
	b, err := c.get("/metrics")
	if err != nil {
		logf("reading /metrics: %v", err)
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `portcullis_token_cache_lookups_total{result="`)
		if !ok {
			continue
		}
		result, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[result] = v
		}
	}
	return out
}

// es256VerifyCPU times crypto/ecdsa.Verify of a P-256 signature over a
// SHA-256 digest (what pkg/token does for each cold token) in CPU time of
// the calling thread, for about d of wall time.
func es256VerifyCPU(d time.Duration) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	digest := sha256.Sum256([]byte("header.payload"))
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		panic(err)
	}
	for range 50 { // warm up
		ecdsa.Verify(&priv.PublicKey, digest[:], r, s)
	}
	n := 0
	cpu0, wall0 := threadCPU(), time.Now()
	for time.Since(wall0) < d {
		for range 20 {
			if !ecdsa.Verify(&priv.PublicKey, digest[:], r, s) {
				panic("ES256 verification failed")
			}
		}
		n += 20
	}
	cpu := threadCPU() - cpu0
	if cpu <= 0 { // no per-thread accounting: fall back to wall time
		cpu = time.Since(wall0)
	}
	return cpu / time.Duration(n)
}

// threadCPU is the calling thread's CPU time (getrusage RUSAGE_THREAD).
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report prints the results as markdown. With several rounds every figure
// is the median over the rounds.
func report(o *options, results map[string][]*phase, es256 time.Duration, load0, load1 string) {
	names := map[string]string{
		"a": fmt.Sprintf("(a) Portcullis, warm set of %d tokens", o.warm),
		"b": "(b) Portcullis, always-new tokens",
		"c": "(c) bare Go TLS server, same answer",
		"d": "(d) bare Go TLS server + Portcullis's TokenReview handler",
	}
	med := func(id string, f func(*phase) float64) float64 {
		var xs []float64
		for _, p := range results[id] {
			xs = append(xs, f(p))
		}
		return median(xs)
	}
	rate := func(p *phase) float64 { return p.res.rate() }
	p50 := func(p *phase) float64 { return float64(p.res.percentile(0.50)) }
	p99 := func(p *phase) float64 { return float64(p.res.percentile(0.99)) }
	srvCPU := func(p *phase) float64 { return float64(p.cpuPerReview()) }
	cliCPU := func(p *phase) float64 { return float64(p.clientCPU) / float64(max(1, p.res.reviews)) }

	fmt.Printf("TokenReview load benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Printf("- machine: %s, %d CPUs visible, load average %s before, %s after\n", cpuModel(), numCPU(), load0, load1)
	fmt.Printf("- %s; servers GOMAXPROCS=%d each, load generator GOMAXPROCS=%d\n", runtime.Version(), o.serverProcs, o.clientProcs)
	fmt.Printf("- %s, %d keep-alive connections, %d reviews in flight, %s per phase ((a), (c) and (d) interleaved in %s slices), %d round(s) (figures: median over rounds)\n",
		map[string]string{"h2": "HTTP/2", "h1": "HTTP/1.1"}[o.proto], o.conns, o.concurrency, o.duration, o.slice, o.rounds)
	audit := "off"
	if o.audit {
		audit = "Metadata level, to a file"
	}
	cache := "default"
	if o.cacheSize != 0 {
		cache = strconv.Itoa(o.cacheSize)
	}
	fmt.Printf("- Portcullis: tokens.cacheSize %s, audit log %s; reviews ask for spec.audiences [%s]\n\n", cache, audit, apiAudience)

	fmt.Println("| target | reviews/s | p50 | p99 | server CPU / review | client CPU / review | cache hit rate |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, id := range []string{"a", "b", "c", "d"} {
		if len(results[id]) == 0 {
			continue
		}
		hitRate := "n/a"
		if id == "a" || id == "b" {
			hitRate = fmt.Sprintf("%.1f %%", 100*med(id, func(p *phase) float64 {
				if p.hits+p.misses == 0 {
					return 0
				}
				return p.hits / (p.hits + p.misses)
			}))
		}
		fmt.Printf("| %s | %.0f | %s | %s | %s | %s | %s |\n", names[id], med(id, rate),
			ms(time.Duration(med(id, p50))), ms(time.Duration(med(id, p99))),
			us(time.Duration(med(id, srvCPU))), us(time.Duration(med(id, cliCPU))), hitRate)
	}
	fmt.Println()
	for _, r := range []struct{ x, y, what string }{
		{"a", "c", " (target ≥ 0.85)"},
		{"d", "c", ": what the handler's own work leaves of the bare server's rate"},
		{"a", "d", ": what the generic handler chain leaves of the handler's"},
	} {
		if len(results[r.x]) == 0 || len(results[r.y]) == 0 {
			continue
		}
		var ratios []float64
		for i := range min(len(results[r.x]), len(results[r.y])) {
			ratios = append(ratios, results[r.x][i].res.rate()/results[r.y][i].res.rate())
		}
		fmt.Printf("- %s/%s = **%.2f**%s", r.x, r.y, median(ratios), r.what)
		if len(ratios) > 1 {
			fmt.Printf("; per round: %s", formatFloats(ratios))
		}
		fmt.Println()
	}
	fmt.Printf("- one ES256 verification (crypto/ecdsa P-256, measured here in CPU time): %s\n", us(es256))
	if len(results["b"]) > 0 {
		b := time.Duration(med("b", srvCPU))
		fmt.Printf("- (b) server CPU per review: %s = **%.1f×** one ES256 verification", us(b), float64(b)/float64(es256))
		if len(results["a"]) > 0 {
			var diffs []float64
			for i := range min(len(results["a"]), len(results["b"])) {
				diffs = append(diffs, float64(results["b"][i].cpuPerReview()-results["a"][i].cpuPerReview()))
			}
			d := time.Duration(median(diffs))
			fmt.Printf("; (b) − (a), the cost of verifying a new token = %s = %.1f×", us(d), float64(d)/float64(es256))
		}
		fmt.Println()
	}
}

func formatFloats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}

// copyFile copies src to dst (created, mode 0600).
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}
