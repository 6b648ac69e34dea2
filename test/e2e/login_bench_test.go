package e2e

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"portcullis.dev/portcullis/test/e2e/framework"
)

var (
	loginInFlight = flag.String("login-inflight", "1,2,4,8,16,32", "BenchmarkLoginCurve: logins in flight at each point")
	loginDuration = flag.Duration("login-duration", 8*time.Second, "BenchmarkLoginCurve: how long each point runs")
	loginSeries   = flag.String("login-series", "bcrypt-10,no-password", "BenchmarkLoginCurve: series to measure: bcrypt-<cost> (Dex's static password hashed at that cost, 10 to 16) or no-password (Dex's mockCallback connector), each with the suffix +ecdsa for a serving certificate with an ECDSA P-256 key instead of portcullis-server's self-signed RSA 2048 one")
	loginCSV      = flag.String("login-csv", "", "BenchmarkLoginCurve: write the curve to this CSV file")
)

// loginCurveCluster is the one cluster the logins mint a token for.
const loginCurveCluster = "c1"

// loginCurveRedirect is the CLI's loopback redirect the logins name. Nothing
// listens there: the driver stops at the portal's redirect to it and takes
// the one-time code from it, as the CLI's listener would.
const loginCurveRedirect = "http://127.0.0.1:1/callback"

