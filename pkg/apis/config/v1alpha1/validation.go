package v1alpha1

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/apis/apiserver"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	apiservervalidation "k8s.io/apiserver/pkg/apis/apiserver/validation"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
	"k8s.io/client-go/util/cert"

	"portcullis.dev/portcullis/pkg/proxy/upstreamconfig"
)

// nameRE is what a cluster or IdP name may look like: it appears in URL paths.
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

const nameHelp = "use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit"

// Validate checks a defaulted configuration and returns every problem found,
// each with its field path and what to do about it.
func Validate(c *PortcullisConfiguration) field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != SchemeGroupVersion.String() {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), c.APIVersion, "must be "+SchemeGroupVersion.String()))
	}
	if c.Kind != "PortcullisConfiguration" {
		errs = append(errs, field.Invalid(field.NewPath("kind"), c.Kind, "must be PortcullisConfiguration"))
	}
	errs = append(errs, validateHTTPSURL(c.IssuerURL, field.NewPath("issuerURL"), true)...)
	errs = append(errs, validateStore(&c.Store, field.NewPath("store"))...)
	errs = append(errs, validateTokens(&c.Tokens, c.Store.Type, field.NewPath("tokens"))...)
	errs = append(errs, validateIdentityProviders(c, field.NewPath("identityProviders"))...)
	errs = append(errs, validateGroupMappings(c, field.NewPath("groupMappings"))...)
	errs = append(errs, validateClusters(c, field.NewPath("clusters"))...)
	errs = append(errs, validateWebhook(&c.Webhook, field.NewPath("webhook"))...)
	errs = append(errs, validatePortal(&c.Portal, field.NewPath("portal"))...)
	if n := c.Notifications; n != nil && n.Webhook != nil {
		wp := field.NewPath("notifications", "webhook")
		errs = append(errs, validateHTTPSURL(n.Webhook.URL, wp.Child("url"), true)...)
		errs = append(errs, validateCAFile(n.Webhook.CertificateAuthorityFile, wp.Child("certificateAuthorityFile"))...)
		if a := n.Webhook.MaxAttempts; a < 0 || a > 10 {
			errs = append(errs, field.Invalid(wp.Child("maxAttempts"), a, "must be between 1 and 10 (default 5)"))
		}
	}
	return errs
}

func validateHTTPSURL(raw string, fld *field.Path, required bool) field.ErrorList {
	if raw == "" {
		if required {
			return field.ErrorList{field.Required(fld, "set an https:// URL")}
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, which may hold a password.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return field.ErrorList{field.Invalid(fld, redactURL(raw), "not a URL: "+err.Error())}
	}
	switch {
	case u.Scheme != "https":
		return field.ErrorList{field.Invalid(fld, u.Redacted(), "must be an https:// URL")}
	case u.Hostname() == "":
		return field.ErrorList{field.Invalid(fld, u.Redacted(), "must name a host, e.g. https://portcullis.example.com")}
	case u.User != nil:
		return field.ErrorList{field.Invalid(fld, u.Redacted(), "must not carry user info (user@ or user:password@): remove it")}
	// ForceQuery and a bare '#' leave RawQuery and Fragment empty, yet the
	// string (which is compared and extended as is) still carries them.
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return field.ErrorList{field.Invalid(fld, u.Redacted(), "must not carry a query ('?') or a fragment ('#'): remove it")}
	case strings.HasSuffix(u.Path, "/"):
		return field.ErrorList{field.Invalid(fld, u.Redacted(), "remove the trailing '/'")}
	}
	return nil
}

// redactURL hides the password of a URL that url.Parse refused; an error
// message must not leak it.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		if user, _, hasPassword := strings.Cut(authority[:i], ":"); hasPassword {
			authority = user + ":xxxxx" + authority[i:]
		}
	}
	out := scheme + "://" + authority
	if strings.Contains(rest, "/") {
		out += "/" + path
	}
	return out
}

