package breakglass

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/store/memory"
	"portcullis.dev/portcullis/pkg/token"
)

const issuer = "https://portcullis.example"

// recorder is an audit backend that keeps events and can refuse them.
type recorder struct {
	mu     sync.Mutex
	events []*auditinternal.Event
	refuse bool
}

func (r *recorder) ProcessEvents(evs ...*auditinternal.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse {
		return false
	}
	r.events = append(r.events, evs...)
	return true
}
func (r *recorder) Run(<-chan struct{}) error { return nil }
func (r *recorder) Shutdown()                 {}
func (r *recorder) String() string            { return "recorder" }

func setup(t *testing.T) (*v1alpha1.PortcullisConfiguration, *token.Minter, *token.Verifier) {
	t.Helper()
	st := memory.New()
	km, err := token.NewKeyManager(st, token.KeyOptions{RotationPeriod: time.Hour, MaxTokenLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, err := token.NewMinter(km, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(km, issuer, st, token.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &v1alpha1.PortcullisConfiguration{IssuerURL: issuer}
	cfg.Clusters = []v1alpha1.Cluster{{Name: "prod"}}
	cfg.Tokens.MaxLifetime = metav1.Duration{Duration: time.Hour}
	return cfg, m, v
}

func serve(t *testing.T, path string, cfg *v1alpha1.PortcullisConfiguration, m *token.Minter, rec *recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, func() *v1alpha1.PortcullisConfiguration { return cfg }, m, rec, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := MintVia(context.Background(), path, Request{}); !errors.Is(err, ErrNoServer) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMintThroughTheSocketIsAuditedUnderTheKernelsIdeaOfTheCaller(t *testing.T) {
	cfg, m, v := setup(t)
	rec := &recorder{}
	path := SocketPath(filepath.Join(t.TempDir(), "state.db"))
	serve(t, path, cfg, m, rec)

	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	raw, err := MintVia(context.Background(), path, Request{User: "root-on-call", Groups: []string{"system:masters"}, Cluster: "prod", TTL: 10 * time.Minute, Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(context.Background(), raw, []string{"prod"})
	if err != nil {
		t.Fatalf("the minted token does not verify: %v", err)
	}
	if claims.Username != "root-on-call" || claims.Reason != "INC-1" {
		t.Fatalf("claims = %+v", claims)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.events) != 1 {
		t.Fatalf("%d audit events, want 1", len(rec.events))
	}
	ev := rec.events[0]
	me, _ := user.Current()
	if ev.User.Username != "local:"+me.Username {
		t.Errorf("audit user = %q, want local:%s (from SO_PEERCRED)", ev.User.Username, me.Username)
	}
	if ev.Annotations["portcullis.dev/jti"] != claims.ID || ev.Annotations["portcullis.dev/reason"] != "INC-1" {
		t.Errorf("audit annotations = %v", ev.Annotations)
	}
	if via := ev.User.Extra["via"]; len(via) != 1 || !strings.HasPrefix(via[0], "socket") {
		t.Errorf("audit via = %v", via)
	}
}

func TestNoTokenWithoutAnAuditEvent(t *testing.T) {
	cfg, m, _ := setup(t)
	rec := &recorder{refuse: true}
	path := SocketPath(filepath.Join(t.TempDir(), "state.db"))
	serve(t, path, cfg, m, rec)
	_, err := MintVia(context.Background(), path, Request{User: "u", Cluster: "prod", TTL: time.Minute, Reason: "r"})
	if err == nil || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("MintVia with a refusing audit backend = %v, want a refusal naming the audit", err)
	}
	if _, err := Mint(context.Background(), cfg, m, nil, Operator{}, Request{User: "u", Cluster: "prod", TTL: time.Minute, Reason: "r"}); err == nil {
		t.Fatal("Mint without an audit backend succeeded")
	}
}

func TestBadRequestsNameTheFix(t *testing.T) {
	cfg, m, _ := setup(t)
	rec := &recorder{}
	path := SocketPath(filepath.Join(t.TempDir(), "state.db"))
	serve(t, path, cfg, m, rec)
	for name, tc := range map[string]struct {
		req  Request
		want string
	}{
		"missing flags":   {Request{TTL: time.Minute}, "--cluster, --reason, --user"},
		"unknown cluster": {Request{User: "u", Cluster: "nope", TTL: time.Minute, Reason: "r"}, `cluster "nope" is not configured`},
		"ttl too long":    {Request{User: "u", Cluster: "prod", TTL: 2 * time.Hour, Reason: "r"}, "tokens.maxLifetime"},
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			_, err := MintVia(context.Background(), path, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if len(rec.events) != 0 {
		t.Fatalf("refused requests wrote %d audit events", len(rec.events))
	}
}

func TestASecondServerOnTheSameSocketIsRefused(t *testing.T) {
	cfg, m, _ := setup(t)
	path := SocketPath(filepath.Join(t.TempDir(), "state.db"))
	serve(t, path, cfg, m, &recorder{})
	err := Serve(context.Background(), path, func() *v1alpha1.PortcullisConfiguration { return cfg }, m, &recorder{}, nil)
	if err == nil || !strings.Contains(err.Error(), "another server") {
		t.Fatalf("second Serve = %v", err)
	}
}

func TestNoServerIsReportedAsSuch(t *testing.T) {
	_, err := MintVia(context.Background(), filepath.Join(t.TempDir(), "none.sock"), Request{})
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("MintVia without a server = %v, want ErrNoServer", err)
	}
}

func TestASocketPathLongerThanAUnixAddressStillWorks(t *testing.T) {
	cfg, m, _ := setup(t)
	dir := filepath.Join(t.TempDir(), strings.Repeat("a-rather-long-directory-name-", 4))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := SocketPath(filepath.Join(dir, "state.db"))
	if len(path) <= maxSocketPath {
		t.Fatalf("path %d bytes: not long enough to test this", len(path))
	}
	serve(t, path, cfg, m, &recorder{})
	if _, err := MintVia(context.Background(), path, Request{User: "u", Cluster: "prod", TTL: time.Minute, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
}

func TestAFileThatIsNotASocketIsNeverRemoved(t *testing.T) {
	cfg, m, _ := setup(t)
	path := SocketPath(filepath.Join(t.TempDir(), "state.db"))
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Serve(context.Background(), path, func() *v1alpha1.PortcullisConfiguration { return cfg }, m, &recorder{}, nil)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve over a regular file = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Fatal("Serve removed a file that was not its socket")
	}
}