// BenchmarkLoginCurve measures how many complete logins a second the portal
// sustains with a local Dex, as the logins in flight grow (issue 17, the
// login cost curve). A login is what `portcullis login` does with a
// browser, played over HTTP: GET /login/dex with the CLI's loopback
// parameters, Dex's pages (its password form, or the connector chooser of
// the no-password series), the callback (the portal exchanges Dex's code,
// verifies the ID token), the redirect to the CLI's loopback address with
// a one-time code, and POST /portal/api/token, which creates the session in
// the store and mints the cluster token. Each login has its own cookie jar;
// connections are kept alive between logins.
//
// For each series it starts Dex (memory storage, logger at info) and one
// portcullis-server (bolt store, as the demo), and for each number of
// logins in flight runs that many workers, each logging in again and again
// for -login-duration. It reports logins/s, p50/p99 of a login, the CPU per
// login of portcullis-server, of Dex and of the load generator (from
// /proc/<pid>/stat), each one's resident memory after the point, and checks
// the last token of every point with a TokenReview at the webhook. It
// counts the connections the load generator opens to portcullis-server: the
// browser's are kept and its TLS sessions resumed, but the portal closes an
// anonymous client's HTTP/2 connection after each request, and the CLI's
// token request is a new process's, so a new connection with a full TLS
// handshake.
//
// The series (-login-series) are bcrypt-<cost>, Dex's static password
// hashed at that cost (Dex refuses, at login, a hash below cost 10), and
// no-password, Dex's mockCallback connector; a suffix +ecdsa serves
// portcullis-server with an ECDSA P-256 key instead of its self-signed RSA
// 2048 one.
//
// Every login comes from 127.0.0.1, so the portal's login-start limits
// (20 at once per client, then one every 6 s; 500 at once for everyone,
// then 5 a second) would throttle it within seconds: the benchmark raises
// them in the configuration (portal.loginStartLimits), as an operator would.
//
//	go test ./test/e2e -run '^$' -bench LoginCurve -benchtime 1x -v -login-csv /tmp/login.csv
func BenchmarkLoginCurve(b *testing.B) {
	var inflight []int
	for _, f := range strings.Split(*loginInFlight, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("-login-inflight: %q is not a positive number", f)
		}
		inflight = append(inflight, n)
	}
	var points []*loginPoint
	for _, series := range strings.Split(*loginSeries, ",") {
		series = strings.TrimSpace(series)
		b.Run(series, func(b *testing.B) {
			points = append(points, benchLoginSeries(b, series, inflight)...)
			if *loginCSV != "" { // after every series: a failure leaves what was measured
				if err := writeLoginCSV(*loginCSV, points); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	reportLoginCurve(points)
}

// loginPoint is what one number of logins in flight measured.
type loginPoint struct {
	series           string
	inflight         int
	logins, errors   int
	firstErr         error
	elapsed          time.Duration
	p50, p99         time.Duration
	portcullisCPU    time.Duration
	dexCPU           time.Duration
	clientCPU        time.Duration
	portcullisRSS    int64
	dexRSS           int64
	load0, load1     string
	reviewedUsername string
	// New connections the load generator opened to each.
	portalDials, dexDials int
}

// dialCounter counts the connections a transport opens, by address.
type dialCounter struct {
	mu sync.Mutex
	n  map[string]int
	d  net.Dialer
}

func (c *dialCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	c.n[addr]++
	c.mu.Unlock()
	return c.d.DialContext(ctx, network, addr)
}

func (c *dialCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.n)
}

// get is the count for the host of base URL u.
func (c *dialCounter) get(u string) int {
	pu, err := url.Parse(u)
	if err != nil {
		return -1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[pu.Host]
}

func (p *loginPoint) rate() float64 { return float64(p.logins) / p.elapsed.Seconds() }

func (p *loginPoint) perLogin(d time.Duration) time.Duration {
	if p.logins == 0 {
		return 0
	}
	return d / time.Duration(p.logins)
}

func benchLoginSeries(b *testing.B, series string, inflight []int) []*loginPoint {
	opts := framework.DexOptions{LogLevel: "info"}
	email, password := framework.DefaultDexUsers[0].Email, framework.DefaultDexUsers[0].Password
	idp, ecdsaKey := strings.CutSuffix(series, "+ecdsa")
	mock := idp == "no-password"
	if mock {
		opts.MockCallbackConnector = true
		email = "kilgore@kilgore.trout"
	} else {
		cost, ok := strings.CutPrefix(idp, "bcrypt-")
		n, err := strconv.Atoi(cost)
		if !ok || err != nil {
			b.Fatalf("-login-series: %q is neither bcrypt-<cost> nor no-password", series)
		}
		opts.BcryptCost = n
	}
	pki := framework.NewPKI(b)
	dir := framework.WorkDir(b)
	port := framework.FreePort(b)
	issuer := fmt.Sprintf("https://127.0.0.1:%d", port)
	opts.PKI, opts.RedirectURIs = pki, []string{issuer + "/callback"}
	dex := framework.StartDex(b, opts)
	secretFile := filepath.Join(dir, "dex-client-secret")
	if err := os.WriteFile(secretFile, []byte(dex.ClientSecret), 0o600); err != nil {
		b.Fatal(err)
	}
	var extraArgs []string
	if ecdsaKey {
		// A serving certificate with an ECDSA P-256 key instead of the
		// self-signed RSA 2048 one portcullis-server makes by default.
		serving := pki.IssueServing("127.0.0.1", "localhost")
		extraArgs = []string{"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile}
	}
	pc := framework.StartPortcullis(b, framework.PortcullisOptions{
		ConfigYAML: loginCurveConfig(port, dir, dex, secretFile, pki.ClientCA.CertFile),
		Port:       port,
		ExtraArgs:  extraArgs,
	})

	pool := framework.CertPool(pki.CA)
	if !ecdsaKey {
		pool.AppendCertsFromPEM(pc.CACertPEM())
	}
	dials := &dialCounter{n: map[string]int{}}
	// The browser: HTTP/2, connections kept, TLS sessions resumed. The
	// portal closes an anonymous client's HTTP/2 connection after each
	// request (k8s.io/apiserver's UnauthenticatedHTTP2DOSMitigation), so
	// each of the browser's requests to it is a new connection, a resumed
	// TLS session as a browser's would be.
	tr := &http.Transport{
		DialContext: dials.dial,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(1024)},
		MaxIdleConnsPerHost: 256,
		ForceAttemptHTTP2:   true,
	}
	defer tr.CloseIdleConnections()
	// The CLI: a new process at each login, so a new connection and a full
	// TLS handshake for its POST /portal/api/token.
	cli := &http.Transport{
		DialContext:       dials.dial,
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: true,
	}
	client := pki.IssueClient("login-curve-webhook-client")
	cert, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	if err != nil {
		b.Fatal(err)
	}
	review := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
	}}}
	d := &loginDriver{portal: pc.URL, tr: tr, cli: &http.Client{Transport: cli, Timeout: 60 * time.Second}, mock: mock, email: email, password: password}

	ctx := context.Background()
	// One login first: the portal fetches Dex's discovery and keys once.
	if _, err := d.login(ctx); err != nil {
		b.Fatalf("first login: %v", err)
	}
	// What each process spends doing nothing (timers, the runtime), for
	// comparison with the CPU per login.
	time.Sleep(time.Second)
	idle0 := time.Now()
	pcIdle0, dexIdle0 := processCPU(b, pc.Process.Pid()), processCPU(b, dex.Process.Pid())
	time.Sleep(3 * time.Second)
	idleSecs := time.Since(idle0).Seconds()
	b.Logf("%s: idle for %.1fs: portcullis-server %.3f cores, Dex %.3f cores", series, idleSecs,
		(processCPU(b, pc.Process.Pid())-pcIdle0).Seconds()/idleSecs, (processCPU(b, dex.Process.Pid())-dexIdle0).Seconds()/idleSecs)
	var points []*loginPoint
	for _, n := range inflight {
		p := &loginPoint{series: series, inflight: n, load0: loadAverage1()}
		dials.reset()
		pcCPU0, dexCPU0, selfCPU0 := processCPU(b, pc.Process.Pid()), processCPU(b, dex.Process.Pid()), processCPU(b, os.Getpid())
		var (
			mu        sync.Mutex
			latencies []time.Duration
			last      string
			wg        sync.WaitGroup
		)
		start := time.Now()
		deadline := start.Add(*loginDuration)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				var tok string
				var (
					errs  int
					first error
				)
				for time.Now().Before(deadline) {
					t0 := time.Now()
					t, err := d.login(ctx)
					if err != nil {
						errs++
						if first == nil {
							first = err
						}
						continue
					}
					mine = append(mine, time.Since(t0))
					tok = t
				}
				mu.Lock()
				defer mu.Unlock()
				latencies = append(latencies, mine...)
				p.errors += errs
				if p.firstErr == nil {
					p.firstErr = first
				}
				if tok != "" {
					last = tok
				}
			}()
		}
		wg.Wait()
		p.elapsed = time.Since(start)
		p.portcullisCPU = processCPU(b, pc.Process.Pid()) - pcCPU0
		p.dexCPU = processCPU(b, dex.Process.Pid()) - dexCPU0
		p.clientCPU = processCPU(b, os.Getpid()) - selfCPU0
		p.portcullisRSS, p.dexRSS = processRSS(b, pc.Process.Pid()), processRSS(b, dex.Process.Pid())
		p.load1 = loadAverage1()
		p.logins = len(latencies)
		p.portalDials, p.dexDials = dials.get(pc.URL), dials.get(dex.IssuerURL)
		slices.Sort(latencies)
		if len(latencies) > 0 {
			p.p50 = latencies[len(latencies)/2]
			p.p99 = latencies[min(len(latencies)-1, len(latencies)*99/100)]
		}
		if p.logins == 0 {
			b.Fatalf("%s, %d in flight: no login completed; first error: %v", series, n, p.firstErr)
		}
		// The tokens are real: the last one minted passes the webhook.
		user, err := reviewToken(review, pc.URL, last)
		if err != nil {
			b.Fatalf("%s, %d in flight: the last token minted: %v", series, n, err)
		}
		p.reviewedUsername = user
		b.Logf("%s, %d in flight: %d logins in %s: %.1f/s, p50 %s, p99 %s; CPU per login: portcullis-server %s, Dex %s, load generator %s; RSS portcullis-server %.1f MiB, Dex %.1f MiB; new connections: %d to portcullis-server, %d to Dex; %d errors%s; load %s → %s; last token reviewed: %s",
			series, n, p.logins, p.elapsed.Round(time.Millisecond), p.rate(), msec(p.p50), msec(p.p99),
			msec(p.perLogin(p.portcullisCPU)), msec(p.perLogin(p.dexCPU)), msec(p.perLogin(p.clientCPU)),
			mib(p.portcullisRSS), mib(p.dexRSS), p.portalDials, p.dexDials, p.errors, firstErrText(p.firstErr), p.load0, p.load1, user)
		points = append(points, p)
		if p.errors > p.logins/100 {
			b.Errorf("%s, %d in flight: %d of %d logins failed; first: %v", series, n, p.errors, p.errors+p.logins, p.firstErr)
		}
		runtime.GC()
	}
	return points
}

