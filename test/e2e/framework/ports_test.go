package framework

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// FreePort's ports are outside the kernel's ephemeral range, distinct, and
// locked against other test processes until this one exits.
func TestFreePort_OutsideTheEphemeralRangeAndReserved(t *testing.T) {
	lo, hi, err := ephemeralPortRange()
	if err != nil {
		t.Skipf("no ephemeral port range to compare with: %v", err)
	}
	seen := map[int]bool{}
	for range 5 {
		port := FreePort(t)
		if portsError != nil {
			t.Skipf("FreePort falls back to the kernel here: %v", portsError)
		}
		if port >= lo && port <= hi {
			t.Errorf("port %d is in the ephemeral range %d-%d", port, lo, hi)
		}
		if seen[port] {
			t.Errorf("port %d handed out twice", port)
		}
		seen[port] = true
		// Another process (here another open file description) cannot
		// take the lock.
		f, err := os.Open(filepath.Join(portsDir, strconv.Itoa(port)+".lock"))
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			t.Errorf("port %d's lock could be taken again", port)
		}
		f.Close()
	}
}
