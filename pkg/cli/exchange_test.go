package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

const testIDToken = "eyJhbGciOiJSUzI1NiJ9.secret-id-token-payload.sig"

// fakeLoginAPI fakes the login.portcullis.dev API of a Portcullis server.
type fakeLoginAPI struct {
	srv *httptest.Server

	mu        sync.Mutex
	exchanges int
	issued    []string
	refuse    *loginv1alpha1.TokenCredentialRequestStatus
}

func newFakeLoginAPI(t *testing.T) *fakeLoginAPI {
	f := &fakeLoginAPI{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+loginAPIPath+"/tokencredentialrequests", func(w http.ResponseWriter, r *http.Request) {
		var req loginv1alpha1.TokenCredentialRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the exchange sent an Authorization header")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.exchanges++
		switch {
		case f.refuse != nil:
			req.Status = *f.refuse
		case req.Spec.Token != testIDToken:
			req.Status = loginv1alpha1.TokenCredentialRequestStatus{Reason: loginv1alpha1.ReasonAuthenticationFailed, Message: "bad token"}
		case req.Spec.Cluster != "c1":
			req.Status = loginv1alpha1.TokenCredentialRequestStatus{Reason: loginv1alpha1.ReasonUnknownCluster, Message: "no cluster " + req.Spec.Cluster}
		default:
			tok := fmt.Sprintf("cluster-token-%d", f.exchanges)
			f.issued = append(f.issued, tok)
			exp := metav1.NewTime(time.Now().Add(time.Hour).Truncate(time.Second))
			req.Status = loginv1alpha1.TokenCredentialRequestStatus{Token: tok, ExpirationTimestamp: &exp}
		}
		req.Spec.Token = ""
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&req)
	})
	mux.HandleFunc("POST "+loginAPIPath+"/whoamirequests", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		known := false
		for _, tok := range f.issued {
			known = known || r.Header.Get("Authorization") == "Bearer "+tok
		}
		f.mu.Unlock()
		if !known {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(metav1.Status{Status: "Failure", Message: "Unauthorized", Code: 401})
			return
		}
		out := loginv1alpha1.WhoAmIRequest{Status: loginv1alpha1.WhoAmIRequestStatus{UserInfo: loginv1alpha1.UserInfo{Username: "ci-bot", Groups: []string{"ci", "deployers"}}}}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&out)
	})
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLoginAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exchanges
}

type exchangeEnv struct {
	api      *fakeLoginAPI
	cacheDir string
	env      map[string]string
	clk      *testingclock.FakeClock
	idFile   string
	outputs  []string
}

