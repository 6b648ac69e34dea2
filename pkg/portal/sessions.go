package portal

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

// PathSessions is the "your sessions" page: the signed-in user's sessions
// (browsers, kubectl on each computer, devices), each of which they may end,
// or all at once.
const PathSessions = "/portal/sessions"

// The page is registered here so that its code stays in this file.
func init() { pageNames = append(pageNames, "sessions") }

// Clients a session can be created for (store.Session.Client).
const (
	clientBrowser = "browser"
	clientCLI     = "cli"
	clientDevice  = "device"
)

// originOf is where a session created while serving r comes from: the
// endpoint that creates it tells which client asked.
func originOf(r *http.Request) session.Origin {
	o := session.Origin{Address: clientAddress(r)}
	switch r.URL.Path {
	case "/callback":
		o.Client = clientBrowser
	case portalapi.PathToken:
		o.Client = clientCLI
	case portalapi.PathDeviceToken:
		o.Client = clientDevice
	}
	return o
}

// sessionView is one row of the sessions page.
type sessionView struct {
	ID        string
	Client    string
	Address   string
	IdP       string
	Created   string
	LastUsed  string
	Ends      string
	IsCurrent bool
}

// sessionsData is what templates/sessions.html sees in pageData.Sessions.
type sessionsData struct {
	List []sessionView
}

func clientLabel(c string) string {
	switch c {
	case clientBrowser:
		return "Web browser"
	case clientCLI:
		return "kubectl (portcullis CLI)"
	case clientDevice:
		return "Device (code login)"
	}
	return "Unknown client"
}

// csrfForSessions derives the sessions page's CSRF token from the session
// cookie, apart from the logout form's.
func csrfForSessions(tok string) string {
	return sha256Hex("portcullis.dev/portal/sessions\x00" + tok)[:32]
}

// serveSessions shows the signed-in user's sessions (GET) and ends one of
// them or all of them (POST, with the CSRF token of the page).
func (p *Portal) serveSessions(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		_ = r.ParseForm()
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		p.render(w, r, http.StatusOK, "home", &pageData{Title: "Portcullis", Notice: "Log in to see your sessions."})
		return
	}
	current, err := p.sessions.Lookup(r.Context(), c.Value)
	if err != nil {
		clearSessionCookie(w)
		if !errors.Is(err, session.ErrInvalidToken) && !errors.Is(err, session.ErrExpired) {
			klog.ErrorS(err, "Looking up a browser session")
			p.renderError(w, r, http.StatusServiceUnavailable, "Your sessions cannot be shown right now", "Try again in a moment.", PathSessions)
			return
		}
		p.render(w, r, http.StatusOK, "home", &pageData{Title: "Portcullis", Notice: "Your session has ended. Log in again."})
		return
	}
	if r.Method == http.MethodPost {
		if !constantTimeEqual(csrfForSessions(c.Value), r.PostForm.Get("csrf")) {
			p.renderError(w, r, http.StatusBadRequest, "The form has expired", "Go back to your sessions and try again.", PathSessions)
			return
		}
		p.endSessions(w, r, current)
		return
	}
	mine, err := p.userSessions(r, current)
	if err != nil {
		p.renderError(w, r, http.StatusServiceUnavailable, "Your sessions cannot be shown right now", "Try again in a moment.", PathSessions)
		return
	}
	data := &pageData{
		Title:    "Your sessions",
		User:     userViewOf(p.effectiveIdentity(sessionUser(current)), &current.ExpiresAt),
		CSRF:     csrfForSessions(c.Value),
		Sessions: &sessionsData{},
	}
	switch r.URL.Query().Get("ended") {
	case "":
	case "1":
		data.Notice = "The session has ended: its tokens no longer work."
	default:
		if n, err := strconv.Atoi(r.URL.Query().Get("ended")); err == nil && n > 1 {
			data.Notice = strconv.Itoa(n) + " sessions have ended: their tokens no longer work."
		}
	}
	for _, s := range mine {
		data.Sessions.List = append(data.Sessions.List, sessionView{
			ID:        s.ID,
			Client:    clientLabel(s.Client),
			Address:   s.ClientAddress,
			IdP:       s.IdentityProvider,
			Created:   formatTime(s.CreatedAt),
			LastUsed:  formatTime(s.LastUsedAt),
			Ends:      formatTime(sessionEnd(s)),
			IsCurrent: s.ID == current.ID,
		})
	}
	p.render(w, r, http.StatusOK, "sessions", data)
}

