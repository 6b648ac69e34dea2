package portal

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/identity"
	"portcullis.dev/portcullis/pkg/kubeconfig"
	"portcullis.dev/portcullis/pkg/portalapi"
	"portcullis.dev/portcullis/pkg/session"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/style.css
var styleCSS []byte

// pageNames are the pages; each is templates/<name>.html, rendered inside
// templates/layout.html.
var pageNames = []string{"login", "error", "home", "cli_complete", "device", "device_done", "password"}

type pages struct{ t map[string]*template.Template }

func loadPages() (*pages, error) {
	layout, err := template.New("layout.html").Funcs(template.FuncMap{
		"join": strings.Join,
	}).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("portal: parsing the layout: %w", err)
	}
	pg := &pages{t: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal: parsing page %s: %w", name, err)
		}
		pg.t[name] = t
	}
	return pg, nil
}

// pageData is what the templates see.
type pageData struct {
	Title       string
	Message     string
	RetryURL    string
	Status      int
	IdPs        []idpLink
	SelectedIdP string
	User        *userView
	Clusters    []clusterView
	Server      string
	CSRF        string
	UserCode    string
	Error       string
	Notice      string
	// Sessions is the "your sessions" page's list (sessions.go).
	Sessions *sessionsData
	// Access is the approvers' page's list (access.go).
	Access *accessData
	// The password page (password.go): where it posts, the user name to
	// show again, and the login's parameters it carries.
	Action   string
	Username string
	Hidden   []hiddenField
}

type hiddenField struct{ Name, Value string }

type idpLink struct{ Name, DisplayName, URL string }

type userView struct {
	Username       string
	Email          string
	IdP            string
	Groups         []string
	SessionExpires string
}

type clusterView struct {
	Name          string
	Mode          string
	KubeconfigURL string
	Command       string
	Token         string
	TokenExpires  string
	Denied        string
}

func userViewOf(id *identity.Identity, expires *time.Time) *userView {
	u := &userView{Username: id.Username, Email: id.Email, IdP: id.IdentityProvider, Groups: id.Groups}
	if expires != nil {
		u.SessionExpires = expires.UTC().Format("2006-01-02 15:04 MST")
	}
	return u
}

// securityHeaders are set on every page: no framing, no referrer (URLs
// carry codes and states), no caching, and a CSP that allows nothing but the
// portal's own stylesheet (no scripts at all).
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, name string, data *pageData) {
	data.Status = status
	if data.Server == "" {
		data.Server = p.d.IssuerURL
	}
	var buf bytes.Buffer
	if err := p.pages.t[name].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		klog.ErrorS(err, "Rendering a portal page", "page", name)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

func (p *Portal) renderError(w http.ResponseWriter, r *http.Request, status int, title, message, retry string) {
	p.render(w, r, status, "error", &pageData{Title: title, Message: message, RetryURL: retry})
}

func (p *Portal) renderFailure(w http.ResponseWriter, r *http.Request, f *failure, retry string) {
	p.renderError(w, r, f.status, f.title, f.message, retry)
}

func serveStatic(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(styleCSS)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(styleCSS)
	}
}

// The browser's session: its refresh token in a host-only, HttpOnly,
// Secure, SameSite=Strict cookie. It is only used to show the user who they
// are, mint tokens to show, and log out.
const sessionCookie = "__Host-portcullis-session"

func setSessionCookie(w http.ResponseWriter, tok string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// csrfForSession derives the logout form's CSRF token from the session
// cookie: another site can neither read it nor make the browser send the
// cookie (SameSite=Strict).
func csrfForSession(tok string) string {
	return sha256Hex("portcullis.dev/portal/logout\x00" + tok)[:32]
}

// serveHome shows who is logged in in this browser, with the kubectl set-up
// and fresh tokens for every admitted cluster; or a link to log in.
func (p *Portal) serveHome(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	data := &pageData{Title: "Portcullis"}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		p.render(w, r, http.StatusOK, "home", data)
		return
	}
	s, err := p.sessions.Lookup(r.Context(), c.Value)
	if err != nil {
		clearSessionCookie(w)
		if !errors.Is(err, session.ErrInvalidToken) && !errors.Is(err, session.ErrExpired) {
			klog.ErrorS(err, "Looking up a browser session")
		}
		data.Notice = "Your session has ended. Log in again."
		p.render(w, r, http.StatusOK, "home", data)
		return
	}
	id := p.effectiveIdentity(sessionUser(s))
	data.Title = "Login complete"
	data.User = userViewOf(id, &s.ExpiresAt)
	data.CSRF = csrfForSession(c.Value)
	adm := p.admit(r.Context(), id)
	for _, ci := range p.clusterInfos() {
		cv := clusterView{
			Name:    ci.Name,
			Mode:    ci.Mode,
			Command: p.kubeconfigCommand(ci),
		}
		if !adm.allowed(ci.Name) {
			continue
		}
		if p.kubeconfigAvailable(ci) {
			cv.KubeconfigURL = "/portal/kubeconfig?cluster=" + ci.Name
		}
		if m, err := p.mint(r.Context(), s, ci.Name); err == nil {
			cv.Token, cv.TokenExpires = m.Token, m.ExpiresAt.Format("15:04:05 MST")
		} else {
			cv.Denied = err.Error()
		}
		data.Clusters = append(data.Clusters, cv)
	}
	p.render(w, r, http.StatusOK, "home", data)
}

