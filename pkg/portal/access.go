package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

// PathAccess is the approvers' page: the access requests the signed-in user
// may decide, each with Approve and Deny.
const PathAccess = "/portal/access"

func init() { pageNames = append(pageNames, "access") }

// AccessDecider is what the approvers' page needs of the access API
// (registry.AccessService): the same policy checks, audit and
// notifications as an AccessRequestDecision made with kubectl.
type AccessDecider interface {
	Decidable(ctx context.Context, caller user.Info) ([]store.AccessRequest, error)
	Decide(ctx context.Context, caller user.Info, name, decision, reason string) (store.AccessRequest, error)
}

// accessView is one row of the approvers' page.
type accessView struct {
	Name, Requester, Cluster, Groups, Duration, Reason, Created, Approvals string
}

type accessData struct {
	List []accessView
}

func csrfForAccess(tok string) string {
	return sha256Hex("portcullis.dev/portal/access\x00" + tok)[:32]
}

// serveAccess shows the requests waiting for the signed-in user's decision
// (GET) and records one decision (POST, with the page's CSRF token).
func (p *Portal) serveAccess(w http.ResponseWriter, r *http.Request) {
	if p.d.Access == nil {
		http.NotFound(w, r)
		return
	}
	if !allowMethods(w, r, http.MethodGet, http.MethodHead, http.MethodPost) {
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		_ = r.ParseForm()
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		p.render(w, r, http.StatusOK, "home", &pageData{Title: "Portcullis", Notice: "Log in to see the access requests waiting for you."})
		return
	}
	current, err := p.sessions.Lookup(r.Context(), c.Value)
	if err != nil {
		clearSessionCookie(w)
		if !errors.Is(err, session.ErrInvalidToken) && !errors.Is(err, session.ErrExpired) {
			klog.ErrorS(err, "Looking up a browser session")
			p.renderError(w, r, http.StatusServiceUnavailable, "Access requests cannot be shown right now", "Try again in a moment.", PathAccess)
			return
		}
		p.render(w, r, http.StatusOK, "home", &pageData{Title: "Portcullis", Notice: "Your session has ended. Log in again."})
		return
	}
	id := p.effectiveIdentity(sessionUser(current))
	caller := &user.DefaultInfo{Name: id.Username, UID: id.UID, Groups: append(append([]string{}, id.Groups...), user.AllAuthenticated)}
	if r.Method == http.MethodPost {
		if !constantTimeEqual(csrfForAccess(c.Value), r.PostForm.Get("csrf")) {
			p.renderError(w, r, http.StatusBadRequest, "The form has expired", "Go back to the access requests and try again.", PathAccess)
			return
		}
		decision := r.PostForm.Get("decision")
		if decision != "Approve" && decision != "Deny" {
			p.renderError(w, r, http.StatusBadRequest, "Unknown decision", "Use the Approve or Deny button.", PathAccess)
			return
		}
		name := r.PostForm.Get("request")
		req, err := p.d.Access.Decide(r.Context(), caller, name, decision, strings.TrimSpace(r.PostForm.Get("reason")))
		if err != nil {
			status, msg := http.StatusServiceUnavailable, "Nothing was changed. Try again in a moment."
			if se, ok := err.(apierrors.APIStatus); ok && se.Status().Code >= 400 && se.Status().Code < 500 {
				status, msg = int(se.Status().Code), se.Status().Message
			}
			p.renderError(w, r, status, "The decision was not recorded", msg, PathAccess)
			return
		}
		http.Redirect(w, r, PathAccess+"?decided="+url.QueryEscape(name)+"&state="+url.QueryEscape(req.State), http.StatusSeeOther)
		return
	}
	list, err := p.d.Access.Decidable(r.Context(), caller)
	if err != nil {
		p.renderError(w, r, http.StatusServiceUnavailable, "Access requests cannot be shown right now", "Try again in a moment.", PathAccess)
		return
	}
	data := &pageData{
		Title:  "Access requests",
		User:   userViewOf(id, &current.ExpiresAt),
		CSRF:   csrfForAccess(c.Value),
		Access: &accessData{},
	}
	if name := r.URL.Query().Get("decided"); name != "" {
		switch r.URL.Query().Get("state") {
		case store.AccessRequestApproved:
			data.Notice = "Request " + name + " is approved: the grant is active."
		case store.AccessRequestDenied:
			data.Notice = "Request " + name + " is denied."
		default:
			data.Notice = "Your approval of " + name + " is recorded; it needs more approvals."
		}
	}
	now := p.now()
	for _, a := range list {
		data.Access.List = append(data.Access.List, accessView{
			Name: a.ID, Requester: a.Username, Cluster: a.Cluster, Groups: strings.Join(a.Groups, ", "),
			Duration: a.Duration.String(), Reason: a.Reason, Created: now.Sub(a.CreatedAt).Round(time.Second).String() + " ago",
			Approvals: approvalsText(a),
		})
	}
	p.render(w, r, http.StatusOK, "access", data)
}

func approvalsText(a store.AccessRequest) string {
	if len(a.Approvals) == 0 {
		return "none yet"
	}
	var by []string
	for _, ap := range a.Approvals {
		by = append(by, ap.By)
	}
	return strings.Join(by, ", ")
}