func loginCurveConfig(port int, dir string, dex *framework.Dex, secretFile, clientCA string) string {
	return fmt.Sprintf(`apiVersion: config.portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuerURL: https://127.0.0.1:%d
store:
  path: %s
identityProviders:
- name: dex
  displayName: Dex
  issuer:
    url: %s
  certificateAuthorityFile: %s
  clientID: %s
  clientSecretFile: %s
  claimMappings:
    username:
      claim: email
      prefix: ""
clusters:
- name: %s
  access:
    allUsers: true
webhook:
  clientCAFile: %s
portal:
  # Every login of the benchmark comes from 127.0.0.1: without this, the
  # default limits (20 at once per client, then one every 6s; 500 at once
  # for all, then 5 a second) would throttle it.
  loginStartLimits:
    perClient: {burst: 100000, every: 1ms}
    global: {burst: 100000, every: 1ms}
`, port, filepath.Join(dir, "state.db"), dex.IssuerURL, dex.CAFile, dex.ClientID, secretFile, loginCurveCluster, clientCA)
}

// loginDriver plays the CLI and the person at the browser.
type loginDriver struct {
	portal          string
	tr              *http.Transport // the browser's
	cli             *http.Client
	mock            bool
	email, password string
}

var mockConnectorLink = regexp.MustCompile(`href="([^"]*/auth/mock[^"]*)"`)

