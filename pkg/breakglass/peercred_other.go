//go:build !linux

package breakglass

import (
	"errors"
	"net"
	"syscall"
)

// The server runs on Linux (containers, Linux services); elsewhere it
// builds, for developers, but the mint socket refuses every request, as it
// cannot tell who asks.

// listenPrivate listens on the Unix socket addr. Without Linux's umask
// guarantee nothing is served through it anyway (peerCredentials).
func listenPrivate(addr string) (net.Listener, error) {
	return net.Listen("unix", addr)
}

func peerCredentials(syscall.RawConn) (uid, pid int, err error) {
	return 0, 0, errors.New("the break-glass socket tells who is asking only on Linux (SO_PEERCRED); mint on a Linux server")
}
