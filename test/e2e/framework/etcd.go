package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// Etcd is a single-member etcd on loopback, plain HTTP.
type Etcd struct {
	URL     string // client URL, http://127.0.0.1:<port>
	DataDir string
	Process *Process
}

// StartEtcd starts etcd (data in a temporary directory, no fsync) and waits
// until /health reports healthy.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin := ToolBinary(t, "etcd")
	WorkDir(t) // its cleanup must run after the process is stopped
	dataDir := t.TempDir()
	client := "http://" + hostPort(FreePort(t))
	peer := "http://" + hostPort(FreePort(t))
	p := StartProcess(t, ProcessSpec{
		Name: "etcd",
		Path: bin,
		Args: []string{
			"--name=default",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=default=" + peer,
			"--unsafe-no-fsync",
			"--log-level=warn",
		},
		StopTimeout: 5 * time.Second,
	})
	e := &Etcd{URL: client, DataDir: dataDir, Process: p}
	hc := &http.Client{Timeout: 5 * time.Second}
	err := p.WaitUntil(context.Background(), 30*time.Second, "healthy", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var h struct {
			Health string `json:"health"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &h) != nil || h.Health != "true" {
			return fmt.Errorf("GET /health: %s: %s", resp.Status, body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
