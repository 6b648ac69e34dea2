package portal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/clientlimit"
	"portcullis.dev/portcullis/pkg/loginstate"
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

// deviceFlow keeps device codes in the login-state store: under the
// device code's hash (KindDevice, a deviceRecord) and under the user code
// (KindDeviceUser, pointing at the device code's hash).
type deviceFlow struct {
	logins   loginstate.Store
	interval time.Duration
	// failures limits wrong user codes per client and for all clients of
	// this replica together (DefaultUserCodeLimits), which makes guessing
	// a live code (1 in 2.6e10 per try with 10000 codes pending) hopeless
	// without letting one client lock out everyone else's right codes.
	failures *clientlimit.Limiter
}

// deviceExpiredGrace keeps a device's record a little past its expiry, so
// that a late poll learns "expired_token" rather than "invalid_grant".
const deviceExpiredGrace = deviceTTL

func newDeviceFlow(logins loginstate.Store, interval time.Duration, failures *clientlimit.Limiter) *deviceFlow {
	return &deviceFlow{
		logins:   logins,
		interval: interval,
		failures: failures,
	}
}

// create makes a new device code and user code.
func (d *deviceFlow) create(ctx context.Context, cluster string, now time.Time) (deviceCode, userCode string, err error) {
	deviceCode = randomToken(32)
	key := sha256Hex(deviceCode)
	expires := now.Add(deviceTTL)
	for {
		userCode = newUserCode()
		err = d.logins.Create(ctx, loginstate.KindDeviceUser, userCode, []byte(key), expires)
		if !errors.Is(err, loginstate.ErrExists) {
			break
		}
	}
	if err != nil {
		return "", "", err
	}
	rec := deviceRecord{UserCode: userCode, Cluster: cluster, Expires: expires, Interval: d.interval}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", "", err
	}
	if err := d.logins.Create(ctx, loginstate.KindDevice, key, b, expires.Add(deviceExpiredGrace)); err != nil {
		return "", "", err
	}
	return deviceCode, formatUserCode(userCode), nil
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

// pendingByUserCode returns the key and cluster of the pending device with
// that user code, or false (counting a failure against client). A right code
// counts one of its maxUserCodeEntries.
func (d *deviceFlow) pendingByUserCode(ctx context.Context, client, userCode string, now time.Time) (key, cluster string, ok, limited bool, err error) {
	if d.failures.Limited(client, now) {
		return "", "", false, true, nil
	}
	refuse := func() (string, string, bool, bool, error) {
		d.failures.Fail(client, now) // counts the failure
		return "", "", false, false, nil
	}
	b, _, err := d.logins.Get(ctx, loginstate.KindDeviceUser, normalizeUserCode(userCode))
	if errors.Is(err, loginstate.ErrNotFound) {
		return refuse()
	}
	if err != nil {
		return "", "", false, false, err
	}
	key = string(b)
	pending := false
	rec, err := updateRecord(ctx, d.logins, loginstate.KindDevice, key, func(rec *deviceRecord) bool {
		pending = now.Before(rec.Expires) && rec.Status == devicePending && rec.Entries < maxUserCodeEntries
		if pending {
			rec.Entries++
		}
		return true
	})
	if errors.Is(err, loginstate.ErrNotFound) {
		return refuse()
	}
	if err != nil {
		return "", "", false, false, err
	}
	if !pending {
		return refuse()
	}
	return key, rec.Cluster, true, false, nil
}

// approve hands res to the device waiting under key; false if it no longer
// waits.
func (d *deviceFlow) approve(ctx context.Context, key string, res *loginResult, now time.Time) (bool, error) {
	approved := false
	_, err := updateRecord(ctx, d.logins, loginstate.KindDevice, key, func(rec *deviceRecord) bool {
		approved = now.Before(rec.Expires) && rec.Status == devicePending
		if approved {
			rec.Status, rec.Result = deviceApproved, recordOf(res)
		}
		return true
	})
	if errors.Is(err, loginstate.ErrNotFound) {
		return false, nil
	}
	return approved, err
}

// deny tells the device waiting under key that its login was refused.
func (d *deviceFlow) deny(ctx context.Context, key, reason string, now time.Time) error {
	_, err := updateRecord(ctx, d.logins, loginstate.KindDevice, key, func(rec *deviceRecord) bool {
		if rec.Status == devicePending && now.Before(rec.Expires) {
			rec.Status, rec.Reason = deviceDenied, reason
		}
		return true
	})
	if errors.Is(err, loginstate.ErrNotFound) {
		return nil
	}
	return err
}