// sameIssuer reports whether two issuer URLs name the same issuer once the
// differences that do not matter to a client are ignored: the case of the
// scheme and host, an explicit :443 and a trailing '/'.
func sameIssuer(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	norm := func(u *url.URL) string {
		host := strings.ToLower(u.Hostname())
		if port := u.Port(); port != "" && port != "443" {
			host = net.JoinHostPort(host, port)
		}
		return strings.ToLower(u.Scheme) + "://" + host + strings.TrimRight(u.EscapedPath(), "/")
	}
	return norm(ua) == norm(ub)
}

// MaxReferencedFileSize bounds the files the configuration points at
// (CA bundles); anything larger is not what the field expects.
const MaxReferencedFileSize = 1 << 20

// validateReadableFile checks that a file the server needs exists, is a
// regular file and can be read, so a typo fails at start and not at the
// first request. It does not read special files (a FIFO would block).
func validateReadableFile(path string, fld *field.Path) field.ErrorList {
	_, errs := readFile(path, fld, false)
	return errs
}

// readFile is validateReadableFile that also returns the content, when
// read is set.
func readFile(path string, fld *field.Path, read bool) ([]byte, field.ErrorList) {
	if path == "" {
		return nil, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(fld, path, fmt.Sprintf("cannot be read (%v): give the path of an existing, readable file", unwrapPathError(err)))}
	}
	if st.IsDir() {
		return nil, field.ErrorList{field.Invalid(fld, path, "is a directory: give the path of a file")}
	}
	if !st.Mode().IsRegular() {
		return nil, field.ErrorList{field.Invalid(fld, path, "is not a regular file (it is a device, pipe or socket): give the path of a file")}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(fld, path, fmt.Sprintf("cannot be read (%v): give the path of an existing, readable file", unwrapPathError(err)))}
	}
	defer f.Close()
	if !read {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxReferencedFileSize+1))
	switch {
	case err != nil:
		return nil, field.ErrorList{field.Invalid(fld, path, fmt.Sprintf("cannot be read (%v): give the path of an existing, readable file", unwrapPathError(err)))}
	case len(data) > MaxReferencedFileSize:
		return nil, field.ErrorList{field.Invalid(fld, path, fmt.Sprintf("is larger than %d bytes: give the path of a PEM file", MaxReferencedFileSize))}
	}
	return data, nil
}

// validateCAFile checks that a CA file can be read and holds at least one
// PEM certificate (and not, say, the private key next to it).
func validateCAFile(path string, fld *field.Path) field.ErrorList {
	data, errs := readFile(path, fld, true)
	if path == "" || len(errs) > 0 {
		return errs
	}
	if _, err := cert.NewPoolFromBytes(data); err != nil {
		return field.ErrorList{field.Invalid(fld, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA certificate file, not a key or a DER file")}
	}
	return nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func validateName(name string, fld *field.Path, seen sets.Set[string]) field.ErrorList {
	switch {
	case name == "":
		return field.ErrorList{field.Required(fld, nameHelp)}
	case !nameRE.MatchString(name):
		return field.ErrorList{field.Invalid(fld, name, nameHelp)}
	case seen.Has(name):
		e := field.Duplicate(fld, name)
		e.Detail = "another entry already has this name: names must be unique"
		return field.ErrorList{e}
	}
	seen.Insert(name)
	return nil
}

// validateEntries checks that no entry of a list of names is empty.
func validateEntries(list []string, fld *field.Path, what string) field.ErrorList {
	var errs field.ErrorList
	for i, v := range list {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, field.Required(fld.Index(i), what+" cannot be empty: remove the entry or fill it in"))
		}
	}
	return errs
}

func validateEmailDomains(list []string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, d := range list {
		if d == "" || strings.ContainsAny(d, "@ /*") {
			errs = append(errs, field.Invalid(fld.Index(i), d, "give a bare domain, e.g. example.com (no '@', '*' or '/')"))
		}
	}
	return errs
}

func validateEmails(list []string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range list {
		if local, domain, ok := strings.Cut(e, "@"); !ok || local == "" || domain == "" || strings.ContainsAny(e, " /") {
			errs = append(errs, field.Invalid(fld.Index(i), e, "give an email address, e.g. jane@example.com"))
		}
	}
	return errs
}

func validateStore(s *StoreConfig, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case "bolt":
		if s.Path == "" {
			errs = append(errs, field.Required(fld.Child("path"), "set the file the embedded store keeps its state in"))
		}
		if s.Kubernetes != nil {
			errs = append(errs, field.Forbidden(fld.Child("kubernetes"), "is only for store.type kubernetes: remove it, or set store.type: kubernetes"))
		}
	case "kubernetes":
		if s.Path != "" {
			errs = append(errs, field.Forbidden(fld.Child("path"), "is only for store.type bolt (the kubernetes store keeps its state in Secrets and ConfigMaps of store.kubernetes.namespace): remove it"))
		}
		k := s.Kubernetes
		if k == nil {
			k = &KubernetesStoreConfig{}
		}
		kf := fld.Child("kubernetes")
		switch {
		case k.Namespace == "" && k.Kubeconfig != "":
			errs = append(errs, field.Required(kf.Child("namespace"), "set the namespace to keep the state in; outside the cluster (store.kubernetes.kubeconfig is set) it cannot default to the pod's namespace"))
		case k.Namespace != "":
			if msgs := validation.IsDNS1123Label(k.Namespace); len(msgs) > 0 {
				errs = append(errs, field.Invalid(kf.Child("namespace"), k.Namespace, "must be a namespace name: "+strings.Join(msgs, "; ")))
			}
		}
		if k.Kubeconfig != "" {
			errs = append(errs, validateReadableFile(k.Kubeconfig, kf.Child("kubeconfig"))...)
		} else if k.Context != "" {
			errs = append(errs, field.Invalid(kf.Child("context"), k.Context, "only means something with store.kubernetes.kubeconfig: set that too, or remove the context to use the pod's service account"))
		}
	default:
		errs = append(errs, field.NotSupported(fld.Child("type"), s.Type, []string{"bolt", "kubernetes"}))
	}
	return errs
}

