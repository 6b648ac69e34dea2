package proxy

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"k8s.io/apiserver/pkg/audit"
)

func TestCleanHeaderValue(t *testing.T) {
	long := strings.Repeat("a", 10_000)
	tests := []struct {
		name   string
		values []string
		max    int
		want   string
	}{
		{name: "kubectl's own value is kept as it is", values: []string{"kubectl create secret generic"}, max: 128, want: "kubectl create secret generic"},
		{name: "a UUID session is kept as it is", values: []string{"0f8a4a6e-2d3b-4b1e-9c55-1a2b3c4d5e6f"}, max: 64, want: "0f8a4a6e-2d3b-4b1e-9c55-1a2b3c4d5e6f"},
		{name: "surrounding blanks are trimmed", values: []string{"  kubectl get\t "}, max: 128, want: "kubectl get"},
		{name: "an empty value records nothing", values: []string{""}, max: 128, want: ""},
		{name: "blank values record nothing", values: []string{" ", "\t"}, max: 128, want: ""},
		{name: "a tab inside is replaced", values: []string{"kubectl\tget"}, max: 128, want: "kubectl?get"},
		{name: "control characters are replaced", values: []string{"kubectl get\r\n{\"forged\":1}\x00\x1b[31m\x7f"}, max: 128, want: `kubectl get??{"forged":1}??[31m?`},
		{name: "non-ASCII characters are replaced one for one", values: []string{"kubectl gét ✓"}, max: 128, want: "kubectl g?t ?"},
		{name: "invalid UTF-8 bytes are replaced", values: []string{"kubectl \xff\xfeget"}, max: 128, want: "kubectl ??get"},
		{name: "bidi overrides are replaced", values: []string{"kubectl \u202eteg"}, max: 128, want: "kubectl ?teg"},
		{name: "a value at the bound is kept whole", values: []string{long[:64]}, max: 64, want: long[:64]},
		{name: "a very long value is cut to the bound and marked", values: []string{long}, max: 64, want: long[:61] + "..."},
		{name: "a long value that needs cleaning is cut and marked", values: []string{"\x01" + long}, max: 64, want: "?" + long[:60] + "..."},
		{name: "several values are all recorded", values: []string{"kubectl get", "kubectl delete"}, max: 128, want: "kubectl get, kubectl delete"},
		{name: "several values skip the blank ones", values: []string{"kubectl get", " ", "kubectl delete"}, max: 128, want: "kubectl get, kubectl delete"},
		{name: "many values are cut to the bound and marked", values: strings.Split(strings.Repeat("kubectl get,", 1000), ","), max: 128, want: strings.Repeat("kubectl get, ", 9) + "kubectl..."},
		{name: "a cut at a separator leaves no dangling comma", values: []string{"abcd", "efgh"}, max: 8, want: "abcd..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cleanHeaderValue(tt.values, tt.max)
			if got != tt.want {
				t.Errorf("cleanHeaderValue(%q, %d)\n  = %q\nwant %q", tt.values, tt.max, got, tt.want)
			}
			if len(got) > tt.max {
				t.Errorf("%d bytes, over the bound of %d", len(got), tt.max)
			}
			if !printableASCII(got) {
				t.Errorf("%q is not printable ASCII", got)
			}
		})
	}
}

func TestKubectlAnnotationsAllocateNothing(t *testing.T) {
	kv := make([]string, 0, 16)
	t.Run("without the headers", func(t *testing.T) {
		h := http.Header{"Accept": {"application/json"}, "User-Agent": {"kubectl/v1.32.0"}}
		if n := testing.AllocsPerRun(100, func() { _ = kubectlAnnotations(kv[:0], h) }); n != 0 {
			t.Errorf("%v allocations per request without kubectl headers, want 0", n)
		}
		if got := kubectlAnnotations(kv[:0], h); len(got) != 0 {
			t.Errorf("annotations %q without kubectl headers", got)
		}
	})
	t.Run("with clean headers", func(t *testing.T) {
		h := http.Header{KubectlCommandHeader: {"kubectl get"}, KubectlSessionHeader: {"0f8a4a6e-2d3b-4b1e-9c55-1a2b3c4d5e6f"}}
		if n := testing.AllocsPerRun(100, func() { _ = kubectlAnnotations(kv[:0], h) }); n != 0 {
			t.Errorf("%v allocations per request with clean kubectl headers, want 0", n)
		}
	})
}

// auditedFront serves the proxy behind the fake chain with an audit
// context per request (as WithAuditInit makes), and keeps the annotations
// each request ended with, by path.
type auditedFront struct {
	mu          sync.Mutex
	annotations map[string]map[string]string
}

func (a *auditedFront) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := audit.WithAuditContext(r.Context())
		h.ServeHTTP(w, r.WithContext(ctx))
		a.mu.Lock()
		defer a.mu.Unlock()
		a.annotations[r.URL.Path] = audit.AuditContextFrom(ctx).GetEventAnnotations()
	})
}

func (a *auditedFront) of(t *testing.T, path string) map[string]string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	ann, ok := a.annotations[path]
	if !ok {
		t.Fatalf("no audit event for %s", path)
	}
	return ann
}

