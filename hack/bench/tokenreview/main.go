// Command tokenreview is the TokenReview load benchmark (docs/benchmarks.md).
//
// It measures, on loopback and over HTTPS keep-alive connections with a
// client certificate, as kube-apiserver calls the webhook:
//
//	(a) portcullis-server's TokenReview endpoint, cycling through a warm set of
//	    distinct valid tokens (10,000 by default), each reviewed once before
//	    the measurement;
//	(b) the same endpoint with a token never seen before on every review
//	    (cold verification: one ES256 signature check each);
//	(c) a bare Go TLS server that reads the request and answers the very
//	    bytes (a) answers, with the same certificate: the floor;
//	(d) the same bare server with Portcullis's TokenReview handler (wired as
//	    pkg/server wires it, from a copy of the same store) instead of the
//	    fixed answer: the review's own work without the generic apiserver's
//	    handler chain (handler.go).
//
// (a), (c) and (d) run in alternating slices of a second, so that all see
// the same background load; (b) runs after them (its one-off tokens fill the
// verification cache), and each round starts a fresh portcullis-server.
//
// Both servers run as child processes (this program re-executed; the
// Portcullis child runs portcullis-server's own command, so the whole
// generic apiserver handler chain is in the path), so that each has its own
// GOMAXPROCS and its CPU time can be read from /proc. Tokens are minted with
// pkg/token into the server's bolt store before the server starts (the store
// is single-process).
//
//	go run ./hack/bench/tokenreview -duration 10s
//
// With -scale it measures instead the cost curve as the number of distinct
// live tokens grows (scale.go; make bench-scale).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"k8s.io/component-base/cli"

	"portcullis.dev/portcullis/hack/bench/internal/benchflag"
	"portcullis.dev/portcullis/pkg/cmd/app"
)

// roleEnv selects what a child process is.
const roleEnv = "PORTCULLIS_TOKENREVIEW_BENCH_ROLE"

type options struct {
	duration    time.Duration
	rounds      int
	conns       int
	concurrency int
	proto       string
	warm        int
	cold        int
	serverProcs int
	clientProcs int
	cacheSize   int
	audit       bool
	keep        bool
	phases      string
	slice       time.Duration
	profile     string
	scale       string
	csv         string
}

func main() {
	switch os.Getenv(roleEnv) {
	case "portcullis":
		// The real server, exactly as cmd/portcullis-server runs it.
		os.Exit(cli.Run(app.NewServerCommand(app.SignalContext())))
	case "echo":
		if err := runEcho(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	case "handler":
		if err := runHandler(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each phase")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds (each on a freshly started portcullis-server); figures are the median over rounds")
	flag.IntVar(&o.conns, "conns", 4, "keep-alive connections to the server")
	flag.IntVar(&o.concurrency, "concurrency", 16, "requests in flight (goroutines), spread over the connections")
	flag.StringVar(&o.proto, "proto", "h2", "h2 (as kube-apiserver's webhook client) or h1 (HTTP/1.1: one request per connection at a time)")
	flag.IntVar(&o.warm, "warm", 10000, "distinct valid tokens in the warm set of (a)")
	flag.IntVar(&o.cold, "cold-tokens", 0, "tokens pre-minted for (b), each used once (0: enough for -rounds × -duration at one review per ES256 verification's time per server core, with half as much again to spare, at most 500,000; a phase that runs out stops early and says so)")
	flag.IntVar(&o.serverProcs, "server-procs", 1, "GOMAXPROCS of each server child")
	flag.IntVar(&o.clientProcs, "client-procs", 1, "GOMAXPROCS of the load generator (this process)")
	flag.IntVar(&o.cacheSize, "cache-size", 0, "tokens.cacheSize of the Portcullis configuration (0: the default)")
	flag.BoolVar(&o.audit, "audit", false, "run Portcullis with a Metadata-level audit log (--audit-log-path), as in production")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (configuration, store, logs) and print its path")
	flag.StringVar(&o.phases, "phases", "a,b,c,d", "phases to run: (a), (c) and (d) run interleaved in slices, then (b)")
	flag.DurationVar(&o.slice, "slice", time.Second, "length of the alternating (a) and (c) slices")
	flag.StringVar(&o.profile, "profile", "", "folder to write CPU profiles of portcullis-server during (a) and (b) into (from its /debug/pprof)")
	flag.StringVar(&o.scale, "scale", "", "cost-curve mode: comma-separated numbers of distinct live tokens (e.g. 1k,10k,100k); for each, a fresh portcullis-server is measured for -duration while the clients pick tokens uniformly among them (phases a, b and c are not run)")
	flag.StringVar(&o.csv, "csv", "", "with -scale: also write the curve to this CSV file")
	flag.Parse()
	if o.conns < 1 || o.concurrency < 1 || o.rounds < 1 || o.warm < 1 || o.serverProcs < 1 || o.clientProcs < 1 || o.duration <= 0 || o.slice <= 0 {
		fmt.Fprintln(os.Stderr, "-conns, -concurrency, -rounds, -warm, -server-procs and -client-procs must be at least 1, -duration and -slice positive")
		os.Exit(2)
	}
	if o.proto != "h1" && o.proto != "h2" {
		fmt.Fprintln(os.Stderr, "-proto must be h1 or h2")
		os.Exit(2)
	}
	for _, p := range strings.Split(o.phases, ",") {
		if p != "a" && p != "b" && p != "c" && p != "d" {
			fmt.Fprintf(os.Stderr, "-phases: unknown phase %q (a, b, c or d)\n", p)
			os.Exit(2)
		}
	}
	if o.scale != "" {
		sizes, err := benchflag.Counts("scale", "tokens", o.scale)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := runScale(context.Background(), &o, sizes); err != nil {
			fmt.Fprintln(os.Stderr, "tokenreview:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(context.Background(), &o); err != nil {
		fmt.Fprintln(os.Stderr, "tokenreview:", err)
		os.Exit(1)
	}
}

// logf reports progress on stderr; the report goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# "+format+"\n", args...)
}

func numCPU() int { return runtime.NumCPU() }