// Shortest key rotation periods: a rotated key is published to every
// replica before it signs, which takes three key reloads (10 s each with
// bolt, 2 s from the kubernetes store's cache).
const (
	minKeyRotationPeriod           = time.Minute
	minKeyRotationPeriodKubernetes = 30 * time.Second
)

func validateTokens(t *TokensConfig, storeType string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if t.Lifetime.Duration < 0 {
		errs = append(errs, field.Invalid(fld.Child("lifetime"), t.Lifetime.String(), "must be positive, e.g. 15m"))
	}
	if t.MaxLifetime.Duration < 0 {
		errs = append(errs, field.Invalid(fld.Child("maxLifetime"), t.MaxLifetime.String(), "must be positive, e.g. 24h"))
	} else if t.Lifetime.Duration > t.MaxLifetime.Duration {
		errs = append(errs, field.Invalid(fld.Child("lifetime"), t.Lifetime.String(), fmt.Sprintf("must not exceed tokens.maxLifetime (%s)", t.MaxLifetime.Duration)))
	}
	minRotation := minKeyRotationPeriod
	if storeType == "kubernetes" {
		minRotation = minKeyRotationPeriodKubernetes
	}
	if d := t.KeyRotationPeriod.Duration; d < 0 {
		errs = append(errs, field.Invalid(fld.Child("keyRotationPeriod"), t.KeyRotationPeriod.String(), "must be positive, e.g. 24h"))
	} else if d > 0 && d < minRotation {
		errs = append(errs, field.Invalid(fld.Child("keyRotationPeriod"), t.KeyRotationPeriod.String(), fmt.Sprintf("must be at least %s with store.type %s (a new key is published to every replica before it signs), e.g. 24h", minRotation, storeTypeOrDefault(storeType))))
	}
	if t.CacheSize < 0 || t.CacheSize > 10_000_000 {
		errs = append(errs, field.Invalid(fld.Child("cacheSize"), t.CacheSize, "must be between 0 and 10000000"))
	}
	return errs
}

