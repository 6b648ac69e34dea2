package framework

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Ports for child processes (etcd, kube-apiserver, Dex, portcullis-server)
// must be chosen before the child starts, because they go into its flags and
// configuration (the issuer URL names Dex's). Asking the kernel for a free
// port (listening on :0 and closing) races: the port comes from the
// ephemeral range, which the kernel also hands out as the source port of
// every outgoing connection, so another connection can take it before the
// child binds it ("address already in use").
//
// FreePort therefore hands out ports from outside the ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), where the kernel never assigns a
// port by itself: only a process that names the port can take it. Test
// processes running at the same time (go test runs packages in parallel,
// and other checkouts may run their tests too) share the range through a
// lock file per port, held with flock(2) for the life of the test process
// that reserved it and released by the kernel when that process ends, even
// if it crashes. A port some other program listens on is skipped.

// portsMinPort is the lowest port handed out: below it are well-known and
// registered ports that services on the machine are more likely to use.
const portsMinPort = 10000

// portsMinWindow is the smallest range outside the ephemeral range worth
// using; with less, FreePort asks the kernel as before.
const portsMinWindow = 1000

var (
	portsMu    sync.Mutex
	portsUsed  = map[int]bool{}
	portsHeld  []*os.File // the flock(2)ed lock files, open until the process exits
	portsOnce  sync.Once
	portsLo    int // the window outside the ephemeral range: [portsLo, portsHi]
	portsHi    int
	portsNext  int
	portsDir   string
	portsError error // why the window is not used, if it is not
)

// FreePort returns a TCP port on 127.0.0.1 for a child process to listen on:
// free now, never handed out before by this test process, and reserved
// against every other test process using this framework until this one
// exits. See above for why it cannot be taken in between.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	portsOnce.Do(initPortWindow)
	if portsError != nil {
		return kernelFreePort(t)
	}
	size := portsHi - portsLo + 1
	for range size {
		port := portsNext
		portsNext++
		if portsNext > portsHi {
			portsNext = portsLo
		}
		if portsUsed[port] {
			continue
		}
		lock, ok := reservePort(port)
		if !ok {
			continue
		}
		portsUsed[port] = true
		portsHeld = append(portsHeld, lock)
		return port
	}
	t.Fatalf("no free port in %d-%d: every one is reserved by a test process or in use", portsLo, portsHi)
	return 0
}

// initPortWindow picks the largest range of ports in [portsMinPort, 65535]
// outside the kernel's ephemeral range, and where in it to start.
func initPortWindow() {
	lo, hi, err := ephemeralPortRange()
	if err != nil {
		portsError = err
		return
	}
	below := [2]int{portsMinPort, lo - 1}
	above := [2]int{max(hi+1, portsMinPort), 65535}
	w := below
	if above[1]-above[0] > below[1]-below[0] {
		w = above
	}
	if w[1]-w[0]+1 < portsMinWindow {
		portsError = fmt.Errorf("the ephemeral port range %d-%d leaves fewer than %d ports above %d", lo, hi, portsMinWindow, portsMinPort)
		return
	}
	portsLo, portsHi = w[0], w[1]
	// Start somewhere random, so that test processes do not all contend
	// for the same first ports.
	portsNext = portsLo + rand.IntN(portsHi-portsLo+1)
	portsDir = filepath.Join(os.TempDir(), "portcullis-e2e-ports")
	if err := os.MkdirAll(portsDir, 0o777); err != nil {
		portsError = err
	}
}

// ephemeralPortRange reads the kernel's ephemeral port range.
func ephemeralPortRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range: unexpected %q", b)
	}
	if lo, err = strconv.Atoi(f[0]); err == nil {
		hi, err = strconv.Atoi(f[1])
	}
	return lo, hi, err
}

// reservePort takes port's lock file and checks that nothing listens on the
// port. It returns the open, locked file, or false if another test process
// holds the port or something else uses it.
func reservePort(port int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(portsDir, strconv.Itoa(port)+".lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	l, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		f.Close() // releases the lock
		return nil, false
	}
	l.Close()
	return f, true
}

// kernelFreePort is the fallback when there is no port range outside the
// ephemeral one: a port the kernel found free, which can race as described
// above (StartProcess's callers then see "address already in use" in the
// child's log).
func kernelFreePort(t testing.TB) int {
	t.Logf("FreePort: asking the kernel for a port, which can race (%v)", portsError)
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port
		}
	}
	t.Fatalf("no unused free port found")
	return 0
}

// addressInUse is how the children (Go programs all) report a port taken by
// someone else.
const addressInUse = "address already in use"
