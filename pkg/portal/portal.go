package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/clientlimit"
	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/ldap"
	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/policy"
	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/token"
)

// Lifetimes and bounds of the logins in progress.
const (
	// attemptTTL bounds the time between starting a login and the IdP's
	// redirect back: long enough to type a password and a second factor.
	attemptTTL = 10 * time.Minute
	// codeTTL bounds the time the CLI has to redeem its one-time code.
	codeTTL = time.Minute
	// deviceTTL is how long a device code may wait for its user (RFC 8628 expires_in).
	deviceTTL = 10 * time.Minute
	// DefaultDeviceInterval is the device flow's polling interval.
	DefaultDeviceInterval = 5 * time.Second
	// maxBody bounds the request bodies of the API endpoints.
	maxBody = 64 << 10
)

// Deps are what the portal needs from the server.
type Deps struct {
	// Config returns the current configuration (it may be reloaded).
	Config func() *v1alpha1.PortcullisConfiguration
	IdPs   *identity.Providers
	// Directories are the identity providers that are LDAP directories:
	// people log in to them with a password (password.go).
	Directories *ldap.Directories
	// Groups returns the current group mapper.
	Groups func() *identity.GroupMapper
	Policy *policy.Holder
	Store  store.Store
	// Logins keeps the logins in progress; in this process's memory when
	// nil. With several replicas it must be shared (loginstate.Kubernetes).
	Logins loginstate.Store
	Minter *token.Minter
	// Sessions ends, creates and refreshes login sessions; when nil the
	// portal makes its own over Store. The server passes the manager the
	// Session API deletes with, so both end sessions the same way.
	Sessions *session.Manager
	// IssuerURL is Portcullis's external URL; the IdPs' redirect URI is
	// IssuerURL + "/callback".
	IssuerURL string
	// Clock tells the current time; clock.RealClock when nil.
	Clock clock.Clock
	// DeviceInterval is the device flow's minimum polling interval;
	// DefaultDeviceInterval when zero.
	DeviceInterval time.Duration
	// ServingCA, when set, returns the PEM CA of Portcullis's serving
	// certificate, written into the kubeconfigs of clusters reached through
	// the proxy.
	ServingCA func() []byte
	// StartLimits bound how fast clients may start logins and ask for
	// device codes; DefaultStartLimits when nil.
	StartLimits *clientlimit.Limits
	// UserCodeLimits bound wrong user codes on the device page;
	// DefaultUserCodeLimits when nil.
	UserCodeLimits *clientlimit.Limits
	// ClusterServer, when set, returns the URL and PEM CA of a cluster's own
	// API server (webhook mode), so that the portal can offer a complete
	// kubeconfig for it; ok is false when it is not known.
	ClusterServer func(cluster string) (server string, caPEM []byte, ok bool)
	// Access, when set, serves the approvers' page (PathAccess).
	Access AccessDecider
}

// Portal serves the login portal. Make it with New.
type Portal struct {
	d        Deps
	sessions *session.Manager
	pages    *pages
	metrics  *portalMetrics

	devices *deviceFlow
	// starts limits login starts and device codes per client (limits.go).
	starts *clientlimit.Limiter
	// passwordLimits limits password attempts per user and per client
	// (password.go).
	passwordLimits *passwordLimits
}

// New returns a portal. It fails when a required dependency is missing.
func New(d Deps) (*Portal, error) {
	switch {
	case d.Config == nil:
		return nil, errors.New("portal: Deps.Config is required")
	case d.Store == nil:
		return nil, errors.New("portal: Deps.Store is required")
	case d.Minter == nil:
		return nil, errors.New("portal: Deps.Minter is required")
	case d.Policy == nil:
		return nil, errors.New("portal: Deps.Policy is required")
	case d.IssuerURL == "":
		return nil, errors.New("portal: Deps.IssuerURL is required")
	}
	d.IssuerURL = strings.TrimSuffix(d.IssuerURL, "/")
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Groups == nil {
		d.Groups = func() *identity.GroupMapper { return nil }
	}
	if d.DeviceInterval <= 0 {
		d.DeviceInterval = DefaultDeviceInterval
	}
	pg, err := loadPages()
	if err != nil {
		return nil, err
	}
	p := &Portal{
		d:       d,
		pages:   pg,
		metrics: defaultMetrics(),

		passwordLimits: newPasswordLimits(),
	}
	if d.Logins == nil {
		d.Logins = loginstate.NewMemory(loginstate.DefaultMaxInMemory, d.Clock)
		p.d.Logins = d.Logins
	}
	startLimits, codeLimits := DefaultStartLimits, DefaultUserCodeLimits
	if d.StartLimits != nil {
		startLimits = *d.StartLimits
	}
	if d.UserCodeLimits != nil {
		codeLimits = *d.UserCodeLimits
	}
	p.starts = clientlimit.New(startLimits)
	p.devices = newDeviceFlow(d.Logins, d.DeviceInterval, clientlimit.New(codeLimits))
	p.sessions = d.Sessions
	if p.sessions == nil {
		p.sessions = session.NewManager(d.Store, session.SettingsFrom(d.Config), d.Clock)
	}
	return p, nil
}

