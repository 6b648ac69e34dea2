package server

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/apis/config"
)

func TestTheConfigReadinessCheckReportsAFailedReloadOnlyWhenAskedByName(t *testing.T) {
	good, bad := sha256.Sum256([]byte("good")), sha256.Sum256([]byte("bad"))
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	r := newReloadStatus(good, start)
	byName := httptest.NewRequest("GET", "/readyz/"+ConfigReadyzCheck, nil)
	aggregate := httptest.NewRequest("GET", "/readyz", nil)
	if err := r.check(byName); err != nil {
		t.Fatalf("a served configuration is reported as failed: %v", err)
	}

	_, decodeErr := config.Decode("portcullis.yaml", []byte("apiVersion: config.portcullis.dev/v1alpha1\nkind: PortcullisConfiguration\nissuerURL: https://x\nclientSecret: hunter2\n"))
	if decodeErr == nil {
		t.Fatal("the bad configuration decoded")
	}
	r.failedWith(bad, start.Add(time.Minute), decodeErr)
	if err := r.check(aggregate); err != nil {
		t.Errorf("/readyz fails on a failed reload (the replica still serves its last good configuration): %v", err)
	}
	err := r.check(byName)
	if err == nil {
		t.Fatal("/readyz/portcullis-config does not report the failed reload")
	}
	for _, want := range []string{"2026-12-04T10:01:00Z", "2026-12-04T10:00:00Z", "1 problem(s): clientSecret: Forbidden", "see the log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the report lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the report, readable without credentials, shows a value of the file: %v", err)
	}

	r.failedWith([32]byte{}, start.Add(2*time.Minute), &fs.PathError{Op: "open", Path: "/etc/portcullis/config.yaml", Err: errors.New("no such file or directory")})
	if err := r.check(byName); err == nil || !strings.Contains(err.Error(), "could not be read: open: no such file or directory") {
		t.Errorf("an unreadable file: %v", err)
	}

	r.succeeded(bad, start.Add(3*time.Minute))
	if err := r.check(byName); err != nil {
		t.Errorf("a good file after a bad one is still reported failed: %v", err)
	}
}
