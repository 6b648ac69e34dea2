package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

const (
	annotationKubectlCommand = "proxy.portcullis.dev/kubectl-command"
	annotationKubectlSession = "proxy.portcullis.dev/kubectl-session"
)

// uuidPattern is the shape of kubectl's session id.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestProxyMode_KubectlCommandsInTheAuditTrail: the real kubectl's
// Kubectl-Command and Kubectl-Session headers end up, through Portcullis in
// proxy mode, as annotations of Portcullis's audit events (one session per
// kubectl invocation, shared by all its requests), cleaned and bounded
// when a client sends hostile values; the cluster's own audit log has
// neither.
func TestProxyMode_KubectlCommandsInTheAuditTrail(t *testing.T) {
	t.Parallel()
	s := startProxyStack(t, proxyStackOptions{
		clusters: []string{"c1"},
		audit:    true,
		users:    map[string][]string{"alice@c1": {"--user", "alice", "--group", "devs"}},
	})

	const invocations = 2
	for i := 0; i < invocations; i++ {
		if _, stderr, err := s.kubectl(t, "alice@c1", "get", "pods"); err != nil {
			t.Fatalf("kubectl get pods through the proxy: %v: %s", err, stderr)
		}
	}

	// Every request kubectl itself sends carries its headers (the
	// kubectl-dispatcher wrapper on this machine asks for /version
	// first, without them); the pod lists are one per invocation.
	var lists []auditEvent
	sessions := map[string][]auditEvent{}
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		lists, sessions = nil, map[string][]auditEvent{}
		for _, ev := range readAuditLog(t, s.auditLog) {
			if ev.Stage != "ResponseComplete" || ev.User.Username != "alice" || ev.Annotations["proxy.portcullis.dev/cluster"] != "c1" ||
				!strings.HasPrefix(ev.UserAgent, "kubectl/") {
				continue
			}
			sessions[ev.Annotations[annotationKubectlSession]] = append(sessions[ev.Annotations[annotationKubectlSession]], ev.auditEvent)
			if ev.Annotations["proxy.portcullis.dev/resource"] == "pods" && ev.Annotations["proxy.portcullis.dev/verb"] == "list" {
				lists = append(lists, ev.auditEvent)
			}
		}
		return len(lists) == invocations, nil
	})
	if err != nil {
		t.Fatalf("%d pod lists by alice in Portcullis's audit log, want %d", len(lists), invocations)
	}
	for _, ev := range lists {
		if got := ev.Annotations[annotationKubectlCommand]; got != "kubectl get" {
			t.Errorf("audit event %s (%s): %s = %q, want %q", ev.AuditID, ev.RequestURI, annotationKubectlCommand, got, "kubectl get")
		}
		if got := ev.Annotations[annotationKubectlSession]; !uuidPattern.MatchString(got) {
			t.Errorf("audit event %s (%s): %s = %q, want kubectl's session id (a UUID)", ev.AuditID, ev.RequestURI, annotationKubectlSession, got)
		}
	}
	if a, b := lists[0].Annotations[annotationKubectlSession], lists[1].Annotations[annotationKubectlSession]; a == b {
		t.Errorf("two kubectl invocations share the session %q", a)
	}
	if evs, ok := sessions[""]; ok {
		t.Errorf("%d of alice's requests were recorded without a kubectl session, e.g. %s", len(evs), evs[0].RequestURI)
	}
	if len(sessions) != invocations {
		t.Errorf("%d sessions among alice's requests, want one per kubectl invocation (%d)", len(sessions), invocations)
	}
	for session, evs := range sessions {
		for _, ev := range evs {
			if got := ev.Annotations[annotationKubectlCommand]; got != "kubectl get" {
				t.Errorf("request %s of session %s: command %q, want every request of `kubectl get` to say so", ev.RequestURI, session, got)
			}
		}
	}

	// kube-apiserver's own audit event of the same request (it adopts the
	// Audit-ID Portcullis sends) has neither value, though they were
	// forwarded: only Portcullis can put them in the audit trail.
	session := lists[0].Annotations[annotationKubectlSession]
	findAuditEvent(t, s.c1.AuditLogPath, lists[0].AuditID)
	if line := auditLogLine(t, s.c1.AuditLogPath, lists[0].AuditID); strings.Contains(line, session) || strings.Contains(line, "kubectl-command") {
		t.Errorf("kube-apiserver's audit event records kubectl's headers after all (update docs/webhook-mode.md):\n%s", line)
	}

	t.Run("hostile values are cleaned and bounded and keep the log readable", func(t *testing.T) {
		token := s.tokens["alice@c1"]
		header := http.Header{
			"Kubectl-Command": {"kubectl get\t\"}\xff" + strings.Repeat("x", 8000), "kubectl delete"},
			"Kubectl-Session": {"s\u202e" + strings.Repeat("y", 4000)},
			// Header hygiene holds beside them.
			"Impersonate_Group": {"system:masters"},
		}
		resp, body := s.raw(t, "GET", "/clusters/c1/api/v1/namespaces/default/pods", token, header, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET pods with hostile kubectl headers: %d %s", resp.StatusCode, body)
		}
		ev := findAuditEvent(t, s.auditLog, resp.Header.Get("Audit-Id"))
		cmd, sess := ev.Annotations[annotationKubectlCommand], ev.Annotations[annotationKubectlSession]
		if want := `kubectl get?"}?` + strings.Repeat("x", 128-len(`kubectl get?"}?`)-3) + "..."; cmd != want {
			t.Errorf("command recorded as %q, want %q", cmd, want)
		}
		if want := "s?" + strings.Repeat("y", 64-2-3) + "..."; sess != want {
			t.Errorf("session recorded as %q, want %q", sess, want)
		}
		// Every line of both logs is still one JSON event.
		for _, path := range []string{s.auditLog, s.c1.AuditLogPath} {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				if !json.Valid(line) {
					t.Errorf("%s line %d is not JSON: %.200q", path, i+1, line)
				}
			}
		}
		up := findAuditEvent(t, s.c1.AuditLogPath, resp.Header.Get("Audit-Id"))
		if up.ImpersonatedUser == nil || up.ImpersonatedUser.Username != "alice" || !slices.Contains(up.ImpersonatedUser.Groups, "devs") || slices.Contains(up.ImpersonatedUser.Groups, "system:masters") {
			t.Errorf("the cluster saw the request as %+v, want alice in devs only", up.ImpersonatedUser)
		}
	})
}

// auditEventWithAgent is an audit event with its client's User-Agent.
type auditEventWithAgent struct {
	auditEvent
	UserAgent string `json:"userAgent"`
}

// readAuditLog parses every JSON event of an audit log.
func readAuditLog(t *testing.T, path string) []auditEventWithAgent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var evs []auditEventWithAgent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev auditEventWithAgent
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// auditLogLine is the raw ResponseComplete line of auditID in an audit log.
func auditLogLine(t *testing.T, path, auditID string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"auditID":"`+auditID+`"`) && strings.Contains(line, `"stage":"ResponseComplete"`) {
			return line
		}
	}
	t.Fatalf("no ResponseComplete line for %s in %s", auditID, path)
	return ""
}