// userSessions are the live sessions of current's user, the current one
// first, then the most recently used.
func (p *Portal) userSessions(r *http.Request, current store.Session) ([]store.Session, error) {
	all, err := p.d.Store.ListUserSessions(r.Context(), current.Username)
	if err != nil {
		klog.ErrorS(err, "Listing a user's sessions", "user", current.Username)
		return nil, err
	}
	now := p.now()
	live := all[:0]
	for _, s := range all {
		if !s.Expired(now) {
			live = append(live, s)
		}
	}
	slices.SortStableFunc(live, func(a, b store.Session) int {
		switch {
		case a.ID == current.ID:
			return -1
		case b.ID == current.ID:
			return 1
		}
		return b.LastUsedAt.Compare(a.LastUsedAt)
	})
	return live, nil
}

// endSessions ends the session the form names, or all of the user's
// sessions ("sign out everywhere"), through the session manager's End:
// their tokens stop verifying at once.
func (p *Portal) endSessions(w http.ResponseWriter, r *http.Request, current store.Session) {
	mine, err := p.userSessions(r, current)
	if err != nil {
		p.renderError(w, r, http.StatusServiceUnavailable, "Your sessions could not be ended", "Nothing was changed. Try again in a moment.", PathSessions)
		return
	}
	all := r.PostForm.Get("all") != ""
	var targets []store.Session
	if all {
		targets = mine
	} else {
		id := r.PostForm.Get("session")
		// Only a session of this user: never end a session by ID alone.
		if i := slices.IndexFunc(mine, func(s store.Session) bool { return s.ID == id }); i >= 0 {
			targets = mine[i : i+1]
		}
		if len(targets) == 0 {
			p.renderError(w, r, http.StatusNotFound, "No such session", "That session has already ended, or it is not yours.", PathSessions)
			return
		}
	}
	id := p.effectiveIdentity(sessionUser(current))
	reason, action := "ended from the portal's sessions page", "end-session"
	if all {
		reason, action = "signed out everywhere from the portal", "sign-out-everywhere"
	}
	ended, endedCurrent := 0, false
	for _, s := range targets {
		if err := p.sessions.End(r.Context(), s, reason, current.Username); err != nil && !errors.Is(err, session.ErrNotDeleted) {
			klog.ErrorS(err, "Ending a session from the sessions page failed", "session", s.ID, "user", current.Username)
			p.metrics.logouts.WithLabelValues(outcomeError).Inc()
			continue
		}
		ended++
		endedCurrent = endedCurrent || s.ID == current.ID
		p.metrics.logouts.WithLabelValues(outcomeSuccess).Inc()
		auditIdentity(r.Context(), id.Username, id.IdentityProvider, id.Groups, outcomeSuccess, "portcullis.dev/session", s.ID, "portcullis.dev/action", action)
	}
	if ended < len(targets) {
		p.renderError(w, r, http.StatusServiceUnavailable, "Not every session could be ended",
			strconv.Itoa(ended)+" of "+strconv.Itoa(len(targets))+" sessions were ended. Try again in a moment for the others.", PathSessions)
		return
	}
	if endedCurrent {
		clearSessionCookie(w)
		notice := "You are signed out of this browser. Its cluster tokens no longer work."
		if all {
			notice = "You are signed out everywhere: " + strconv.Itoa(ended) + " sessions ended, and none of their tokens work any more."
		}
		p.render(w, r, http.StatusOK, "home", &pageData{Title: "Signed out", Notice: notice})
		return
	}
	http.Redirect(w, r, PathSessions+"?ended="+strconv.Itoa(ended), http.StatusSeeOther)
}

// sessionEnd is when s ends at the latest if unused: by age or idleness.
func sessionEnd(s store.Session) time.Time {
	end := s.ExpiresAt
	if s.IdleTimeout > 0 {
		if idle := s.LastUsedAt.Add(s.IdleTimeout); idle.Before(end) {
			end = idle
		}
	}
	return end
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2006-01-02 15:04 MST")
}