// Mux is where the portal mounts its handlers: the generic server's
// NonGoRestfulMux (Handle: an exact path; HandlePrefix: a subtree).
type Mux interface {
	Handle(pattern string, handler http.Handler)
	HandlePrefix(prefix string, handler http.Handler)
}

// route is one of the portal's handlers: an exact path, or the subtree below
// a path ending in "/". Install mounts them and IsPublicPath publishes them,
// so what the authorizer makes public is what the portal serves.
type route struct {
	path    string
	handler func(p *Portal) http.Handler
}

var routes = []route{
	{"/login", func(p *Portal) http.Handler { return http.HandlerFunc(p.serveLoginChooser) }},
	{"/login/", func(p *Portal) http.Handler { return http.HandlerFunc(p.serveLoginStart) }},
	{"/callback", func(p *Portal) http.Handler { return http.HandlerFunc(p.serveCallback) }},
	{"/device", func(p *Portal) http.Handler { return http.HandlerFunc(p.serveDevicePage) }},
	{"/device/", func(p *Portal) http.Handler { return http.HandlerFunc(p.serveDeviceAPI) }},
	{"/portal", func(*Portal) http.Handler { return http.RedirectHandler("/portal/", http.StatusMovedPermanently) }},
	{"/portal/", func(p *Portal) http.Handler { return http.HandlerFunc(p.servePortal) }},
}

// Install mounts the portal's handlers on mux. Every one of them is public
// (IsPublicPath): they serve people who are not logged in yet.
func (p *Portal) Install(mux Mux) {
	for _, r := range routes {
		if strings.HasSuffix(r.path, "/") {
			mux.HandlePrefix(r.path, r.handler(p))
		} else {
			mux.Handle(r.path, r.handler(p))
		}
	}
}

// IsPublicPath reports whether path is one the portal serves (Install), which
// the server's authorizer lets anyone, anonymous clients included, reach.
func IsPublicPath(path string) bool {
	for _, r := range routes {
		if path == r.path || (strings.HasSuffix(r.path, "/") && strings.HasPrefix(path, r.path)) {
			return true
		}
	}
	return false
}

func (p *Portal) servePortal(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/portal/":
		p.serveHome(w, r)
	case "/portal/static/style.css":
		serveStatic(w, r)
	case "/portal/kubeconfig":
		p.serveKubeconfig(w, r)
	case "/portal/logout":
		p.serveBrowserLogout(w, r)
	case PathSessions:
		p.serveSessions(w, r)
	case PathAccess:
		p.serveAccess(w, r)
	case portalapi.PathCLIComplete:
		p.serveCLIComplete(w, r)
	case portalapi.PathClusters:
		p.serveClusters(w, r)
	case portalapi.PathToken:
		p.serveToken(w, r)
	case portalapi.PathPassword:
		p.servePasswordAPI(w, r)
	case portalapi.PathRefresh:
		p.serveRefresh(w, r)
	case portalapi.PathSession:
		p.serveSession(w, r)
	case portalapi.PathLogout:
		p.serveLogout(w, r)
	default:
		if strings.HasPrefix(r.URL.Path, "/portal/api/") {
			writeOAuthError(w, http.StatusNotFound, "invalid_request", "no such endpoint")
			return
		}
		p.renderError(w, r, http.StatusNotFound, "Page not found", "There is no page at this address.", "")
	}
}

// now is the portal's clock.
func (p *Portal) now() time.Time { return p.d.Clock.Now() }

// allowMethods answers 405 unless r's method is one of methods.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(fmt.Sprintf("portal: reading random bytes: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return fmt.Sprintf("%x", sum[:])
}

func sha256Bytes(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// clientAddress is the TCP peer of the request (audit events have the
// forwarded chain).
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// auditOutcome annotates the request's audit event. It never records a
// token, code or secret.
func auditOutcome(ctx context.Context, kv ...string) {
	audit.AddAuditAnnotations(ctx, kv...)
}

// auditIdentity annotates the request's audit event with who and what.
func auditIdentity(ctx context.Context, user, idp string, groups []string, outcome string, more ...string) {
	kv := []string{
		"portcullis.dev/user", user,
		"portcullis.dev/idp", idp,
		"portcullis.dev/groups", strings.Join(groups, ","),
		"portcullis.dev/outcome", outcome,
	}
	auditOutcome(ctx, append(kv, more...)...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		klog.ErrorS(err, "Encoding a portal response")
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, portalapi.OAuthError{Code: code, Description: description})
}

// decodeRequest reads a JSON or form-encoded body into the string fields
// named by dst's keys.
func decodeRequest(w http.ResponseWriter, r *http.Request, dst map[string]*string) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	switch strings.TrimSpace(strings.ToLower(ct)) {
	case "application/json":
		var m map[string]any
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&m); err != nil {
			return errors.New("the body is not a JSON object")
		}
		for k, p := range dst {
			switch v := m[k].(type) {
			case nil:
			case string:
				*p = v
			default:
				return fmt.Errorf("%s must be a string", k)
			}
		}
		return nil
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return errors.New("the form cannot be parsed")
		}
		for k, p := range dst {
			*p = r.PostForm.Get(k)
		}
		return nil
	}
	return errors.New("send application/json or application/x-www-form-urlencoded")
}
