package breakglass

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/token"
)

// SocketPath is where a server with the embedded store at storePath listens
// for mint requests.
func SocketPath(storePath string) string { return storePath + ".mint.sock" }

const mintPath = "/mint"

// Serve answers mint requests (and, when rv is not nil, token revocations)
// on a Unix socket at path until ctx is done. A stale socket file (no server
// behind it) is replaced; the socket is made 0600 before it accepts anything.
func Serve(ctx context.Context, path string, cfg func() *v1alpha1.PortcullisConfiguration, m *token.Minter, backend audit.Backend, rv Revoker) error {
	if c, err := dialSocket(context.Background(), path); err == nil {
		c.Close()
		return fmt.Errorf("break-glass socket %s: another server answers on it; is another Portcullis running with this store?", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		// Only a socket left by an earlier server is ours to replace.
		if fi.Mode().Type() != os.ModeSocket {
			return fmt.Errorf("break-glass socket %s: the path exists and is not a socket; move it away", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("break-glass socket %s: removing the stale socket: %w", path, err)
		}
	}
	addr, done, err := socketAddress(path)
	if err != nil {
		return fmt.Errorf("break-glass socket %s: %w", path, err)
	}
	defer done()
	l, err := listenPrivate(addr)
	if err != nil {
		return fmt.Errorf("break-glass socket %s: %w", path, err)
	}
	srv := &http.Server{
		Handler:           socketMux(Handler(cfg, m, backend), rv, backend),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	klog.InfoS("Break-glass mint socket is listening", "path", path)
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// socketMux routes /revoke to the revocation handler (when there is a
// revoker) and everything else to mint.
func socketMux(mint http.Handler, rv Revoker, backend audit.Backend) http.Handler {
	if rv == nil {
		return mint
	}
	revoke := revokeHandler(rv, backend)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == revokePath {
			revoke(w, r)
			return
		}
		mint.ServeHTTP(w, r)
	})
}

type connKey struct{}

// peerOperator names the operator from the kernel's credentials of the
// connection's peer.
func peerOperator(r *http.Request) (Operator, error) {
	c, ok := r.Context().Value(connKey{}).(*net.UnixConn)
	if !ok {
		return Operator{}, errors.New("not a Unix socket connection")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return Operator{}, err
	}
	uid, pid, err := peerCredentials(raw)
	if err != nil {
		return Operator{}, err
	}
	name := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return Operator{Name: "local:" + name, Host: host, Via: "socket (pid " + strconv.Itoa(pid) + ")"}, nil
}

type answer struct {
	Token string `json:"token,omitempty"`
	Error string `json:"error,omitempty"`
}

// Handler serves POST /mint with a JSON Request.
func Handler(cfg func() *v1alpha1.PortcullisConfiguration, m *token.Minter, backend audit.Backend) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := func(code int, a answer) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(a)
		}
		if r.Method != http.MethodPost || r.URL.Path != mintPath {
			reply(http.StatusNotFound, answer{Error: "only POST " + mintPath + " is served here"})
			return
		}
		op, err := peerOperator(r)
		if err != nil {
			reply(http.StatusForbidden, answer{Error: "cannot tell who is asking: " + err.Error()})
			return
		}
		var req Request
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(http.StatusBadRequest, answer{Error: "decoding the request: " + err.Error()})
			return
		}
		c := cfg()
		if err := req.Validate(c); err != nil {
			reply(http.StatusBadRequest, answer{Error: err.Error()})
			return
		}
		raw, err := Mint(r.Context(), c, m, backend, op, req)
		if err != nil {
			// The request was valid: minting or auditing failed here.
			reply(http.StatusInternalServerError, answer{Error: err.Error()})
			return
		}
		klog.InfoS("Break-glass token minted", "operator", op.Name, "user", req.User, "cluster", req.Cluster, "reason", req.Reason)
		reply(http.StatusCreated, answer{Token: raw})
	})
}

// ErrNoServer means no server answers on the socket.
var ErrNoServer = errors.New("no running server answers on the break-glass socket")

// MintVia asks the server listening on the socket at path to mint.
func MintVia(ctx context.Context, path string, req Request) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%w %s: %v", ErrNoServer, path, err)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialSocket(ctx, path)
		},
	}, Timeout: 30 * time.Second}
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://portcullis"+mintPath, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return "", fmt.Errorf("%w %s: %v", ErrNoServer, path, err)
		}
		return "", fmt.Errorf("asking the running server to mint: %w", err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&a); err != nil {
		return "", fmt.Errorf("reading the running server's answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusCreated || a.Token == "" {
		return "", fmt.Errorf("the running server refused to mint: %s", a.Error)
	}
	return a.Token, nil
}

// maxSocketPath is the longest path a Unix socket address holds (108 bytes
// with the terminating NUL on Linux).
const maxSocketPath = 107

// socketAddress returns an address for the socket at path that fits a Unix
// socket address: path itself, or, for a longer path, the same file reached
// through /proc/self/fd and a descriptor of its directory (kept open until
// done is called).
func socketAddress(path string) (addr string, done func(), err error) {
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	addr = fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	if len(addr) > maxSocketPath {
		dir.Close()
		return "", nil, fmt.Errorf("the socket's file name is too long for a Unix socket; shorten store.path")
	}
	return addr, func() { dir.Close() }, nil
}

func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	addr, done, err := socketAddress(path)
	if err != nil {
		return nil, err
	}
	defer done()
	d := net.Dialer{Timeout: time.Second}
	return d.DialContext(ctx, "unix", addr)
}