// login logs in once and returns the cluster token minted.
func (d *loginDriver) login(ctx context.Context) (string, error) {
	verifier := oauth2.GenerateVerifier()
	cliState := oauth2.GenerateVerifier()[:22]
	start := d.portal + "/login/dex?" + url.Values{
		"cli_redirect":  {loginCurveRedirect},
		"cli_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
		"cli_state":     {cliState},
		"cluster":       {loginCurveCluster},
	}.Encode()
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	var back *url.URL
	redirectHost := strings.TrimPrefix(loginCurveRedirect, "http://")
	redirectHost, _, _ = strings.Cut(redirectHost, "/")
	br := &framework.Browser{Client: &http.Client{
		Transport: d.tr,
		Jar:       jar,
		Timeout:   60 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == redirectHost {
				back = req.URL
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return errors.New("more than 10 redirects")
			}
			return nil
		},
	}}
	var last *framework.Page
	if d.mock {
		page, err := br.Get(ctx, start)
		if err != nil {
			return "", err
		}
		m := mockConnectorLink.FindSubmatch(page.Body)
		if m == nil {
			return "", fmt.Errorf("%s (%d) has no link to the mock connector", page.URL, page.Status)
		}
		next, err := page.URL.Parse(html.UnescapeString(string(m[1])))
		if err != nil {
			return "", err
		}
		if last, err = br.Get(ctx, next.String()); err != nil {
			return "", err
		}
	} else if last, err = br.DexLogin(ctx, nil, start, d.email, d.password); err != nil {
		return "", err
	}
	if back == nil {
		// The page's path and status, not its query (codes, states).
		return "", fmt.Errorf("the portal did not redirect to the CLI's loopback address: the login ended at %s%s with %d",
			last.URL.Host, last.URL.Path, last.Status)
	}
	q := back.Query()
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("the portal sent the CLI error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != cliState || q.Get("code") == "" {
		return "", errors.New("the CLI's redirect has the wrong state or no code")
	}
	body, _ := json.Marshal(map[string]string{
		"grant_type": "authorization_code", "code": q.Get("code"), "code_verifier": verifier, "redirect_uri": loginCurveRedirect,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.portal+"/portal/api/token", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.cli.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST /portal/api/token: %s: %.300s", resp.Status, rb)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rb, &tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("POST /portal/api/token: no access_token in the answer (%v)", err)
	}
	return tr.AccessToken, nil
}

