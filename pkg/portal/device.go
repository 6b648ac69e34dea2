package portal

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"portcullis.dev/portcullis/pkg/portalapi"
)

// The device flow (RFC 8628), served by Portcullis itself so that it works
// whatever the upstream IdP supports: the CLI gets a device code and a user
// code, the person enters the user code at /device in any browser and logs
// in at the IdP there, and the CLI polls /device/token.

const (
	deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"
	// userCodeAlphabet has no vowels (no words) and no look-alikes
	// (RFC 8628 §6.1): 20^8 ≈ 2.6e10 codes.
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLength   = 8
	// slowDownStep is added to a device's interval each time it polls too
	// fast (RFC 8628 §3.5).
	slowDownStep = 5 * time.Second
	csrfCookie   = "__Host-portcullis-csrf"
)

type deviceStatus int

const (
	devicePending deviceStatus = iota
	deviceApproved
	deviceDenied
)

type deviceEntry struct {
	key      string // SHA-256 of the device code
	userCode string // normalised (no dash)
	cluster  string
	expires  time.Time
	interval time.Duration
	lastPoll time.Time
	status   deviceStatus
	reason   string
	result   *loginResult
}

type deviceFlow struct {
	mu       sync.Mutex
	byKey    map[string]*deviceEntry
	byUser   map[string]*deviceEntry
	interval time.Duration
	// failures limits wrong user codes, which makes guessing a live code
	// (1 in 2.6e10 per try with 10000 codes pending) hopeless: a burst of
	// 30, then one every 2 seconds, for all clients together.
	failures *rate.Limiter
}

func newDeviceFlow(interval time.Duration) *deviceFlow {
	return &deviceFlow{
		byKey:    map[string]*deviceEntry{},
		byUser:   map[string]*deviceEntry{},
		interval: interval,
		failures: rate.NewLimiter(rate.Every(2*time.Second), 30),
	}
}

func (d *deviceFlow) sweepLocked(now time.Time) {
	for k, e := range d.byKey {
		if !now.Before(e.expires) {
			delete(d.byKey, k)
			delete(d.byUser, e.userCode)
		}
	}
}

// create makes a new device code and user code.
func (d *deviceFlow) create(cluster string, now time.Time) (deviceCode, userCode string, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.byKey) >= maxPending/2 {
		d.sweepLocked(now)
	}
	if len(d.byKey) >= maxPending {
		return "", "", false
	}
	for {
		userCode = newUserCode()
		if _, taken := d.byUser[userCode]; !taken {
			break
		}
	}
	deviceCode = randomToken(32)
	e := &deviceEntry{key: sha256Hex(deviceCode), userCode: userCode, cluster: cluster, expires: now.Add(deviceTTL), interval: d.interval}
	d.byKey[e.key] = e
	d.byUser[userCode] = e
	return deviceCode, formatUserCode(userCode), true
}

func newUserCode() string {
	var b strings.Builder
	max := big.NewInt(int64(len(userCodeAlphabet)))
	for range userCodeLength {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(fmt.Sprintf("portal: reading random bytes: %v", err))
		}
		b.WriteByte(userCodeAlphabet[n.Int64()])
	}
	return b.String()
}

func formatUserCode(c string) string { return c[:4] + "-" + c[4:] }

// normalizeUserCode accepts what a person types: any case, with or without
// the dash or spaces.
func normalizeUserCode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// pendingByUserCode returns the key of the pending device with that user
// code, or false (counting a failure).
func (d *deviceFlow) pendingByUserCode(userCode string, now time.Time) (key string, ok, limited bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failures.TokensAt(now) < 1 {
		return "", false, true
	}
	e, found := d.byUser[normalizeUserCode(userCode)]
	if !found || !now.Before(e.expires) || e.status != devicePending {
		d.failures.AllowN(now, 1) // counts the failure
		return "", false, false
	}
	return e.key, true, false
}

func (d *deviceFlow) approve(key string, res *loginResult, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byKey[key]
	if !ok || !now.Before(e.expires) || e.status != devicePending {
		return false
	}
	e.status, e.result = deviceApproved, res
	return true
}

func (d *deviceFlow) deny(key, reason string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byKey[key]; ok && e.status == devicePending && now.Before(e.expires) {
		e.status, e.reason = deviceDenied, reason
	}
}

// poll answers a device's poll: the entry is removed once it is approved or
// denied (its result is handed out once).
func (d *deviceFlow) poll(deviceCode string, now time.Time) (e deviceEntry, errCode string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := sha256Hex(deviceCode)
	cur, ok := d.byKey[key]
	if !ok {
		return deviceEntry{}, "invalid_grant"
	}
	if !now.Before(cur.expires) {
		delete(d.byKey, key)
		delete(d.byUser, cur.userCode)
		return deviceEntry{}, "expired_token"
	}
	switch cur.status {
	case deviceApproved, deviceDenied:
		delete(d.byKey, key)
		delete(d.byUser, cur.userCode)
		if cur.status == deviceDenied {
			return *cur, "access_denied"
		}
		return *cur, ""
	}
	// A little slack for network jitter: a client sleeping exactly the
	// interval between polls must not be told to slow down.
	if !cur.lastPoll.IsZero() && now.Sub(cur.lastPoll) < cur.interval*9/10 {
		cur.interval += slowDownStep
		cur.lastPoll = now
		return *cur, "slow_down"
	}
	cur.lastPoll = now
	return *cur, "authorization_pending"
}