// poll answers a device's poll: the record is removed once it is approved
// or denied (its result is handed out once).
func (d *deviceFlow) poll(ctx context.Context, deviceCode string, now time.Time) (rec deviceRecord, errCode string, err error) {
	key := sha256Hex(deviceCode)
	var code string
	last, err := updateRecord(ctx, d.logins, loginstate.KindDevice, key, func(cur *deviceRecord) bool {
		if !now.Before(cur.Expires) {
			code = "expired_token"
			return false
		}
		switch cur.Status {
		case deviceApproved:
			code = ""
			return false
		case deviceDenied:
			code = "access_denied"
			return false
		}
		// A little slack for network jitter: a client sleeping exactly
		// the interval between polls must not be told to slow down.
		code = "authorization_pending"
		if !cur.LastPoll.IsZero() && now.Sub(cur.LastPoll) < cur.Interval*9/10 {
			cur.Interval += slowDownStep
			code = "slow_down"
		}
		cur.LastPoll = now
		return true
	})
	if errors.Is(err, loginstate.ErrNotFound) {
		return deviceRecord{}, "invalid_grant", nil
	}
	if err != nil {
		return deviceRecord{}, "", err
	}
	if code != "authorization_pending" && code != "slow_down" {
		// Done with: the user code goes too.
		if _, err := d.logins.Take(ctx, loginstate.KindDeviceUser, last.UserCode); err != nil && !errors.Is(err, loginstate.ErrNotFound) {
			klog.ErrorS(err, "Removing a used device user code")
		}
	}
	return *last, code, nil
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
	taken, ok := p.allowStart(r, deviceCodeCost)
	if !ok {
		p.metrics.logins.WithLabelValues(flowDevice, outcomeThrottled).Inc()
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeThrottled, "portcullis.dev/flow", flowDevice)
		retryAfter(w, p.starts)
		writeOAuthError(w, http.StatusTooManyRequests, "slow_down", "too many device codes were asked for from this address; wait a minute and try again")
		return
	}
	deviceCode, userCode, err := p.devices.create(r.Context(), cluster, p.now())
	if err != nil {
		// Nothing was kept: the client may try again once the store is
		// back without having used up its limit.
		taken.Refund()
		f := stateFailure(err)
		writeOAuthError(w, f.status, f.oauth, f.message)
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
	e, code, err := p.devices.poll(r.Context(), deviceCode, p.now())
	if err != nil {
		f := stateFailure(err)
		writeOAuthError(w, f.status, f.oauth, f.message)
		return
	}
	switch code {
	case "":
	case "authorization_pending", "slow_down":
		writeOAuthError(w, http.StatusBadRequest, code, "")
		return
	case "access_denied":
		p.metrics.logins.WithLabelValues(flowDevice, outcomeDenied).Inc()
		writeOAuthError(w, http.StatusBadRequest, code, e.Reason)
		return
	case "expired_token":
		writeOAuthError(w, http.StatusBadRequest, code, "the device code has expired; start the login again")
		return
	default:
		writeOAuthError(w, http.StatusBadRequest, code, "the device code is unknown or was already used")
		return
	}
	if cluster == "" {
		cluster = e.Cluster
	}
	resp, f := p.createSession(r.Context(), r, e.Result.result(), cluster)
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
	key, cluster, ok, limited, err := p.devices.pendingByUserCode(r.Context(), clientKey(r), data.UserCode, p.now())
	if err != nil {
		p.renderFailure(w, r, stateFailure(err), "/device")
		return
	}
	if limited {
		retryAfter(w, p.devices.failures)
		p.renderError(w, r, http.StatusTooManyRequests, "Too many wrong codes",
			"Too many codes that match no device were entered from your address. Wait a minute and try again.", "/device")
		return
	}
	if !ok {
		data.Error = "This code matches no device waiting for a login. Check it (codes expire after 10 minutes), or start again on the device."
		auditOutcome(r.Context(), "portcullis.dev/outcome", outcomeInvalidRequest, "portcullis.dev/flow", flowDevice, "portcullis.dev/reason", "unknown user code")
		p.render(w, r, http.StatusBadRequest, "device", data)
		return
	}
	p.startAtIdP(w, r, prov, &attempt{idp: prov.Name(), flow: flowDevice, device: key, cluster: cluster})
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