func TestProxyRecordsKubectlHeadersInItsAuditEvent(t *testing.T) {
	env := newTestEnv(t)
	front := &auditedFront{annotations: map[string]map[string]string{}}
	srv := httptest.NewUnstartedServer(front.wrap(fakeChain(env.proxy)))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	env.front = srv // env.do sends to env.front; h1Client trusts every httptest certificate
	const session = "0f8a4a6e-2d3b-4b1e-9c55-1a2b3c4d5e6f"

	tests := []struct {
		name        string
		header      http.Header // raw keys, as sent
		wantCommand string      // "" = no annotation
		wantSession string
	}{
		{
			name:        "kubectl's headers are recorded as sent",
			header:      http.Header{"Kubectl-Command": {"kubectl get"}, "Kubectl-Session": {session}},
			wantCommand: "kubectl get", wantSession: session,
		},
		{
			name:        "lower-case header names are the same headers",
			header:      http.Header{"kubectl-command": {"kubectl logs"}, "kubectl-session": {session}},
			wantCommand: "kubectl logs", wantSession: session,
		},
		{
			name:   "a request without them records neither",
			header: http.Header{},
		},
		{
			name:        "a very long command is cut to its bound",
			header:      http.Header{"Kubectl-Command": {"kubectl " + strings.Repeat("x", 20_000)}, "Kubectl-Session": {strings.Repeat("s", 5_000)}},
			wantCommand: "kubectl " + strings.Repeat("x", maxKubectlCommandLen-len("kubectl ")-3) + "...",
			wantSession: strings.Repeat("s", maxKubectlSessionLen-3) + "...",
		},
		{
			name:        "tabs and bytes outside ASCII are replaced",
			header:      http.Header{"Kubectl-Command": {"kubectl\tg\xc3\xa9t \xff"}, "Kubectl-Session": {"s\x80\x81"}},
			wantCommand: "kubectl?g?t ?", wantSession: "s??",
		},
		{
			name:        "several values are all recorded",
			header:      http.Header{"Kubectl-Command": {"kubectl get", "kubectl delete"}, "Kubectl-Session": {session, "forged"}},
			wantCommand: "kubectl get, kubectl delete", wantSession: session + ", forged",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/clusters/c1/api/v1/namespaces/default/pods/p" + string(rune('a'+i))
			h := bearer("alice-token")
			// The proxy's header hygiene must hold beside them.
			h["Impersonate_User"] = []string{"admin"}
			h["X-Remote-Group"] = []string{"system:masters"}
			h["Cookie"] = []string{"portcullis-session=secret"}
			for k, v := range tt.header {
				h[k] = v
			}
			resp, body := env.do(t, env.h1Client, "GET", path, h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got %d %s", resp.StatusCode, body)
			}
			ann := front.of(t, path)
			if ann["proxy.portcullis.dev/cluster"] != "c1" || ann["proxy.portcullis.dev/verb"] != "get" {
				t.Errorf("the usual proxy annotations are missing: %v", ann)
			}
			for key, want := range map[string]string{AnnotationKubectlCommand: tt.wantCommand, AnnotationKubectlSession: tt.wantSession} {
				got, ok := ann[key]
				switch {
				case want == "" && ok:
					t.Errorf("annotation %s = %q, want none", key, got)
				case want != "" && got != want:
					t.Errorf("annotation %s = %q, want %q", key, got, want)
				}
			}

			up := env.up.last()
			if ids := identityHeaders(up.Header); !reflect.DeepEqual(ids, aliceUpstream) {
				t.Errorf("upstream identity headers\n  %v\nwant\n  %v", ids, aliceUpstream)
			}
			// Forwarded as the client sent them: kube-apiserver ignores them.
			for _, name := range []string{KubectlCommandHeader, KubectlSessionHeader} {
				var sent []string
				for k, v := range tt.header {
					if http.CanonicalHeaderKey(k) == name {
						sent = v
					}
				}
				if got := up.Header[name]; !reflect.DeepEqual(got, sent) {
					t.Errorf("upstream %s = %q, want %q as sent", name, got, sent)
				}
			}
		})
	}
}

func TestProxyRecordsNoKubectlAnnotationsWhenUnaudited(t *testing.T) {
	env := newTestEnvWith(t, Options{Unaudited: true})
	front := &auditedFront{annotations: map[string]map[string]string{}}
	srv := httptest.NewUnstartedServer(front.wrap(fakeChain(env.proxy)))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	env.front = srv
	h := bearer("alice-token")
	h["Kubectl-Command"] = []string{"kubectl get"}
	resp, body := env.do(t, env.h1Client, "GET", "/clusters/c1/api/v1/pods", h)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	ann := front.of(t, "/clusters/c1/api/v1/pods")
	for _, key := range []string{AnnotationKubectlCommand, AnnotationKubectlSession} {
		if v, ok := ann[key]; ok {
			t.Errorf("annotation %s = %q without an audit backend", key, v)
		}
	}
}

// FuzzCleanHeaderValue: whatever a client sends, what is recorded is
// printable ASCII within the bound, and a recorded value recorded again is
// unchanged.
func FuzzCleanHeaderValue(f *testing.F) {
	f.Add("kubectl get", "", 128)
	f.Add("kubectl\tget\x00\x1b[0m", "second", 16)
	f.Add("\xff\xfe\u202e", " ", 4)
	f.Add(strings.Repeat("x", 300), strings.Repeat("y", 300), 64)
	f.Fuzz(func(t *testing.T, a, b string, max int) {
		if max < 4 || max > 1024 {
			max = 64
		}
		values := []string{a}
		if b != "" {
			values = append(values, b)
		}
		got := cleanHeaderValue(values, max)
		if len(got) > max || !printableASCII(got) {
			t.Fatalf("cleanHeaderValue(%q, %d) = %q: over the bound or not printable ASCII", values, max, got)
		}
		if again := cleanHeaderValue([]string{got}, max); again != got {
			t.Fatalf("cleaning %q again gave %q", got, again)
		}
	})
}