func (p *Portal) kubeconfigCommand(ci portalapi.ClusterInfo) string {
	cmd := "portcullis kubeconfig --server " + p.d.IssuerURL + " --cluster " + ci.Name
	if ci.Mode == "webhook" {
		if ci.Server == "" {
			cmd += " \\\n    --api-server https://<the cluster's API server> --api-server-ca <its CA file>"
		}
	}
	return cmd
}

// apiServer is the URL and PEM CA of a webhook-mode cluster's own API
// server: from Deps.ClusterServer when set, else from the cluster's
// apiServer in the configuration (its CA file read now, so a replaced file
// is what the next kubeconfig holds).
func (p *Portal) apiServer(cluster string) (string, []byte, bool) {
	if p.d.ClusterServer != nil {
		return p.d.ClusterServer(cluster)
	}
	for _, c := range p.d.Config().Clusters {
		if c.Name != cluster || c.APIServer == nil || c.Upstream != nil {
			continue
		}
		var ca []byte
		if f := c.APIServer.CertificateAuthorityFile; f != "" {
			var err error
			if ca, err = os.ReadFile(f); err != nil {
				klog.ErrorS(err, "Reading the CA of a cluster's API server", "cluster", cluster, "path", f)
				return "", nil, false
			}
		}
		return c.APIServer.URL, ca, true
	}
	return "", nil, false
}

// kubeconfigAvailable: a cluster's kubeconfig can be downloaded when
// kubectl's server is known (clusterInfos gives it for proxy-mode
// clusters, and for webhook-mode clusters whose API server is known).
func (p *Portal) kubeconfigAvailable(ci portalapi.ClusterInfo) bool {
	return ci.Server != ""
}

// serveKubeconfig serves a kubeconfig for one cluster, using the CLI as exec
// plugin. It holds no credential, so it needs no session.
func (p *Portal) serveKubeconfig(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	name := r.URL.Query().Get("cluster")
	var ci *portalapi.ClusterInfo
	for _, c := range p.clusterInfos() {
		if c.Name == name {
			ci = &c
			break
		}
	}
	if ci == nil {
		p.renderError(w, r, http.StatusNotFound, "Unknown cluster", "Portcullis knows no cluster of that name.", "/portal/")
		return
	}
	e := &kubeconfig.Entry{Name: ci.Name, Cluster: ci.Name, Portcullis: p.d.IssuerURL}
	if p.d.ServingCA != nil {
		e.PortcullisCAData = p.d.ServingCA()
	}
	switch {
	case ci.Mode == "proxy":
		e.Server, e.CAData = ci.Server, e.PortcullisCAData
	case ci.Server != "":
		e.Server, e.CAData = ci.Server, ci.CertificateAuthorityData
	default:
		p.renderError(w, r, http.StatusNotFound, "No kubeconfig for this cluster here",
			"Portcullis does not know the address of this cluster's API server. Run: "+p.kubeconfigCommand(*ci), "/portal/")
		return
	}
	cfg := clientcmdapi.NewConfig()
	if err := e.Apply(cfg, true, true); err != nil {
		p.renderError(w, r, http.StatusInternalServerError, "The kubeconfig could not be made", err.Error(), "/portal/")
		return
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		p.renderError(w, r, http.StatusInternalServerError, "The kubeconfig could not be made", err.Error(), "/portal/")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "kubeconfig-"+ci.Name+".yaml"))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodHead {
		_, _ = w.Write(out)
	}
}

// serveBrowserLogout ends the browser's session (a form POST with the CSRF
// token derived from the session cookie).
func (p *Portal) serveBrowserLogout(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	_ = r.ParseForm()
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		http.Redirect(w, r, "/portal/", http.StatusSeeOther)
		return
	}
	if !constantTimeEqual(csrfForSession(c.Value), r.PostForm.Get("csrf")) {
		p.renderError(w, r, http.StatusBadRequest, "The logout form has expired", "Go back to the portal and log out again.", "/portal/")
		return
	}
	if _, err := p.logout(r, c.Value); err != nil {
		p.renderError(w, r, http.StatusInternalServerError, "You could not be logged out", "Try again in a moment.", "/portal/")
		return
	}
	clearSessionCookie(w)
	p.render(w, r, http.StatusOK, "home", &pageData{Title: "Logged out", Notice: "You are logged out. Your cluster tokens from this session no longer work."})
}
