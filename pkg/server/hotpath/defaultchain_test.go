package hotpath

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
)

// chainFilter is one filter of genericapiserver.DefaultBuildHandlerChain, as
// it shows in the stack of a request it passes on: the k8s.io/apiserver
// package (under pkg/) and the function whose code calls the next handler.
type chainFilter struct {
	name string
	// kept: Chain has it too, at the same place relative to the others
	// kept; otherwise why says why Chain leaves it out.
	kept bool
	why  string
}

const (
	kept    = true
	dropped = false

	whyLatency = "latency bookkeeping (filterlatency) for kube-apiserver's SLO metrics and traces: costs CPU on every request, nothing reads it here"
)

// defaultChainFilters are the filters of DefaultBuildHandlerChain, outermost
// first, as k8s.io/apiserver v0.37 composes them with every optional filter
// configured (see defaultChainConfig), and whether Chain keeps each. When
// TestDefaultChainFiltersAreAccountedFor fails after a k8s.io/apiserver
// update, decide for each new or moved filter whether the hot paths need it,
// change Chain if so, and record the decision here.
var defaultChainFilters = []chainFilter{
	{"endpoints/filters.withAuditInit", kept, ""},
	{"server/filters.withPanicRecovery", kept, ""},
	{"endpoints/filters.WithMuxAndDiscoveryComplete", dropped, "marks requests served before every route is installed (a 404 becomes a 503); /tokenreview and /clusters/ are installed before the server listens"},
	{"endpoints/filters.withRequestReceivedTimestampWithClock", kept, ""},
	{"endpoints/filters.WithRequestInfo", kept, ""},
	{"endpoints/filters.WithLatencyTrackers", dropped, whyLatency},
	{"server/httplog.withLogging", kept, ""},
	{"server/filters.withRetryAfter", dropped, "only with ShutdownSendRetryAfter, which Portcullis has no flag for"},
	{"server/filters.WithHSTS", dropped, "no browser uses these paths (and Portcullis sets no HSTS directives)"},
	{"endpoints/filters.WithCacheControl", dropped, "no browser or API client caches these answers"},
	{"server/filters.(*goaway).ServeHTTP", dropped, "probabilistic GOAWAY: only with GoawayChance, which Portcullis has no flag for"},
	{"server/filters.WithWatchTerminationDuringShutdown", dropped, "only with ShutdownWatchTerminationGracePeriod, which Portcullis has no flag for"},
	{"server/filters.withWaitGroup", kept, ""},
	{"endpoints/filters.withRequestDeadline", kept, ""},
	{"server/filters.(*timeoutHandler).ServeHTTP", dropped, "a goroutine and a buffered writer per request: the request deadline bounds these handlers, which honour their context"},
	{"endpoints/filters.WithWarningRecorder", dropped, "the webhook and the proxy add no warnings of their own"},
	{"server/filters.WithCORS", dropped, "no browser uses these paths (and Portcullis allows no CORS origins)"},
	{"endpoints/filterlatency.trackStarted", dropped, whyLatency},
	{"endpoints/filters.withAuthentication", kept, ""},
	{"endpoints/filterlatency.trackCompleted", dropped, whyLatency},
	{"endpoints/filters.WithTracing", dropped, "Portcullis configures no tracer; the wrapper still costs CPU"},
	{"endpoints/filterlatency.trackStarted", dropped, whyLatency},
	{"endpoints/filters.WithAudit", kept, ""},
	{"endpoints/filterlatency.trackCompleted", dropped, whyLatency},
	{"endpoints/filterlatency.trackStarted", dropped, whyLatency},
	{"endpoints/filters/impersonation.(*constrainedImpersonationHandler).ServeHTTP", dropped, "on /clusters/ Impersonate-* headers are judged by the proxy against the upstream cluster (proxy.DeferImpersonation); on /tokenreview they are refused (webhookCallersOnly)"},
	{"endpoints/filterlatency.trackCompleted", dropped, whyLatency},
	{"server/filters.WithMaxInFlightLimit", kept, ""},
	{"endpoints/filterlatency.trackStarted", dropped, whyLatency},
	{"endpoints/filters.withAuthorization", kept, ""},
	{"endpoints/filterlatency.trackCompleted", dropped, whyLatency},
}

