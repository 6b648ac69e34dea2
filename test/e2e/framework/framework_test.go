package framework

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPKI_IssuedCertificatesVerify(t *testing.T) {
	p := NewPKI(t)
	serving := p.IssueServing("127.0.0.1", "svc.ns.svc")
	for _, name := range []string{"127.0.0.1", "svc.ns.svc"} {
		if _, err := serving.Cert.Verify(x509.VerifyOptions{DNSName: name, Roots: CertPool(p.CA)}); err != nil {
			t.Errorf("serving cert for %s: %v", name, err)
		}
	}
	if _, err := serving.Cert.Verify(x509.VerifyOptions{DNSName: "other", Roots: CertPool(p.CA)}); err == nil {
		t.Errorf("serving cert verified for a name it does not carry")
	}
	if _, err := p.APIServer.Cert.Verify(x509.VerifyOptions{DNSName: "kubernetes.default.svc", Roots: CertPool(p.CA)}); err != nil {
		t.Errorf("apiserver cert: %v", err)
	}
	client := p.IssueClient("alice", "devs", "ops")
	opts := x509.VerifyOptions{Roots: CertPool(p.ClientCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := client.Cert.Verify(opts); err != nil {
		t.Errorf("client cert: %v", err)
	}
	if got := slices.Sorted(slices.Values(client.Cert.Subject.Organization)); strings.Join(got, ",") != "devs,ops" {
		t.Errorf("client cert orgs = %v", got)
	}
	if _, err := client.Cert.Verify(x509.VerifyOptions{Roots: CertPool(p.CA), KeyUsages: opts.KeyUsages}); err == nil {
		t.Errorf("client cert verified against the cluster CA; want only the client CA")
	}
	if _, err := p.FrontProxyClient.Cert.Verify(x509.VerifyOptions{Roots: CertPool(p.FrontProxyCA), KeyUsages: opts.KeyUsages}); err != nil || p.FrontProxyClient.Cert.Subject.CommonName != "front-proxy-client" {
		t.Errorf("front-proxy-client: %v, CN %q", err, p.FrontProxyClient.Cert.Subject.CommonName)
	}
	if _, err := serving.TLSCertificate(); err != nil {
		t.Errorf("key pair does not load: %v", err)
	}
	if again := p.IssueServing("127.0.0.1"); again.CertFile == serving.CertFile {
		t.Errorf("second certificate overwrote %s", serving.CertFile)
	}
}

func TestLoginForm_FindsDexStyleForm(t *testing.T) {
	page := `<html><body><form method="post" action="/dex/auth/local/login?back=&amp;state=abc">
	<input tabindex="1" required id="login" name="login" type="text" value=""/>
	<input name="password" type="password"/><input type="hidden" name="csrf" value="x1">
	<button type="submit">Login</button></form></body></html>`
	f, ok := findLoginForm([]byte(page))
	if !ok {
		t.Fatal("form not found")
	}
	if f.action != "/dex/auth/local/login?back=&state=abc" || f.method != "POST" || f.loginField != "login" || f.passwordField != "password" || f.hidden["csrf"] != "x1" {
		t.Errorf("form = %+v", f)
	}
	if _, ok := findLoginForm([]byte(`<form action="/x"><input name="q"></form>`)); ok {
		t.Errorf("a form without a password input was taken for a login form")
	}
	chooser := `<a href="/dex/auth/mock?req=1">Mock</a><a href="/dex/auth/local?req=1"><button>Email</button></a>`
	if l, ok := findLink([]byte(chooser), "/auth/local"); !ok || l != "/dex/auth/local?req=1" {
		t.Errorf("findLink = %q, %v", l, ok)
	}
}

func signJWT(t *testing.T, alg, kid string, claims map[string]any, sign func(digest []byte) []byte) string {
	t.Helper()
	hdr, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid})
	body, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	d := sha256.Sum256([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(sign(d[:]))
}

func TestVerifyJWT(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPKI(t)
	ecKey := p.SAKey
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	keys := []JWK{
		{Kid: "r", Kty: "RSA", N: b64(rsaKey.N.Bytes()), E: b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{Kid: "e", Kty: "EC", Crv: "P-256", X: b64(ecKey.X.FillBytes(make([]byte, 32))), Y: b64(ecKey.Y.FillBytes(make([]byte, 32)))},
	}
	now := time.Now()
	claims := map[string]any{"iss": "https://iss", "aud": "c1", "exp": now.Add(time.Minute).Unix(), "email": "a@b"}
	rsaSign := func(d []byte) []byte {
		s, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ecSign := func(d []byte) []byte {
		r, s, err := ecdsa.Sign(rand.Reader, ecKey, d)
		if err != nil {
			t.Fatal(err)
		}
		return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	}
	for _, tok := range []string{signJWT(t, "RS256", "r", claims, rsaSign), signJWT(t, "ES256", "e", claims, ecSign)} {
		got, err := VerifyJWT(tok, keys, "https://iss", "c1", now)
		if err != nil || got["email"] != "a@b" {
			t.Errorf("VerifyJWT = %v, %v", got, err)
		}
		if _, err := VerifyJWT(tok, keys, "https://other", "c1", now); err == nil {
			t.Errorf("wrong issuer accepted")
		}
		if _, err := VerifyJWT(tok, keys, "https://iss", "c2", now); err == nil {
			t.Errorf("wrong audience accepted")
		}
		if _, err := VerifyJWT(tok, keys, "https://iss", "c1", now.Add(time.Hour)); err == nil {
			t.Errorf("expired token accepted")
		}
		parts := strings.Split(tok, ".")
		forged, _ := json.Marshal(map[string]any{"iss": "https://iss", "aud": "c1", "exp": now.Add(time.Minute).Unix(), "email": "evil@b"})
		if _, err := VerifyJWT(parts[0]+"."+b64(forged)+"."+parts[2], keys, "", "", now); err == nil {
			t.Errorf("tampered claims accepted")
		}
	}
}

func TestProcess_WaitUntilReportsEarlyExitWithLog(t *testing.T) {
	p := StartProcess(t, ProcessSpec{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", "echo boom-from-crasher; exit 3"}})
	err := p.WaitUntil(t.Context(), 30*time.Second, "ready", func(context.Context) error { return errors.New("not yet") })
	if err == nil || !strings.Contains(err.Error(), "boom-from-crasher") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("WaitUntil = %v; want the exit status and the log", err)
	}
}

func TestProcess_StopTerminatesTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The shell forks a child and waits; SIGTERM to the group must end both.
	p := StartProcess(t, ProcessSpec{Name: "parent", Path: "/bin/sh", Args: []string{"-c", "sleep 300 & echo $! > " + pidFile + "; wait"}})
	var child int
	err := p.WaitUntil(t.Context(), 10*time.Second, "child started", func(context.Context) error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop = %v, want nil (killed by our SIGTERM)", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still alive after Stop", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if p.Pid() == 0 {
		t.Fatal("no pid after restart")
	}
	if !strings.Contains(p.Log(), "exited: signal: terminated") {
		t.Errorf("log lacks the exit line:\n%s", p.Log())
	}
}

// alive reports whether pid runs (a zombie waiting for init to reap it does
// not count).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Fields after the parenthesised command: state is the first.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

func TestProcessesWithOneNameKeepSeparateLogs(t *testing.T) {
	a := StartProcess(t, ProcessSpec{Name: "twin", Path: "/bin/sh", Args: []string{"-c", "echo first; sleep 300"}})
	b := StartProcess(t, ProcessSpec{Name: "twin", Path: "/bin/sh", Args: []string{"-c", "echo second; sleep 300"}})
	if a.LogPath == b.LogPath {
		t.Fatalf("both processes log to %s", a.LogPath)
	}
	for p, want := range map[*Process]string{a: "first", b: "second"} {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(p.Log(), want) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if log := p.Log(); !strings.Contains(log, want) || strings.Contains(log, map[string]string{"first": "second", "second": "first"}[want]) {
			t.Errorf("%s holds %q, want only %q", p.LogPath, log, want)
		}
	}
}

func TestPlaceProcessesPinsByName(t *testing.T) {
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		t.Fatal(err)
	}
	if mine.Count() < 2 {
		t.Skip("needs two CPUs to tell a placement from none")
	}
	last := -1
	for c := range 1024 {
		if mine.IsSet(c) {
			last = c
		}
	}
	PlaceProcesses(t, map[string]string{"placed": strconv.Itoa(last)})
	script := "grep Cpus_allowed_list /proc/self/status; sleep 300"
	placed := StartProcess(t, ProcessSpec{Name: "placed-one", Path: "/bin/sh", Args: []string{"-c", script}})
	free := StartProcess(t, ProcessSpec{Name: "free-one", Path: "/bin/sh", Args: []string{"-c", script}})
	allowed := func(p *Process) string {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(p.Log(), "Cpus_allowed_list:") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_, v, _ := strings.Cut(p.Log(), "Cpus_allowed_list:")
		v, _, _ = strings.Cut(v, "\n")
		return strings.TrimSpace(v)
	}
	if got := allowed(placed); got != strconv.Itoa(last) {
		t.Errorf("placed-one may run on %q, want %d", got, last)
	}
	if got := allowed(free); got == strconv.Itoa(last) || got == "" {
		t.Errorf("free-one may run on %q, want every CPU the test may use", got)
	}
}