func newExchangeEnv(t *testing.T) *exchangeEnv {
	dir := t.TempDir()
	e := &exchangeEnv{clk: testingclock.NewFakeClock(time.Now()), api: newFakeLoginAPI(t), cacheDir: filepath.Join(dir, "cache"), env: map[string]string{}, idFile: filepath.Join(dir, "id-token")}
	e.env["PORTCULLIS_CACHE_DIR"] = e.cacheDir
	if err := os.WriteFile(e.idFile, []byte(testIDToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *exchangeEnv) run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	out, errb := &syncBuffer{}, &syncBuffer{}
	d := &Deps{
		Stdin: strings.NewReader(stdin), Stdout: out, Stderr: errb,
		Getenv:          func(k string) string { return e.env[k] },
		Clock:           e.clk,
		Transport:       e.api.srv.Client().Transport,
		StdinIsTerminal: func() bool { return false },
		OpenBrowser:     func(string) error { t.Errorf("a browser was opened"); return nil },
		UserCacheDir:    func() (string, error) { return e.cacheDir, nil },
		UserHomeDir:     func() (string, error) { return t.TempDir(), nil },
	}
	cmd := NewRootCommand(d)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	e.outputs = append(e.outputs, out.String(), errb.String())
	if err != nil {
		e.outputs = append(e.outputs, err.Error())
	}
	return out.String(), errb.String(), err
}

func (e *exchangeEnv) login(t *testing.T, extra ...string) (string, error) {
	out, _, err := e.run(t, "", append([]string{"login", "--server", e.api.srv.URL, "--cluster", "c1"}, extra...)...)
	return out, err
}

func (e *exchangeEnv) execCredential(t *testing.T) (execCredential, error) {
	t.Helper()
	e.env["KUBERNETES_EXEC_INFO"] = execInfo(false)
	defer delete(e.env, "KUBERNETES_EXEC_INFO")
	out, _, err := e.run(t, "", "exec-credential", "--server", e.api.srv.URL, "--cluster", "c1")
	var ec execCredential
	if err == nil {
		if jerr := json.Unmarshal([]byte(out), &ec); jerr != nil {
			t.Fatalf("exec-credential printed %q: %v", out, jerr)
		}
	}
	return ec, err
}

// checkNoIDToken fails if the ID token appears in any output or cache file.
func (e *exchangeEnv) checkNoIDToken(t *testing.T) {
	t.Helper()
	for _, o := range e.outputs {
		if strings.Contains(o, "secret-id-token") {
			t.Errorf("the ID token appears in output: %q", o)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(e.cacheDir, cacheSubdir))
	for _, de := range entries {
		b, err := os.ReadFile(filepath.Join(e.cacheDir, cacheSubdir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "secret-id-token") {
			t.Errorf("the ID token appears in cache file %s", de.Name())
		}
	}
}

func TestIDTokenLoginThenExecCredential(t *testing.T) {
	e := newExchangeEnv(t)
	out, err := e.login(t, "--id-token-file", e.idFile)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if !strings.Contains(out, "for cluster c1") {
		t.Errorf("login said %q", out)
	}
	ec, err := e.execCredential(t)
	if err != nil {
		t.Fatalf("exec-credential: %v", err)
	}
	if ec.Status.Token != "cluster-token-1" || ec.Status.ExpirationTimestamp.IsZero() {
		t.Errorf("exec-credential gave %+v", ec)
	}
	if n := e.api.count(); n != 1 {
		t.Errorf("%d exchanges, want 1 (exec-credential should use the cache)", n)
	}
	b, err := os.ReadFile(filepath.Join(e.cacheDir, cacheSubdir, cacheKey(e.api.srv.URL)+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), e.idFile) {
		t.Errorf("the cache does not record the ID token file: %s", b)
	}
	whoami, _, err := e.run(t, "", "whoami", "--server", e.api.srv.URL, "--cluster", "c1")
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if !strings.Contains(whoami, "Portcullis says:    ci-bot, groups ci, deployers") {
		t.Errorf("whoami said %q", whoami)
	}
	e.checkNoIDToken(t)
}

func TestIDTokenLoginFromStdinAndEnv(t *testing.T) {
	e := newExchangeEnv(t)
	if _, _, err := e.run(t, testIDToken+"\n", "login", "--server", e.api.srv.URL, "--cluster", "c1", "--id-token-file", "-"); err != nil {
		t.Fatalf("login from stdin: %v", err)
	}
	// Expired, nothing recorded to exchange from: guidance.
	e.clk.SetTime(time.Now().Add(2 * time.Hour))
	if _, err := e.execCredential(t); err == nil || !strings.Contains(err.Error(), "--id-token-file") {
		t.Errorf("exec-credential with an expired stdin-exchanged token: %v", err)
	}
	// The environment names a file: exchanged again from it.
	e.env[idTokenFileEnv] = e.idFile
	ec, err := e.execCredential(t)
	if err != nil {
		t.Fatalf("exec-credential with %s: %v", idTokenFileEnv, err)
	}
	if ec.Status.Token != "cluster-token-2" {
		t.Errorf("exec-credential gave %q", ec.Status.Token)
	}
	e.checkNoIDToken(t)
}

func TestIDTokenLoginRefused(t *testing.T) {
	e := newExchangeEnv(t)
	e.api.refuse = &loginv1alpha1.TokenCredentialRequestStatus{Reason: loginv1alpha1.ReasonPolicyDenied, Message: "ci-bot may not use cluster c1"}
	e.env[idTokenFileEnv] = e.idFile
	_, err := e.login(t)
	if err == nil || !strings.Contains(err.Error(), "the exchange was refused: ci-bot may not use cluster c1 (PolicyDenied)") {
		t.Fatalf("login: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(e.cacheDir, cacheSubdir, cacheKey(e.api.srv.URL)+".json"))
	if err == nil && strings.Contains(string(b), "token") {
		t.Errorf("a refused exchange cached something: %s", b)
	}
	e.checkNoIDToken(t)
}

func TestExpiredExchangedTokenIsExchangedAgain(t *testing.T) {
	e := newExchangeEnv(t)
	if _, err := e.login(t, "--id-token-file", e.idFile); err != nil {
		t.Fatalf("login: %v", err)
	}
	e.clk.SetTime(time.Now().Add(2 * time.Hour))
	ec, err := e.execCredential(t)
	if err != nil {
		t.Fatalf("exec-credential: %v", err)
	}
	if ec.Status.Token != "cluster-token-2" || e.api.count() != 2 {
		t.Errorf("exec-credential gave %q after %d exchanges, want a new token", ec.Status.Token, e.api.count())
	}
	// The file is gone: a clear failure, no prompt.
	if err := os.Remove(e.idFile); err != nil {
		t.Fatal(err)
	}
	e.clk.SetTime(time.Now().Add(4 * time.Hour))
	_, err = e.execCredential(t)
	if err == nil || !strings.Contains(err.Error(), "no longer readable") || !strings.Contains(err.Error(), "portcullis login") {
		t.Errorf("exec-credential without the ID token file: %v", err)
	}
	e.checkNoIDToken(t)
}
