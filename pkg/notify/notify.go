// Package notify sends access request and grant transitions to an outgoing
// webhook (notifications.webhook), so that a chat bot can announce them.
//
// Notifications are best effort and never on the decision path: Notify only
// queues (a full queue drops, with a log line), a worker POSTs with retries.
// It must never send a token or any credential: events carry names, groups,
// reasons and times only.
package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/klog/v2"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/registry"
)

// Defaults.
const (
	DefaultMaxAttempts = 5
	queueSize          = 256
	requestTimeout     = 10 * time.Second
)

// Message is the JSON body POSTed for each event.
type Message struct {
	// Kind is always "PortcullisAccessEvent".
	Kind string `json:"kind"`
	// Text is a one-line summary for people (a chat message).
	Text  string               `json:"text"`
	Event registry.AccessEvent `json:"event"`
}

// Webhook posts events to the configured webhook. Create it with New and
// run Run in a goroutine.
type Webhook struct {
	config func() *configv1alpha1.PortcullisConfiguration
	queue  chan registry.AccessEvent
	// firstBackoff is the wait before the second attempt; it doubles.
	firstBackoff time.Duration
}

// New returns a notifier reading notifications.webhook from config at each
// send (so a reload applies to the next notification).
func New(config func() *configv1alpha1.PortcullisConfiguration) *Webhook {
	return &Webhook{config: config, queue: make(chan registry.AccessEvent, queueSize), firstBackoff: time.Second}
}

func (w *Webhook) target() *configv1alpha1.NotificationWebhook {
	cfg := w.config()
	if cfg == nil || cfg.Notifications == nil {
		return nil
	}
	return cfg.Notifications.Webhook
}

// Notify queues e; it never blocks.
func (w *Webhook) Notify(e registry.AccessEvent) {
	if w.target() == nil {
		return
	}
	select {
	case w.queue <- e:
	default:
		klog.InfoS("Notification queue full; dropping a notification", "type", e.Type, "name", e.Name)
	}
}

// Run sends queued events until ctx ends.
func (w *Webhook) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-w.queue:
			w.send(ctx, e)
		}
	}
}

func (w *Webhook) send(ctx context.Context, e registry.AccessEvent) {
	t := w.target()
	if t == nil {
		return
	}
	attempts := t.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	body, err := json.Marshal(Message{Kind: "PortcullisAccessEvent", Text: Text(e), Event: e})
	if err != nil {
		klog.ErrorS(err, "Encoding a notification failed", "name", e.Name)
		return
	}
	client, err := httpClient(t.CertificateAuthorityFile)
	if err != nil {
		klog.ErrorS(err, "Notification webhook unusable; dropping a notification", "url", t.URL, "name", e.Name)
		return
	}
	wait := w.firstBackoff
	for i := 1; ; i++ {
		retry, err := post(ctx, client, t.URL, body)
		if err == nil {
			klog.V(2).InfoS("Sent a notification", "type", e.Type, "name", e.Name, "attempt", i)
			return
		}
		if !retry || i >= attempts {
			klog.ErrorS(err, "Sending a notification failed; giving up", "type", e.Type, "name", e.Name, "attempts", i, "url", t.URL)
			return
		}
		klog.V(2).InfoS("Sending a notification failed; retrying", "type", e.Type, "name", e.Name, "attempt", i, "err", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// post sends body once; retry says whether another attempt may succeed.
func post(ctx context.Context, client *http.Client, url string, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "portcullis-notify")
	resp, err := client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("HTTP %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("HTTP %d (not retried: the receiver refuses the notification)", resp.StatusCode)
	}
}

func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no certificate in " + caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	// A notification never follows a redirect: the configured URL is the
	// one receiver.
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// Text is a one-line summary of e for people.
func Text(e registry.AccessEvent) string {
	groups := strings.Join(e.Groups, ",")
	window := ""
	if !e.ExpiresAt.IsZero() {
		window = " until " + e.ExpiresAt.UTC().Format(time.RFC3339)
	}
	switch e.Type {
	case "Created":
		return fmt.Sprintf("%s asks for %s on %s: %q (request %s)", e.Requester, groups, e.Cluster, e.Reason, e.Name)
	case "Approval":
		return fmt.Sprintf("%s approved %s's request %s for %s on %s; it needs more approvals", e.Actor, e.Requester, e.Name, groups, e.Cluster)
	case "Approved":
		return fmt.Sprintf("%s approved %s's request %s: %s on %s%s", e.Actor, e.Requester, e.Name, groups, e.Cluster, window)
	case "Denied":
		return fmt.Sprintf("%s denied %s's request %s for %s on %s", e.Actor, e.Requester, e.Name, groups, e.Cluster)
	case "Granted":
		return fmt.Sprintf("%s granted %s %s on %s directly%s: %q", e.Actor, e.Requester, groups, e.Cluster, window, e.Reason)
	case "Revoked":
		return fmt.Sprintf("%s revoked %s's grant %s (%s on %s)", e.Actor, e.Requester, e.Name, groups, e.Cluster)
	}
	return fmt.Sprintf("%s: %s %s on %s by %s", e.Type, e.Requester, groups, e.Cluster, e.Actor)
}
