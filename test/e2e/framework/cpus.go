package framework

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// CPU placement for benchmarks that model separate hosts on one machine:
// a cluster's control plane on some cores, Portcullis and the load
// generator on others, so that Portcullis does not take CPU from
// kube-apiserver as it never would in production.

var (
	placementMu sync.Mutex
	placement   map[string]string // process name prefix → taskset CPU list
)

// PlaceProcesses runs every process StartProcess starts from now until the
// end of t whose Name starts with one of the keys on the CPUs of its value
// (a taskset list such as "0" or "0-1"). Go programs size GOMAXPROCS to
// their CPU set, so a process placed on one core runs with GOMAXPROCS=1.
func PlaceProcesses(t testing.TB, rules map[string]string) {
	t.Helper()
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Fatalf("CPU placement needs taskset (util-linux): %v", err)
	}
	placementMu.Lock()
	placement = rules
	placementMu.Unlock()
	t.Cleanup(func() {
		placementMu.Lock()
		placement = nil
		placementMu.Unlock()
	})
}

// placed wraps spec in taskset when a placement rule names it.
func placed(spec ProcessSpec) (path string, args []string) {
	placementMu.Lock()
	defer placementMu.Unlock()
	for prefix, cpus := range placement {
		if strings.HasPrefix(spec.Name, prefix) {
			return "taskset", append([]string{"--cpu-list", cpus, spec.Path}, spec.Args...)
		}
	}
	return spec.Path, spec.Args
}

// PinSelf restricts every thread of the test process to cpus (CPU numbers)
// until the end of t. Threads the Go runtime starts later inherit the mask
// of the thread that starts them.
func PinSelf(t testing.TB, cpus ...int) {
	t.Helper()
	var set, old unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	apply := func(s *unix.CPUSet) error {
		// Twice: a thread started while the first pass ran is caught by the second.
		for range 2 {
			tids, err := os.ReadDir("/proc/self/task")
			if err != nil {
				return err
			}
			for _, d := range tids {
				tid, err := strconv.Atoi(d.Name())
				if err != nil {
					continue
				}
				if err := unix.SchedSetaffinity(tid, s); err != nil && err != unix.ESRCH {
					return fmt.Errorf("pinning thread %d: %w", tid, err)
				}
			}
		}
		return nil
	}
	if err := apply(&set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apply(&old) })
}