// JWTAuthenticator converts an IdP's kube-apiserver-shaped fields to the
// apiserver's internal type, which its validation and OIDC authenticator use.
func (idp *IdentityProvider) JWTAuthenticator() (apiserver.JWTAuthenticator, error) {
	in := apiserverv1.JWTAuthenticator{
		Issuer:               idp.Issuer,
		ClaimValidationRules: idp.ClaimValidationRules,
		ClaimMappings:        idp.ClaimMappings,
		UserValidationRules:  idp.UserValidationRules,
	}
	var out apiserver.JWTAuthenticator
	err := apiserverv1.Convert_v1_JWTAuthenticator_To_apiserver_JWTAuthenticator(&in, &out, nil)
	return out, err
}

func validateIdentityProviders(c *PortcullisConfiguration, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	authn := &apiserver.AuthenticationConfiguration{}
	// jwtIndex[k] is the index in identityProviders of authn.JWT[k]: an IdP
	// that cannot be converted is left out, and paths must not shift.
	var jwtIndex []int
	for i := range c.IdentityProviders {
		idp := &c.IdentityProviders[i]
		p := fld.Index(i)
		errs = append(errs, validateName(idp.Name, p.Child("name"), names)...)
		if idp.LDAP != nil {
			errs = append(errs, validateLDAPIdentityProvider(idp, p)...)
			continue
		}
		errs = append(errs, validateCAFile(idp.CertificateAuthorityFile, p.Child("certificateAuthorityFile"))...)
		errs = append(errs, validateReadableFile(idp.ClientSecretFile, p.Child("clientSecretFile"))...)
		if idp.CertificateAuthorityFile != "" && idp.Issuer.CertificateAuthority != "" {
			errs = append(errs, field.Invalid(p.Child("certificateAuthorityFile"), idp.CertificateAuthorityFile, "set either this or issuer.certificateAuthority, not both"))
		}
		switch {
		case idp.ClientSecretFile != "" && idp.ClientID == "":
			errs = append(errs, field.Required(p.Child("clientID"), "a client secret needs the client ID it belongs to"))
		case idp.ClientID == "" && !idp.AcceptIDTokens:
			errs = append(errs, field.Required(p.Child("clientID"), "set clientID (to log in through this IdP) or acceptIDTokens: true (to accept its ID tokens as bearer tokens)"))
		}
		if idp.ClientID != "" && !sets.New(idp.Scopes...).Has("openid") {
			errs = append(errs, field.Invalid(p.Child("scopes"), idp.Scopes, `must include "openid"`))
		}
		if u, err := url.Parse(idp.Issuer.URL); err == nil && u.Scheme == "https" && u.Hostname() == "" {
			// kube-apiserver's validation lets "https:" or "https:///x" through.
			errs = append(errs, field.Invalid(p.Child("issuer", "url"), idp.Issuer.URL, "must name a host, e.g. https://dex.example.com"))
		}
		// Portcullis's own issuer must not double as an upstream IdP: tokens
		// it mints would otherwise be taken for IdP tokens. Compared loosely,
		// so a trailing '/' or upper-case host does not slip through.
		if idp.Issuer.URL != "" && c.IssuerURL != "" && sameIssuer(idp.Issuer.URL, c.IssuerURL) {
			errs = append(errs, field.Invalid(p.Child("issuer", "url"), idp.Issuer.URL, "is Portcullis's own issuerURL: an identity provider must be another issuer (Portcullis's tokens are verified without any IdP)"))
		}
		if idp.Issuer.EgressSelectorType != "" {
			errs = append(errs, field.Forbidden(p.Child("issuer", "egressSelectorType"), "is a kube-apiserver setting that Portcullis has no equivalent of: remove it"))
		}
		jwt, err := idp.JWTAuthenticator()
		if err != nil {
			errs = append(errs, field.Invalid(p, idp.Name, "cannot convert to an apiserver JWT authenticator: "+err.Error()))
			continue
		}
		authn.JWT = append(authn.JWT, jwt)
		jwtIndex = append(jwtIndex, i)
	}
	if len(authn.JWT) == 0 {
		return errs
	}
	// The apiserver's own validation: issuer, audiences, CEL expressions of
	// the claim mappings and rules (compiled here, so a typo fails at start).
	// Its paths are jwt[k]...; rewrite them to identityProviders[i]....
	rewrite := func(s string) string {
		return jwtPathRE.ReplaceAllStringFunc(s, func(m string) string {
			k, err := strconv.Atoi(m[len("jwt[") : len(m)-1])
			if err != nil || k >= len(jwtIndex) {
				return m
			}
			return fld.Index(jwtIndex[k]).String()
		})
	}
	for _, e := range apiservervalidation.ValidateAuthenticationConfiguration(authenticationcel.NewDefaultCompiler(), authn, nil) {
		if e.Field == "jwt" {
			e.Field = fld.String()
		}
		e.Field = rewrite(e.Field)
		e.Detail = rewrite(e.Detail)
		errs = append(errs, e)
	}
	return errs
}