// TestDefaultChainFiltersAreAccountedFor fails when k8s.io/apiserver's
// DefaultBuildHandlerChain gains, drops or reorders a filter that
// defaultChainFilters does not list, and when Chain does not keep exactly
// the filters listed as kept, in the same order.
//
// A request is sent through each chain and the stack is read where it
// reaches the handler: every filter on the way is a frame there. The
// request is a watch for the default chain, so that the timeout filter does
// not move the rest of the chain to a goroutine of its own, and an ordinary
// request for Chain, on no workers, so that it passes the request deadline
// and wait group and stays on the test's goroutine.
func TestDefaultChainFiltersAreAccountedFor(t *testing.T) {
	c := defaultChainConfig()

	got := filtersOnTheWay(t, genericapiserver.DefaultBuildHandlerChain, c, "/api/v1/namespaces/default/pods?watch=true")
	var want []string
	for _, f := range defaultChainFilters {
		want = append(want, f.name)
	}
	if d := diffFilters(want, got); d != "" {
		t.Errorf("DefaultBuildHandlerChain's filters are not those defaultChainFilters lists (outermost first; - listed but gone, + new or moved: add it to defaultChainFilters, kept or dropped with the reason, and keep Chain in step):\n%s", d)
	}

	hot := func(h http.Handler, c *genericapiserver.Config) http.Handler { return chain(h, c, 0) }
	got = filtersOnTheWay(t, hot, c, "/clusters/c1/api/v1/namespaces/default/pods")
	want = nil
	for _, f := range defaultChainFilters {
		if f.kept {
			want = append(want, f.name)
		}
	}
	if d := diffFilters(want, got); d != "" {
		t.Errorf("Chain's generic filters are not those defaultChainFilters marks as kept (- kept but missing from Chain, + in Chain but not marked kept):\n%s", d)
	}

	for _, f := range defaultChainFilters {
		if !f.kept && f.why == "" {
			t.Errorf("%s is dropped from Chain without a reason", f.name)
		}
	}
}

// defaultChainConfig is a generic server configuration under which
// DefaultBuildHandlerChain composes every filter it can, except priority
// and fairness (Portcullis has max-in-flight instead): everyone
// authenticated and authorized, audit at RequestResponse level, and the
// optional filters Portcullis leaves off (CORS, HSTS, GOAWAY, shutdown
// retry-after and watch termination) turned on, so that changes to them
// show too.
func defaultChainConfig() *genericapiserver.Config {
	c := genericapiserver.NewConfig(testCodecs())
	c.FeatureGate = utilfeature.DefaultFeatureGate
	c.Authentication.Authenticator = authenticator.RequestFunc(func(*http.Request) (*authenticator.Response, bool, error) {
		return &authenticator.Response{User: &user.DefaultInfo{Name: "alice", Groups: []string{"devs"}}}, true, nil
	})
	c.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	c.RequestInfoResolver = &apirequest.RequestInfoFactory{
		APIPrefixes:          sets.NewString("api", "apis"),
		GrouplessAPIPrefixes: sets.NewString("api"),
	}
	c.LongRunningFunc = LongRunning(genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch", "proxy"), sets.NewString("attach", "exec", "proxy", "log", "portforward")))
	c.AuditBackend = &recordingBackend{}
	c.AuditPolicyRuleEvaluator = policy.NewFakePolicyRuleEvaluator(auditinternal.LevelRequestResponse, nil)
	c.CorsAllowedOriginList = []string{`//127\.0\.0\.1(:|$)`}
	c.HSTSDirectives = []string{"max-age=31536000"}
	c.SecureServing = &genericapiserver.SecureServingInfo{}
	c.GoawayChance = 0.001
	c.ShutdownWatchTerminationGracePeriod = time.Second
	c.ShutdownSendRetryAfter = true
	return c
}

// filtersOnTheWay builds a chain with build and c around a handler that
// records its stack, sends a GET of target through it, and returns the
// k8s.io/apiserver filters the request passed, outermost first.
func filtersOnTheWay(t *testing.T, build func(http.Handler, *genericapiserver.Config) http.Handler, c *genericapiserver.Config, target string) []string {
	t.Helper()
	var stack []runtime.Frame
	h := build(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pcs := make([]uintptr, 512)
		frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
		for {
			f, more := frames.Next()
			stack = append(stack, f)
			if !more {
				break
			}
		}
	}), c)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	if stack == nil {
		t.Fatalf("GET %s did not reach the handler: %d %s", target, w.Code, w.Body)
	}
	var filters []string
	for i := len(stack) - 1; i >= 0; i-- {
		name, ok := apiserverFilter(stack[i])
		if ok && (len(filters) == 0 || filters[len(filters)-1] != name) {
			filters = append(filters, name)
		}
	}
	return filters
}