// reviewToken asks the webhook about tok, as kube-apiserver would, and
// returns the username it authenticates.
func reviewToken(hc *http.Client, base, tok string) (string, error) {
	body := fmt.Sprintf(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":%q}}`, tok)
	resp, err := hc.Post(base+"/tokenreview/"+loginCurveCluster, "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("TokenReview: HTTP %d: %.300s", resp.StatusCode, b)
	}
	var tr struct {
		Status struct {
			Authenticated bool   `json:"authenticated"`
			Error         string `json:"error"`
			User          struct {
				Username string `json:"username"`
			} `json:"user"`
		} `json:"status"`
	}
	if err := json.Unmarshal(b, &tr); err != nil {
		return "", err
	}
	if !tr.Status.Authenticated {
		return "", fmt.Errorf("TokenReview: not authenticated: %s", tr.Status.Error)
	}
	return tr.Status.User.Username, nil
}

// loadAverage1 is the 1-minute load average (/proc/loadavg).
func loadAverage1() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func msec(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func firstErrText(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf(" (first: %v)", err)
}

var loginCSVHeader = []string{"series", "inflight", "logins", "errors", "seconds", "logins_per_s", "p50_ms", "p99_ms",
	"portcullis_cpu_ms_per_login", "dex_cpu_ms_per_login", "client_cpu_ms_per_login", "portcullis_cores", "dex_cores",
	"portcullis_rss_mib", "dex_rss_mib", "portcullis_conns_per_login", "load1_start", "load1_end"}

func writeLoginCSV(path string, points []*loginPoint) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(loginCSVHeader)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }
	for _, p := range points {
		_ = w.Write([]string{
			p.series,
			strconv.Itoa(p.inflight),
			strconv.Itoa(p.logins),
			strconv.Itoa(p.errors),
			fmt.Sprintf("%.2f", p.elapsed.Seconds()),
			fmt.Sprintf("%.1f", p.rate()),
			ms(p.p50),
			ms(p.p99),
			ms(p.perLogin(p.portcullisCPU)),
			ms(p.perLogin(p.dexCPU)),
			ms(p.perLogin(p.clientCPU)),
			fmt.Sprintf("%.2f", p.portcullisCPU.Seconds()/p.elapsed.Seconds()),
			fmt.Sprintf("%.2f", p.dexCPU.Seconds()/p.elapsed.Seconds()),
			fmt.Sprintf("%.1f", mib(p.portcullisRSS)),
			fmt.Sprintf("%.1f", mib(p.dexRSS)),
			fmt.Sprintf("%.2f", float64(p.portalDials)/float64(max(p.logins, 1))),
			p.load0,
			p.load1,
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reportLoginCurve prints the curve as a markdown table.
func reportLoginCurve(points []*loginPoint) {
	fmt.Printf("\nLogin curve: %d cores; %s per point\n\n", runtime.NumCPU(), *loginDuration)
	fmt.Println("| series | in flight | logins/s | p50 | p99 | CPU/login portcullis-server | CPU/login Dex | CPU/login load generator | cores portcullis-server | cores Dex | RSS portcullis-server | RSS Dex | errors | load |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, p := range points {
		fmt.Printf("| %s | %d | %.1f | %s | %s | %s | %s | %s | %.2f | %.2f | %.1f MiB | %.1f MiB | %d | %s → %s |\n",
			p.series, p.inflight, p.rate(), msec(p.p50), msec(p.p99),
			msec(p.perLogin(p.portcullisCPU)), msec(p.perLogin(p.dexCPU)), msec(p.perLogin(p.clientCPU)),
			p.portcullisCPU.Seconds()/p.elapsed.Seconds(), p.dexCPU.Seconds()/p.elapsed.Seconds(),
			mib(p.portcullisRSS), mib(p.dexRSS), p.errors, p.load0, p.load1)
	}
}
