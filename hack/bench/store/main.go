// Command store measures the cost curve of the embedded bolt store
// (pkg/store/bolt) as the number of sessions grows (issue 17; the "Store:
// sessions" curve of docs/benchmarks.md):
//
//	go run ./hack/bench/store -sessions 10k,100k,1M -csv docs/img/store-sessions.csv
//
// For each N it runs two child processes (this program re-executed), so that
// the process measured holds only what a replica holds:
//
//   - fill: opens a fresh store and creates N sessions with realistic
//     contents (five groups, an upstream refresh token) through the store's
//     CreateSession, one bbolt transaction each, from several goroutines.
//     It does so on a tmpfs (/dev/shm by default, -fill-dir), where the
//     fsync that ends every transaction costs nothing: through a disk's
//     fsync 1M sessions would take hours. The file is then copied to the
//     disk (-dir, default the temporary directory) and synced there. The
//     file is exactly what CreateSession writes; only the time to write it
//     is not a disk's.
//   - measure, on the disk: opens the store with a cold page cache (the
//     file's pages dropped with posix_fadvise) and again with a warm one;
//     refreshes random sessions through session.Manager.Refresh, as a
//     replica does (a GetSession, then UpdateSession's write transaction
//     and fsync), first one at a time for the latencies, then -concurrency
//     at a time for the throughput; measures its Go heap in use (after
//     debug.FreeOSMemory) and its resident memory, anonymous and file-backed
//     (bbolt maps the file); creates -ended sessions that have ended and
//     times GarbageCollect with them and with nothing ended; times
//     ListSessions of every session.
//
// It writes one CSV row per N (backend "bolt"; the kubernetes backend's rows
// are appended by BenchmarkKubernetesSessionScale in test/e2e, with
// PORTCULLIS_BENCH_CSV) and prints a markdown table.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/hack/bench/internal/benchflag"
)

// roleEnv selects what a child process does.
const roleEnv = "PORTCULLIS_STORE_BENCH_ROLE"

type options struct {
	sessions    string
	dir         string
	fillDir     string
	fillers     int
	warmup      int
	refreshes   int
	throughput  int
	concurrency int
	ended       int
	csv         string
	keep        bool
}

func main() {
	switch os.Getenv(roleEnv) {
	case "fill":
		if err := runFill(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "store bench (fill):", err)
			os.Exit(1)
		}
		return
	case "measure":
		if err := runMeasure(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "store bench (measure):", err)
			os.Exit(1)
		}
		return
	}

	var o options
	flag.StringVar(&o.sessions, "sessions", "10k,100k,1M", "comma-separated numbers of sessions (k and M suffixes)")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "directory (on the disk to measure) for the state files")
	flag.StringVar(&o.fillDir, "fill-dir", "/dev/shm", "directory on a tmpfs to fill the file in before copying it to -dir (empty: fill in -dir, through the disk's fsync)")
	flag.IntVar(&o.fillers, "fillers", 4, "goroutines creating sessions")
	flag.IntVar(&o.warmup, "warmup", 200, "refreshes before the measured ones")
	flag.IntVar(&o.refreshes, "refreshes", 2000, "refreshes measured one at a time, of random sessions")
	flag.IntVar(&o.throughput, "throughput", 2000, "refreshes of distinct sessions, -concurrency at a time, for the throughput")
	flag.IntVar(&o.concurrency, "concurrency", 8, "refreshes in flight for the throughput")
	flag.IntVar(&o.ended, "ended", 100, "ended sessions for GarbageCollect to find")
	flag.StringVar(&o.csv, "csv", "", "write the curve to this CSV file (replacing it)")
	flag.BoolVar(&o.keep, "keep", false, "keep the state files and print their paths")
	flag.Parse()
	sizes, err := benchflag.Counts("sessions", "sessions", o.sessions)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if o.fillers < 1 || o.refreshes < 1 || o.throughput < 1 || o.concurrency < 1 || o.ended < 1 || o.warmup < 0 {
		fmt.Fprintln(os.Stderr, "-fillers, -refreshes, -throughput, -concurrency and -ended must be at least 1")
		os.Exit(2)
	}
	if err := run(&o, sizes); err != nil {
		fmt.Fprintln(os.Stderr, "store bench:", err)
		os.Exit(1)
	}
}