var jwtPathRE = regexp.MustCompile(`\bjwt\[\d+\]`)

func validateGroupMappings(c *PortcullisConfiguration, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	idps := sets.New[string]()
	for _, idp := range c.IdentityProviders {
		idps.Insert(idp.Name)
	}
	for i, m := range c.GroupMappings {
		p := fld.Index(i)
		mp := p.Child("match")
		if len(m.Match.Users)+len(m.Match.Emails)+len(m.Match.EmailDomains)+len(m.Match.Groups) == 0 {
			errs = append(errs, field.Required(mp, "name at least one of users, emails, emailDomains or groups"))
		}
		errs = append(errs, validateEntries(m.Match.Users, mp.Child("users"), "user names")...)
		errs = append(errs, validateEmails(m.Match.Emails, mp.Child("emails"))...)
		errs = append(errs, validateEmailDomains(m.Match.EmailDomains, mp.Child("emailDomains"))...)
		errs = append(errs, validateEntries(m.Match.Groups, mp.Child("groups"), "group names")...)
		for j, g := range m.Match.Groups {
			if reservedGroupPrefix(g) != "" {
				errs = append(errs, field.Invalid(mp.Child("groups").Index(j), g, fmt.Sprintf(
					"Portcullis drops groups starting with %q that come from an identity provider, so this could never match: give the IdP's groups a prefix (claimMappings.groups.prefix or userInfo.groupsPrefix) and match the prefixed name", reservedGroupPrefix(g))))
			}
		}
		for j, n := range m.Match.IdentityProviders {
			if !idps.Has(n) {
				e := field.NotFound(mp.Child("identityProviders").Index(j), n)
				e.Detail = knownNames("no entry of identityProviders has this name", idps)
				errs = append(errs, e)
			}
		}
		if len(m.Groups) == 0 {
			errs = append(errs, field.Required(p.Child("groups"), "name the groups to add"))
		}
		for j, g := range m.Groups {
			errs = append(errs, validateGroupName(g, p.Child("groups").Index(j))...)
		}
	}
	return errs
}

// knownNames completes a "not found" message with the names there are.
func knownNames(msg string, names sets.Set[string]) string {
	if names.Len() == 0 {
		return msg + " (there are none)"
	}
	return msg + ": use one of " + strings.Join(sets.List(names), ", ")
}

func validateGroupName(g string, fld *field.Path) field.ErrorList {
	switch {
	case strings.TrimSpace(g) == "":
		return field.ErrorList{field.Required(fld, "group names cannot be empty")}
	case strings.HasPrefix(g, "system:"):
		return field.ErrorList{field.Invalid(fld, g, `groups starting with "system:" are reserved for Kubernetes itself`)}
	case strings.HasPrefix(g, "portcullis.dev:"):
		return field.ErrorList{field.Invalid(fld, g, `groups starting with "portcullis.dev:" are reserved for Portcullis itself`)}
	}
	return nil
}

// reservedGroupPrefix returns the reserved prefix g starts with, if any: the
// same list as pkg/identity.ReservedGroupPrefixes (which this package cannot
// import), whose groups are dropped when an identity provider asserts them.
func reservedGroupPrefix(g string) string {
	for _, p := range []string{"system:", "portcullis.dev:"} {
		if strings.HasPrefix(g, p) {
			return p
		}
	}
	return ""
}

