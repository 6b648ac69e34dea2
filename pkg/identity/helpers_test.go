package identity

import (
	"context"
	"strings"
	"testing"
	"time"
)

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

// assertNoToken fails if err's text holds raw or any long part of it.
func assertNoToken(t *testing.T, err error, raw string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if strings.Contains(msg, raw) {
		t.Fatalf("error contains the token: %s", msg)
	}
	for _, part := range strings.Split(raw, ".") {
		if len(part) >= 8 && strings.Contains(msg, part) {
			t.Fatalf("error contains part of the token: %s", msg)
		}
	}
	if len(msg) > 400 {
		t.Fatalf("error is not short (%d bytes): %s", len(msg), msg)
	}
}