// serveDeviceAPI serves POST /device/code and POST /device/token.
func (p *Portal) serveDeviceAPI(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case portalapi.PathDeviceCode:
		p.serveDeviceCode(w, r)
	case portalapi.PathDeviceToken:
		p.serveDeviceToken(w, r)
	default:
		writeOAuthError(w, http.StatusNotFound, "invalid_request", "no such endpoint")
	}
}

func (p *Portal) serveDeviceCode(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	var cluster, clientID, scope string
	if err := decodeRequest(w, r, map[string]*string{"cluster": &cluster, "client_id": &clientID, "scope": &scope}); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if cluster != "" && !p.d.Policy.Load().HasCluster(cluster) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("there is no cluster %q", truncate(cluster, 64)))
		return
	}
	deviceCode, userCode, ok := p.devices.create(cluster, p.now())
	if !ok {
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "too many device logins in progress; try again in a minute")
		return
	}
	verify := p.d.IssuerURL + "/device"
	writeJSON(w, http.StatusOK, portalapi.DeviceCodeResponse{
		DeviceCode:              deviceCode,
		UserCode:                userCode,
		VerificationURI:         verify,
		VerificationURIComplete: verify + "?user_code=" + url.QueryEscape(userCode),
		ExpiresIn:               int64(deviceTTL / time.Second),
		Interval:                int64((p.devices.interval + time.Second - 1) / time.Second),
	})
}

func (p *Portal) serveDeviceToken(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	var grantType, deviceCode, clientID, cluster string
	if err := decodeRequest(w, r, map[string]*string{"grant_type": &grantType, "device_code": &deviceCode, "client_id": &clientID, "cluster": &cluster}); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if grantType != deviceGrantType {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be "+deviceGrantType)
		return
	}
	if deviceCode == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "device_code is required")
		return
	}
	e, code := p.devices.poll(deviceCode, p.now())
	switch code {
	case "":
	case "authorization_pending", "slow_down":
		writeOAuthError(w, http.StatusBadRequest, code, "")
		return
	case "access_denied":
		p.metrics.logins.WithLabelValues(flowDevice, outcomeDenied).Inc()
		writeOAuthError(w, http.StatusBadRequest, code, e.reason)
		return
	case "expired_token":
		writeOAuthError(w, http.StatusBadRequest, code, "the device code has expired; start the login again")
		return
	default:
		writeOAuthError(w, http.StatusBadRequest, code, "the device code is unknown or was already used")
		return
	}
	if cluster == "" {
		cluster = e.cluster
	}
	resp, f := p.createSession(r.Context(), r, e.result, cluster)
	if f != nil {
		auditOutcome(r.Context(), "portcullis.dev/outcome", f.outcome, "portcullis.dev/flow", flowDevice)
		writeOAuthError(w, f.status, f.oauth, f.message)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// serveDevicePage is where the person enters the user code (GET) and
// confirms it (POST), which starts the login at the IdP.
func (p *Portal) serveDevicePage(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
		return
	}
	idps := p.d.IdPs.List()
	data := &pageData{Title: "Log in a device"}
	for _, prov := range idps {
		data.IdPs = append(data.IdPs, idpLink{Name: prov.Name(), DisplayName: prov.DisplayName()})
	}
	if len(data.IdPs) > 0 {
		data.SelectedIdP = data.IdPs[0].Name
	}
	if r.Method != http.MethodPost {
		data.UserCode = strings.TrimSpace(r.URL.Query().Get("user_code"))
		if len(data.UserCode) > 32 {
			data.UserCode = ""
		}
		data.CSRF = p.csrfToken(w, r)
		p.render(w, r, http.StatusOK, "device", data)
		return
	}

	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, http.StatusBadRequest, "The form could not be read", "Go back and try again.", "/device")
		return
	}
	data.UserCode = strings.TrimSpace(r.PostForm.Get("user_code"))
	if len(data.UserCode) > 32 {
		data.UserCode = ""
	}
	if idp := r.PostForm.Get("idp"); idp != "" {
		data.SelectedIdP = idp
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" || !constantTimeEqual(c.Value, r.PostForm.Get("csrf")) {
		data.CSRF = p.csrfToken(w, r)
		data.Error = "This form has expired. Check the code and continue again."
		p.render(w, r, http.StatusBadRequest, "device", data)
		return
	}
	data.CSRF = c.Value
	prov, ok := p.provider(data.SelectedIdP)
	if !ok {
		data.Error = "Choose an identity provider."
		p.render(w, r, http.StatusBadRequest, "device", data)
		return
	}
	key, ok, limited := p.devices.pendingByUserCode(data.UserCode, p.now())
	if limited {
		p.renderError(w, r, http.StatusTooManyRequests, "Too many wrong codes",
			"Too many codes that match no device were entered. Wait a minute and try again.", "/device")
		return
	}
	if !ok {
		data.Error = "This code matches no device waiting for a login. Check it (codes expire after 10 minutes), or start again on the device."
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeInvalidRequest, "portcullis.dev/flow", flowDevice, "portcullis.dev/reason", "unknown user code")
		p.render(w, r, http.StatusBadRequest, "device", data)
		return
	}
	p.startAtIdP(w, r, prov, &attempt{idp: prov.Name(), flow: flowDevice, device: key, cluster: p.devices.clusterOf(key)})
}

func (d *deviceFlow) clusterOf(key string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byKey[key]; ok {
		return e.cluster
	}
	return ""
}

// csrfToken returns the browser's CSRF token, setting a new one if needed.
// The cookie is SameSite=Strict, so another site's form cannot carry it.
func (p *Portal) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	v := randomToken(32)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return v
}
