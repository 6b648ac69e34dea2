package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// TestPortal_AccessRequestsPageInHeadlessChromium: alice asks for sre-admin
// through Portcullis's API with a CLI login's token, then, in the browser,
// sees the request on /portal/access as its approver and approves it; a form
// without the page's CSRF token changes nothing. (The login stack admits one
// Dex user, so its policy lets alice approve her own requests; refusals of
// self-approval and of non-approvers are TestJustInTimeAccess's.)
func TestPortal_AccessRequestsPageInHeadlessChromium(t *testing.T) {
	if framework.ChromiumBinary() == "" {
		framework.SkipMissing(t, "Debian's chromium", "apt-get install -y chromium", "the approvers' page was not checked in a browser")
	}
	t.Parallel()
	s := startLoginStack(t, false)
	artifacts := filepath.Join(framework.WorkDir(t), "artifacts")

	// alice asks, through Portcullis's API, with the cluster token of a
	// real CLI login (tokens live 15 s here: each call logs in again, which
	// refreshes the cached session).
	cache := s.newCacheDir(t)
	aliceToken := func() string {
		t.Helper()
		out, err := s.cli(t, cache, nil, "login", "--server", s.portcullis.URL, "--cluster", loginCluster,
			"--certificate-authority", s.portcullis.CACertFile())
		if err != nil {
			t.Fatalf("portcullis login: %v\n%s", err, out)
		}
		// The CLI keeps its cache in the portcullis/ subdirectory.
		return cachedClusterToken(t, cache, loginCluster)
	}
	hc := s.portcullis.HTTPClient()
	api := s.portcullis.URL + "/apis/login.portcullis.dev/v1alpha1"
	call := func(method, path string, body any, into any) int {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		req, _ := http.NewRequest(method, api+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+aliceToken())
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if into != nil {
			_ = json.NewDecoder(resp.Body).Decode(into)
		}
		return resp.StatusCode
	}
	var req loginv1alpha1.AccessRequest
	if code := call(http.MethodPost, "/accessrequests", loginv1alpha1.AccessRequest{
		TypeMeta: loginTypeMeta("AccessRequest"),
		Spec:     loginv1alpha1.AccessRequestSpec{Cluster: loginCluster, Groups: []string{"sre-admin"}, Duration: durationOf("5m"), Reason: "INC-77 disk full"},
	}, &req); code != http.StatusCreated || req.Name == "" {
		t.Fatalf("alice's request: HTTP %d %+v", code, req)
	}

	c := framework.StartChromium(t)
	text := func() string {
		t.Helper()
		var s string
		if err := c.Eval(`document.body.innerText`, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := c.Navigate(s.portcullis.URL + "/login"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return strings.HasPrefix(u, s.dex.IssuerURL) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(`(() => { document.querySelector('input[name=login]').value = 'alice@example.com';
	  document.querySelector('input[name=password]').value = 'alice-password';
	  document.querySelector('form').submit(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/" }); err != nil {
		t.Fatal(err)
	}
	if err := c.Navigate(s.portcullis.URL + "/portal/access"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/access" }); err != nil {
		t.Fatal(err)
	}
	page := text()
	for _, want := range []string{"Access requests", "alice@example.com", "sre-admin", "INC-77 disk full", "Approve", "Deny"} {
		if !strings.Contains(page, want) {
			t.Errorf("the approvers' page does not show %q:\n%s", want, page)
		}
	}
	if err := c.Screenshot(filepath.Join(artifacts, "access-requests.png")); err != nil {
		t.Fatal(err)
	}

	// A form without the page's CSRF token is refused and decides nothing.
	if err := c.Eval(`(() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/portal/access';
	  for (const [k, v] of [['csrf', 'forged'], ['decision', 'Approve'], ['request', '`+req.Name+`']]) {
	    const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
	  document.body.appendChild(f); f.submit(); return true; })()`, nil); err != nil {
		t.Fatal(err)
	}
	// The answer comes back at the same address: wait for its text.
	var page2 string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c.Eval(`document.body.innerText`, &page2) == nil && strings.Contains(page2, "The form has expired") {
			break
		}
	}
	if !strings.Contains(page2, "The form has expired") {
		t.Errorf("a forged form shows:\n%s", page2)
	}
	var got loginv1alpha1.AccessRequest
	if call(http.MethodGet, "/accessrequests/"+req.Name, nil, &got); got.Status.Phase != loginv1alpha1.AccessRequestPending {
		t.Fatalf("after the forged form the request is %q, want Pending", got.Status.Phase)
	}
	if err := c.Navigate(s.portcullis.URL + "/portal/access"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return u == s.portcullis.URL+"/portal/access" }); err != nil {
		t.Fatal(err)
	}

	// alice approves with the button.
	if err := c.Eval(`(() => { document.querySelector('#reason-`+req.Name+`').value = 'looks right';
	  for (const b of document.querySelectorAll('button')) { if (b.innerText === 'Approve') { b.click(); return true; } }
	  throw new Error('no Approve button'); })()`, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLoaded(func(u string) bool { return strings.Contains(u, "/portal/access?decided="+req.Name) }); err != nil {
		t.Fatal(err)
	}
	if page = text(); !strings.Contains(page, "Request "+req.Name+" is approved") || !strings.Contains(page, "Nothing waits for your decision") {
		t.Errorf("after approving the page shows:\n%s", page)
	}
	if call(http.MethodGet, "/accessrequests/"+req.Name, nil, &got); got.Status.Phase != loginv1alpha1.AccessRequestApproved || got.Status.DecidedBy != "alice@example.com" || got.Status.DecisionReason != "looks right" {
		t.Fatalf("after approval in the browser the request is %+v", got.Status)
	}
	var grants loginv1alpha1.AccessGrantList
	if call(http.MethodGet, "/accessgrants", nil, &grants); len(grants.Items) != 1 || grants.Items[0].Spec.Username != "alice@example.com" {
		t.Errorf("alice's grants after approval: %+v", grants.Items)
	}
}

func loginTypeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: loginv1alpha1.SchemeGroupVersion.String(), Kind: kind}
}

func durationOf(s string) metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return metav1.Duration{Duration: d}
}
