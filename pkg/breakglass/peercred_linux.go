package breakglass

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenPrivate listens on the Unix socket addr, made the owner's only from
// the start by the umask, with no window between bind and chmod.
func listenPrivate(addr string) (net.Listener, error) {
	old := unix.Umask(0o177)
	defer unix.Umask(old)
	return net.Listen("unix", addr)
}

// peerCredentials are the kernel's uid and pid of the connection's peer
// (SO_PEERCRED).
func peerCredentials(raw syscall.RawConn) (uid, pid int, err error) {
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, 0, err
	}
	if credErr != nil {
		return 0, 0, credErr
	}
	return int(cred.Uid), int(cred.Pid), nil
}