// logf reports progress on stderr; the report goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# "+format+"\n", args...)
}

func run(o *options, sizes []int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var rows []*result
	load0 := loadAverage()
	for _, n := range sizes {
		r, err := point(o, self, n)
		if err != nil {
			return fmt.Errorf("%d sessions: %w", n, err)
		}
		rows = append(rows, r)
		if o.csv != "" { // after every point: a long run leaves what it measured
			if err := writeCSV(o.csv, rows); err != nil {
				return err
			}
		}
	}
	report(o, rows, load0, loadAverage())
	return nil
}

// point fills a fresh file with n sessions and measures it.
func point(o *options, self string, n int) (*result, error) {
	dir, err := os.MkdirTemp(o.dir, "portcullis-store-bench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		logf("%d sessions: state file kept in %s", n, dir)
	} else {
		defer os.RemoveAll(dir)
	}
	path := filepath.Join(dir, "state.db")
	fillPath := path
	if o.fillDir != "" {
		fd, err := os.MkdirTemp(o.fillDir, "portcullis-store-bench-")
		if err != nil {
			return nil, fmt.Errorf("-fill-dir: %w", err)
		}
		defer os.RemoveAll(fd)
		fillPath = filepath.Join(fd, "state.db")
	}
	load0 := loadAverage()
	var fill fillResult
	if err := child(self, "fill", &fill, fillPath, strconv.Itoa(n), strconv.Itoa(o.fillers)); err != nil {
		return nil, err
	}
	logf("%d sessions: filled in %.1f s (%.0f/s, %d goroutines, in %s); file %.1f MiB", n, fill.Seconds, float64(n)/fill.Seconds, o.fillers, filepath.Dir(fillPath), mib(fill.FileBytes))
	if fillPath != path {
		start := time.Now()
		if err := copyFile(fillPath, path); err != nil {
			return nil, err
		}
		_ = os.RemoveAll(filepath.Dir(fillPath))
		logf("%d sessions: copied to %s and synced in %v", n, path, time.Since(start).Round(time.Millisecond))
	}
	r := &result{}
	args := []string{path, strconv.Itoa(n), strconv.Itoa(o.warmup), strconv.Itoa(o.refreshes), strconv.Itoa(o.throughput), strconv.Itoa(o.concurrency), strconv.Itoa(o.ended)}
	if err := child(self, "measure", r, args...); err != nil {
		return nil, err
	}
	if err := freelistStats(path, r); err != nil {
		return nil, err
	}
	r.Sessions, r.FillSeconds, r.FileBytes, r.Fillers, r.Concurrency = n, fill.Seconds, fill.FileBytes, o.fillers, o.concurrency
	r.LoadStart, r.LoadEnd = load0, loadAverage()
	logf("%d sessions: refresh p50 %.2f ms, p99 %.2f ms; %.0f refreshes/s at %d; heap %.1f MiB, RSS %.1f MiB (anon %.1f, file %.1f); GC %.0f ms (%d ended), %.0f ms (none); open %.0f ms (cold %.0f ms); list %.2f s; load %s -> %s",
		n, r.P50ms, r.P99ms, r.PerSecond, o.concurrency, mib(r.HeapBytes), mib(r.RSSBytes), mib(r.RSSAnonBytes), mib(r.RSSFileBytes), r.GCms, o.ended, r.GCNothingms, r.Openms, r.OpenColdms, r.ListSeconds, r.LoadStart, r.LoadEnd)
	return r, nil
}

// child runs this program as role with args, and decodes the JSON it
// prints on stdout into out. Its stderr (progress) passes through.
func child(self, role string, out any, args ...string) error {
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	data, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: %w", role, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: its output: %w", role, err)
	}
	return nil
}

// copyFile copies from to the new file to (mode 0600, as the store makes
// it) and syncs it, so that its pages are clean and can be dropped from the
// page cache.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return "?"
	}
	return f[0]
}

// freelistStats reads how many free pages bbolt has in the file at path
// (closed by then) into r: it writes the whole freelist at every commit.
func freelistStats(path string, r *result) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	st := db.Stats()
	r.FreePages = st.FreePageN
	return db.Close()
}