func validateClusters(c *PortcullisConfiguration, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		p := fld.Index(i)
		errs = append(errs, validateName(cl.Name, p.Child("name"), names)...)
		if cl.TokenLifetime != nil {
			switch d := cl.TokenLifetime.Duration; {
			case d <= 0:
				errs = append(errs, field.Invalid(p.Child("tokenLifetime"), d.String(), "must be positive, e.g. 15m"))
			case c.Tokens.MaxLifetime.Duration > 0 && d > c.Tokens.MaxLifetime.Duration:
				errs = append(errs, field.Invalid(p.Child("tokenLifetime"), d.String(), fmt.Sprintf("must not exceed tokens.maxLifetime (%s)", c.Tokens.MaxLifetime.Duration)))
			}
		}
		for j, a := range cl.APIAudiences {
			if a == "" {
				errs = append(errs, field.Required(p.Child("apiAudiences").Index(j), "audiences cannot be empty"))
			}
		}
		ap := p.Child("access")
		errs = append(errs, validateEntries(cl.Access.Users, ap.Child("users"), "user names")...)
		errs = append(errs, validateEntries(cl.Access.Groups, ap.Child("groups"), "group names")...)
		errs = append(errs, validateEmailDomains(cl.Access.EmailDomains, ap.Child("emailDomains"))...)
		if j := cl.JustInTime; j != nil {
			errs = append(errs, validateJustInTime(j, p.Child("justInTime"))...)
		}
		if u := cl.Upstream; u != nil {
			errs = append(errs, validateUpstream(u, p.Child("upstream"))...)
		}
		if a := cl.APIServer; a != nil {
			ap := p.Child("apiServer")
			if cl.Upstream != nil {
				errs = append(errs, field.Forbidden(ap, "is for clusters in webhook mode: this cluster has an upstream, so kubectl reaches it through the proxy at <issuerURL>/clusters/"+cl.Name+"; remove apiServer (or upstream)"))
			}
			errs = append(errs, validateHTTPSURL(a.URL, ap.Child("url"), true)...)
			errs = append(errs, validateCAFile(a.CertificateAuthorityFile, ap.Child("certificateAuthorityFile"))...)
		}
	}
	return errs
}

// validateUpstream checks that an upstream has exactly one credential
// (tokenFile with server, kubeconfig, or inCluster) and that what it names
// can be used.
func validateUpstream(u *Upstream, up *field.Path) field.ErrorList {
	var errs field.ErrorList
	var set []string
	if u.TokenFile != "" {
		set = append(set, "tokenFile")
	}
	if u.Kubeconfig != nil {
		set = append(set, "kubeconfig")
	}
	if u.InCluster {
		set = append(set, "inCluster")
	}
	switch len(set) {
	case 0:
		errs = append(errs, field.Required(up.Child("tokenFile"), "the proxy needs a credential for the upstream API server: set exactly one of tokenFile (a bearer token file, with server), kubeconfig (path and optional context) or inCluster: true (Portcullis's own service account)"))
		// A server without a credential is most likely a tokenFile
		// upstream missing its file: check what is there.
		if u.Server != "" || u.CertificateAuthorityFile != "" {
			errs = append(errs, validateHTTPSURL(u.Server, up.Child("server"), true)...)
			errs = append(errs, validateCAFile(u.CertificateAuthorityFile, up.Child("certificateAuthorityFile"))...)
		}
		return errs
	case 1:
	default:
		for _, name := range set[1:] {
			errs = append(errs, field.Forbidden(up.Child(name), fmt.Sprintf("set only one credential: %s is set too; keep exactly one of tokenFile, kubeconfig and inCluster", set[0])))
		}
	}
	if u.TokenFile != "" {
		errs = append(errs, validateHTTPSURL(u.Server, up.Child("server"), true)...)
		errs = append(errs, validateCAFile(u.CertificateAuthorityFile, up.Child("certificateAuthorityFile"))...)
		errs = append(errs, validateReadableFile(u.TokenFile, up.Child("tokenFile"))...)
		return errs
	}
	from := "the kubeconfig's cluster"
	if u.InCluster {
		from = "the pod's service account (KUBERNETES_SERVICE_HOST and ca.crt)"
	}
	if u.Server != "" {
		errs = append(errs, field.Forbidden(up.Child("server"), "comes from "+from+" here: remove it (server is only for tokenFile)"))
	}
	if u.CertificateAuthorityFile != "" {
		errs = append(errs, field.Forbidden(up.Child("certificateAuthorityFile"), "comes from "+from+" here: remove it (certificateAuthorityFile is only for tokenFile)"))
	}
	if k := u.Kubeconfig; k != nil {
		kp := up.Child("kubeconfig")
		if k.Path == "" {
			return append(errs, field.Required(kp.Child("path"), "give the kubeconfig file holding the upstream API server and Portcullis's credential for it"))
		}
		if fe := validateReadableFile(k.Path, kp.Child("path")); len(fe) > 0 {
			return append(errs, fe...)
		}
		if _, err := upstreamconfig.FromKubeconfig(k.Path, k.Context); err != nil {
			var ue *upstreamconfig.Error
			switch {
			case errors.As(err, &ue) && ue.Field == "context":
				errs = append(errs, field.Invalid(kp.Child("context"), k.Context, ue.Msg))
			default:
				errs = append(errs, field.Invalid(kp.Child("path"), k.Path, err.Error()))
			}
		}
	}
	return errs
}

