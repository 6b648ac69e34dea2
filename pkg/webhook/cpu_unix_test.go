//go:build unix

package webhook

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the test process has used, so
// benchmarks can report CPU per operation, which a shared machine distorts
// far less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
