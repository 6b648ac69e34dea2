package notify

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/registry"
)

// receiver fails the first failures POSTs with 503, then records.
type receiver struct {
	mu       sync.Mutex
	failures int
	calls    int
	got      []Message
	done     chan struct{}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.failures {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var m Message
	if req.Header.Get("Content-Type") != "application/json" || json.NewDecoder(req.Body).Decode(&m) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.got = append(r.got, m)
	w.WriteHeader(http.StatusNoContent)
	close(r.done)
}

func start(t *testing.T, r *receiver, attempts int) (*Webhook, context.CancelFunc) {
	t.Helper()
	srv := httptest.NewTLSServer(r)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configv1alpha1.PortcullisConfiguration{Notifications: &configv1alpha1.NotificationsConfig{Webhook: &configv1alpha1.NotificationWebhook{URL: srv.URL + "/hook", CertificateAuthorityFile: ca, MaxAttempts: attempts}}}
	w := New(func() *configv1alpha1.PortcullisConfiguration { return cfg })
	w.firstBackoff = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	go w.Run(ctx)
	t.Cleanup(cancel)
	return w, cancel
}

var event = registry.AccessEvent{Type: "Approved", Name: "ar-1", Requester: "alice", Actor: "carol", Cluster: "prod", Groups: []string{"sre-admin"}, Reason: "INC-123",
	NotBefore: time.Date(2026, 12, 4, 22, 0, 0, 0, time.UTC), ExpiresAt: time.Date(2026, 12, 4, 22, 30, 0, 0, time.UTC)}

func TestANotificationIsRetriedUntilTheReceiverTakesIt(t *testing.T) {
	r := &receiver{failures: 2, done: make(chan struct{})}
	w, _ := start(t, r, 5)
	w.Notify(event)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver never got the notification")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls != 3 || len(r.got) != 1 {
		t.Fatalf("calls = %d, messages = %d; want 3 attempts and one message", r.calls, len(r.got))
	}
	m := r.got[0]
	if m.Kind != "PortcullisAccessEvent" || m.Event.Name != "ar-1" || m.Event.Actor != "carol" || m.Text != `carol approved alice's request ar-1: sre-admin on prod until 2026-12-04T22:30:00Z` {
		t.Errorf("message = %+v", m)
	}
}

func TestANotificationIsDroppedAfterMaxAttempts(t *testing.T) {
	r := &receiver{failures: 100, done: make(chan struct{})}
	w, _ := start(t, r, 2)
	w.Notify(event)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls != 2 {
		t.Fatalf("calls = %d, want maxAttempts (2)", r.calls)
	}
}

func TestNoWebhookNoNotification(t *testing.T) {
	w := New(func() *configv1alpha1.PortcullisConfiguration { return &configv1alpha1.PortcullisConfiguration{} })
	w.Notify(event)
	if len(w.queue) != 0 {
		t.Fatal("an event was queued without a webhook")
	}
}