func validateWebhook(w *WebhookConfig, fld *field.Path) field.ErrorList {
	errs := validateCAFile(w.ClientCAFile, fld.Child("clientCAFile"))
	if len(w.AllowedClientNames) > 0 && w.ClientCAFile == "" {
		errs = append(errs, field.Required(fld.Child("clientCAFile"), "allowedClientNames needs the CA that signs those client certificates"))
	}
	errs = append(errs, validateEntries(w.AllowedClientNames, fld.Child("allowedClientNames"), "client names")...)
	return errs
}

func validatePortal(p *PortalConfig, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, d := range []struct {
		name string
		v    metav1.Duration
	}{
		{"sessionIdleTimeout", p.SessionIdleTimeout},
		{"sessionMaxLifetime", p.SessionMaxLifetime},
		{"refreshReuseGrace", p.RefreshReuseGrace},
	} {
		if d.v.Duration < 0 {
			errs = append(errs, field.Invalid(fld.Child(d.name), d.v.String(), "must be positive"))
		}
	}
	if p.SessionIdleTimeout.Duration >= 0 && p.SessionMaxLifetime.Duration >= 0 && p.SessionIdleTimeout.Duration > p.SessionMaxLifetime.Duration {
		errs = append(errs, field.Invalid(fld.Child("sessionIdleTimeout"), p.SessionIdleTimeout.String(), fmt.Sprintf("must not exceed portal.sessionMaxLifetime (%s)", p.SessionMaxLifetime.Duration)))
	}
	if l := p.LoginStartLimits; l != nil {
		lf := fld.Child("loginStartLimits")
		errs = append(errs, validateRateLimit(l.PerClient, lf.Child("perClient"))...)
		if l.Global != nil {
			errs = append(errs, validateRateLimit(*l.Global, lf.Child("global"))...)
		}
		// A client's bucket unused for 15 minutes is forgotten
		// (pkg/clientlimit): that changes nothing only if it is full again
		// by then.
		if l.PerClient.Every.Duration > 0 && l.PerClient.Burst > 0 &&
			l.PerClient.Every.Duration > maxClientRefill/time.Duration(l.PerClient.Burst) {
			errs = append(errs, field.Invalid(lf.Child("perClient"), fmt.Sprintf("burst %d, every %s", l.PerClient.Burst, l.PerClient.Every.Duration),
				fmt.Sprintf("burst × every must be at most %s (a client's bucket must refill within the time an idle one is kept)", maxClientRefill)))
		}
	}
	return errs
}

// maxClientRefill is how long pkg/clientlimit keeps an idle client's bucket.
const maxClientRefill = 15 * time.Minute

// maxBurst bounds a rate limit's burst: more would be a typo rather than a
// limit.
const maxBurst = 1_000_000

func validateRateLimit(r RateLimit, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.Burst < 1 || r.Burst > maxBurst {
		errs = append(errs, field.Invalid(fld.Child("burst"), r.Burst, fmt.Sprintf("must be between 1 and %d", maxBurst)))
	}
	if r.Every.Duration <= 0 {
		errs = append(errs, field.Invalid(fld.Child("every"), r.Every.String(), "must be more than 0"))
	}
	return errs
}