// apiserverModule finds k8s.io/apiserver's source in a file path, in the
// module cache or vendored: …/k8s.io/apiserver@v0.37.2/pkg/… or
// …/vendor/k8s.io/apiserver/pkg/…
var apiserverModule = regexp.MustCompile(`(^|/)k8s\.io/apiserver(@[^/]+)?/pkg/`)

// closureSuffix matches what the compiler appends to the name of a function
// literal (.func1, .func2.1) and of a go statement's wrapper (.gowrap1).
var closureSuffix = regexp.MustCompile(`^(func|gowrap)?[0-9]+$`)

// apiserverFilter names a frame whose code is k8s.io/apiserver's: its
// package (under pkg/) and the function that holds the code, e.g.
// endpoints/filters.WithAudit for a function literal in WithAudit,
// wherever the compiler inlined it (then the frame's function is named
// after the function it was inlined into, but its file is still
// k8s.io/apiserver's).
func apiserverFilter(f runtime.Frame) (string, bool) {
	loc := apiserverModule.FindStringIndex(f.File)
	if loc == nil {
		return "", false
	}
	pkg := f.File[loc[1]:]
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		pkg = pkg[:i]
	} else {
		pkg = "" // a file directly in pkg/: not a filter
	}
	fn := f.Function
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		fn = fn[i+1:]
	}
	parts := strings.Split(fn, ".")[1:] // without the package name
	for len(parts) > 0 && closureSuffix.MatchString(parts[len(parts)-1]) {
		parts = parts[:len(parts)-1]
	}
	if len(parts) == 0 {
		return "", false
	}
	name := parts[len(parts)-1]
	if len(parts) > 1 && strings.HasPrefix(parts[len(parts)-2], "(") {
		name = parts[len(parts)-2] + "." + name // a method: (*T).ServeHTTP
	}
	return pkg + "." + name, true
}

// diffFilters returns the edits that turn want into got, one line per
// filter, or "" if they are the same.
func diffFilters(want, got []string) string {
	// Longest common subsequence, then walk it.
	lcs := make([][]int, len(want)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(got)+1)
	}
	for i := len(want) - 1; i >= 0; i-- {
		for j := len(got) - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	changed := false
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case i < len(want) && j < len(got) && want[i] == got[j]:
			fmt.Fprintf(&b, "    %s\n", want[i])
			i, j = i+1, j+1
		case j < len(got) && (i == len(want) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&b, "  + %s\n", got[j])
			j, changed = j+1, true
		default:
			fmt.Fprintf(&b, "  - %s\n", want[i])
			i, changed = i+1, true
		}
	}
	if !changed {
		return ""
	}
	return b.String()
}
