package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cli/browser"
)

// How the browser login reaches the person's browser and comes back.

// defaultOpenBrowser runs $PORTCULLIS_BROWSER, else $BROWSER (a command,
// given the URL as its last argument), else the desktop's own way of
// opening an address (github.com/cli/browser: open on macOS, the shell on
// Windows, xdg-open and its kin on Linux and WSL). It does not wait for the
// browser.
func defaultOpenBrowser(getenv func(string) string, stderr io.Writer) func(string) error {
	return func(u string) error {
		for _, env := range []string{"PORTCULLIS_BROWSER", "BROWSER"} {
			if c := getenv(env); c != "" {
				return startBrowserCommand(c, u, stderr)
			}
		}
		if runtime.GOOS != "darwin" && runtime.GOOS != "windows" &&
			getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == "" && getenv("WSL_DISTRO_NAME") == "" {
			return errors.New("no graphical session: DISPLAY is not set")
		}
		// Never stdout: for exec-credential, stdout is the credential.
		browser.Stdout, browser.Stderr = stderr, stderr
		errc := make(chan error, 1)
		go func() { errc <- browser.OpenURL(u) }()
		select {
		case err := <-errc:
			return err
		case <-time.After(3 * time.Second):
			// xdg-open may run the browser itself and wait for it: it
			// started, which is all that is needed.
			return nil
		}
	}
}

// browserArgv splits a browser command: a program (which may have spaces in
// its path), or a program and its arguments separated by spaces.
func browserArgv(command string) []string {
	command = strings.TrimSpace(command)
	if _, err := exec.LookPath(command); err == nil {
		return []string{command}
	}
	return strings.Fields(command)
}

// startBrowserCommand starts command with u as its last argument, without
// waiting for it.
func startBrowserCommand(command, u string, stderr io.Writer) error {
	argv := browserArgv(command)
	if len(argv) == 0 {
		return errors.New("the browser command is empty")
	}
	cmd := exec.Command(argv[0], append(argv[1:], u)...)
	// Never the command's stdout: for exec-credential, stdout is the credential.
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running the browser command %q: %w", command, err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// parseListenAddress checks a --listen-address: the portal redirects the
// browser only to 127.0.0.1 or [::1], so these are the hosts allowed
// ("localhost" is 127.0.0.1); port 0 is any free port.
func parseListenAddress(s string) (string, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(s))
	bad := func() (string, error) {
		return "", fmt.Errorf("--listen-address %q is not a loopback address: give 127.0.0.1:PORT or [::1]:PORT (Portcullis sends the browser back only to these)", s)
	}
	if err != nil {
		return bad()
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if host != "127.0.0.1" && host != "::1" {
		return bad()
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("--listen-address %q: the port must be a number from 0 (any free port) to 65535", s)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

func checkListenAddresses(addrs []string) error {
	for _, a := range addrs {
		if _, err := parseListenAddress(a); err != nil {
			return err
		}
	}
	return nil
}

// listenLoopback listens on the first of addrs that is free (127.0.0.1 on
// any free port when addrs is empty).
func listenLoopback(addrs []string) (net.Listener, error) {
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:0"}
	}
	var errs []string
	for _, a := range addrs {
		addr, err := parseListenAddress(a)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("cannot listen for the login's redirect (%s): free one of these addresses, give another with --listen-address, or use --device", strings.Join(errs, "; "))
}