func storeTypeOrDefault(t string) string {
	if t == "" {
		return "bolt"
	}
	return t
}

// maxApprovalsRequired bounds justInTime.approvalsRequired: more would be a
// typo rather than a policy.
const maxApprovalsRequired = 10

func validateJustInTime(j *JustInTimeAccess, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	gp := fld.Child("requestableGroups")
	if len(j.RequestableGroups) == 0 {
		errs = append(errs, field.Required(gp, "list the groups users may ask for (e.g. [sre-admin]), or remove justInTime"))
	}
	errs = append(errs, validateGrantableGroups(j.RequestableGroups, gp)...)
	switch d := j.MaxDuration.Duration; {
	case d < 0:
		errs = append(errs, field.Invalid(fld.Child("maxDuration"), d.String(), "must be positive, e.g. 1h"))
	case d > MaxJustInTimeDuration:
		errs = append(errs, field.Invalid(fld.Child("maxDuration"), d.String(), fmt.Sprintf("must not exceed %s: standing access is what this feature replaces; use clusters[].access for it", MaxJustInTimeDuration)))
	}
	ap := fld.Child("approvers")
	errs = append(errs, validateEntries(j.Approvers.Users, ap.Child("users"), "user names")...)
	errs = append(errs, validateEntries(j.Approvers.Groups, ap.Child("groups"), "group names")...)
	if len(j.Approvers.Users) == 0 && len(j.Approvers.Groups) == 0 {
		errs = append(errs, field.Required(ap, "name who may approve requests: approvers.users or approvers.groups (e.g. groups: [sre-leads])"))
	}
	for i, g := range j.Approvers.Groups {
		if p := reservedGroupPrefix(g); p != "" {
			errs = append(errs, field.Invalid(ap.Child("groups").Index(i), g, "groups starting with "+p+" are not asserted by identity providers, so nobody would be an approver by them; name a group your IdP sends"))
		}
	}
	switch n := j.ApprovalsRequired; {
	case n < 0:
		errs = append(errs, field.Invalid(fld.Child("approvalsRequired"), n, "must be at least 1 (the default)"))
	case n > maxApprovalsRequired:
		errs = append(errs, field.Invalid(fld.Child("approvalsRequired"), n, fmt.Sprintf("must be at most %d", maxApprovalsRequired)))
	case n > 1 && len(j.Approvers.Groups) == 0 && len(j.Approvers.Users) < n:
		errs = append(errs, field.Invalid(fld.Child("approvalsRequired"), n, fmt.Sprintf("only %d approver users are listed and no approver groups, so no request could ever be approved; list more approvers or lower approvalsRequired", len(j.Approvers.Users))))
	}
	dp := fld.Child("directGrantGroups")
	errs = append(errs, validateEntries(j.DirectGrantGroups, dp, "group names")...)
	for i, g := range j.DirectGrantGroups {
		if p := reservedGroupPrefix(g); p != "" {
			errs = append(errs, field.Invalid(dp.Index(i), g, "groups starting with "+p+" are not asserted by identity providers; name a group your IdP sends"))
		}
	}
	return errs
}

// validateGrantableGroups refuses empty, duplicate and reserved groups: a
// grant of system:masters (or any system: group) would hand out more than any
// RoleBinding can take back.
func validateGrantableGroups(list []string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[string]()
	for i, g := range list {
		switch {
		case strings.TrimSpace(g) == "":
			errs = append(errs, field.Required(fld.Index(i), "group names cannot be empty: remove the entry or fill it in"))
		case reservedGroupPrefix(g) != "":
			errs = append(errs, field.Invalid(fld.Index(i), g, "groups starting with "+reservedGroupPrefix(g)+" cannot be granted: bind the permissions to a group of your own (e.g. sre-admin) with RBAC and list that"))
		case seen.Has(g):
			errs = append(errs, field.Duplicate(fld.Index(i), g))
		}
		seen.Insert(g)
	}
	return errs
}
