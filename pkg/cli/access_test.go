package cli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	testingclock "k8s.io/utils/clock/testing"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// fakeAccessAPI plays login.portcullis.dev behind a kubeconfig context: one
// request that turns Approved after approvals approvals.
type fakeAccessAPI struct {
	mu        sync.Mutex
	created   loginv1alpha1.AccessRequest
	decisions []loginv1alpha1.AccessRequestDecisionSpec
	gets      int
	deny      bool
}

func (f *fakeAccessAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer user-token" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status := func() loginv1alpha1.AccessRequestStatus {
		st := loginv1alpha1.AccessRequestStatus{Phase: loginv1alpha1.AccessRequestPending, ApprovalsRequired: 1}
		if f.gets >= 2 {
			exp := metav1.NewTime(time.Now().Add(30 * time.Minute))
			st.Phase, st.DecidedBy, st.ExpirationTimestamp = loginv1alpha1.AccessRequestApproved, "carol", &exp
			if f.deny {
				st.Phase, st.DecisionReason = loginv1alpha1.AccessRequestDenied, "not now"
			}
		}
		return st
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == accessAPI+"/accessrequests":
		if err := json.NewDecoder(r.Body).Decode(&f.created); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		out := f.created
		out.Name, out.Status = "ar-1", status()
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodGet && r.URL.Path == accessAPI+"/accessrequests/ar-1":
		f.gets++
		out := f.created
		out.Name, out.Status = "ar-1", status()
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodPost && r.URL.Path == accessAPI+"/accessrequestdecisions":
		var d loginv1alpha1.AccessRequestDecision
		_ = json.NewDecoder(r.Body).Decode(&d)
		f.decisions = append(f.decisions, d.Spec)
		if d.Spec.RequestName != "ar-1" {
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(metav1.Status{Status: metav1.StatusFailure, Message: "you cannot approve your own request", Code: 403})
			return
		}
		f.gets = 2
		d.Status = status()
		_ = json.NewEncoder(w).Encode(d)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func accessDeps(t *testing.T, api http.Handler) (*Deps, *syncBuffer, *syncBuffer) {
	t.Helper()
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	home := t.TempDir()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: srv.URL, CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "user-token"}
	kc.Contexts["prod"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "prod"
	if err := clientcmd.WriteToFile(*kc, filepath.Join(home, ".kube", "config")); err != nil {
		t.Fatal(err)
	}
	out, errb := &syncBuffer{}, &syncBuffer{}
	return &Deps{
		Stdout: out, Stderr: errb, Name: "portcullis",
		Getenv:      func(string) string { return "" },
		Clock:       testingclock.NewFakeClock(time.Now()),
		UserHomeDir: func() (string, error) { return home, nil },
	}, out, errb
}

func runAccess(t *testing.T, d *Deps, args ...string) error {
	t.Helper()
	cmd := NewRootCommand(d)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cmd.ExecuteContext(ctx)
}

func TestRequestWaitsWithAProgressLineUntilApproved(t *testing.T) {
	api := &fakeAccessAPI{}
	d, out, errb := accessDeps(t, api)
	err := runAccess(t, d, "request", "--cluster", "prod", "--group", "sre-admin", "--for", "30m", "--reason", "INC-123", "--poll-interval", "10ms")
	if err != nil {
		t.Fatalf("request: %v\n%s", err, errb)
	}
	if s := api.created.Spec; s.Cluster != "prod" || strings.Join(s.Groups, ",") != "sre-admin" || s.Duration.Duration != 30*time.Minute || s.Reason != "INC-123" || s.Username != "" {
		t.Errorf("the request sent is %+v", s)
	}
	if !strings.Contains(errb.String(), "waiting for approval of ar-1: 0/1 approvals") {
		t.Errorf("no progress line on stderr: %q", errb)
	}
	if !strings.Contains(out.String(), "Approved by carol: you have sre-admin on prod") {
		t.Errorf("stdout = %q", out)
	}
}

func TestRequestFailsWhenDenied(t *testing.T) {
	api := &fakeAccessAPI{deny: true}
	d, _, _ := accessDeps(t, api)
	err := runAccess(t, d, "request", "--cluster", "prod", "--group", "sre-admin", "--for", "30m", "--reason", "INC-123", "--poll-interval", "10ms")
	if err == nil || !strings.Contains(err.Error(), "was denied by carol: not now") {
		t.Fatalf("got %v, want the denial", err)
	}
}

func TestRequestNoWaitReturnsAtOnce(t *testing.T) {
	api := &fakeAccessAPI{}
	d, out, _ := accessDeps(t, api)
	if err := runAccess(t, d, "request", "--cluster", "prod", "--group", "sre-admin", "--for", "5m", "--reason", "x", "--no-wait"); err != nil {
		t.Fatal(err)
	}
	if api.gets != 0 || !strings.Contains(out.String(), "portcullis approve ar-1") {
		t.Errorf("gets = %d, stdout = %q", api.gets, out)
	}
}

func TestRequestNeedsEveryFlag(t *testing.T) {
	d, _, _ := accessDeps(t, &fakeAccessAPI{})
	err := runAccess(t, d, "request", "--cluster", "prod", "--group", "sre-admin", "--reason", "x")
	if err == nil || !strings.Contains(err.Error(), "--for is required") {
		t.Fatalf("got %v", err)
	}
}

func TestApproveAndDenySendTheDecisionAndShowTheServersRefusal(t *testing.T) {
	api := &fakeAccessAPI{}
	d, out, _ := accessDeps(t, api)
	if err := runAccess(t, d, "approve", "ar-1", "--reason", "go"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Approved ar-1: the grant is active until") {
		t.Errorf("stdout = %q", out)
	}
	err := runAccess(t, d, "deny", "ar-2")
	if err == nil || !strings.Contains(err.Error(), "denying ar-2: you cannot approve your own request (HTTP 403)") {
		t.Fatalf("got %v", err)
	}
	if len(api.decisions) != 2 || api.decisions[0] != (loginv1alpha1.AccessRequestDecisionSpec{RequestName: "ar-1", Decision: "Approve", Reason: "go"}) || api.decisions[1].Decision != "Deny" {
		t.Errorf("decisions sent: %+v", api.decisions)
	}
}
