package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	ldapv3 "github.com/go-ldap/ldap/v3"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/identity"
)

var (
	// ErrInvalidCredentials is the one answer to a refused login: unknown
	// user, wrong password, disabled or locked account, ambiguous user name.
	ErrInvalidCredentials = errors.New("invalid username or password")
	// ErrUnavailable is wrapped by errors of a directory that could not be
	// asked (unreachable, TLS failure, timeout, an unexpected answer): a
	// retry later may succeed, and the person's password was not judged.
	ErrUnavailable = errors.New("the directory is unavailable")
	// ErrBindCredentials is wrapped when the directory refuses Portcullis's
	// own account (bindDN and bindPasswordFile): the operator must fix the
	// configuration or the password file. It also wraps ErrUnavailable.
	ErrBindCredentials = errors.New("the directory refused Portcullis's bind DN and password")
	// ErrUserGone is returned by Lookup when the user's entry no longer
	// exists or no longer matches userSearch.filter (deleted or disabled).
	ErrUserGone = errors.New("the user is no longer in the directory (deleted, or no longer matches userSearch.filter)")
)

// MaxUsernameLength and MaxPasswordLength bound what a login may send.
const (
	MaxUsernameLength = 256
	MaxPasswordLength = 1024
	// maxNestingDepth bounds groupSearch.nested: Recursive.
	maxNestingDepth = 10
	// maxGroups bounds the groups one user may have from the directory.
	maxGroups = 1000
)

// unavailableError says which directory could not be asked, and why.
type unavailableError struct {
	directory string
	host      string
	err       error
	bind      bool
}

func (e *unavailableError) Error() string {
	where := e.directory
	if e.host != "" {
		where += " (" + e.host + ")"
	}
	if e.bind {
		return fmt.Sprintf("directory %s refused Portcullis's bind DN and password (check ldap.bindDN and ldap.bindPasswordFile): %v", where, e.err)
	}
	return fmt.Sprintf("directory %s is unavailable: %v", where, e.err)
}

func (e *unavailableError) Unwrap() []error {
	if e.bind {
		return []error{ErrUnavailable, ErrBindCredentials}
	}
	return []error{ErrUnavailable}
}

// Result is a person the directory vouched for.
type Result struct {
	// DN is the user's entry, which a refresh looks up again.
	DN string
	// Identity is the user as Portcullis knows them, with the configured
	// prefixes, before group mappings.
	Identity identity.Identity
}

// Directory is one LDAP identity provider. It is safe for concurrent use.
type Directory struct {
	name, displayName string
	cfg               v1alpha1.LDAPConfig
	roots             *x509.CertPool
	timeout           time.Duration

	// healthMu guards the last result of Check, for /readyz.
	healthMu  sync.Mutex
	healthAt  time.Time
	healthErr error
	checking  bool
}

// New makes the directory of an identity provider with an ldap block (as
// validated and defaulted by pkg/apis/config).
func New(idp v1alpha1.IdentityProvider) (*Directory, error) {
	if idp.LDAP == nil {
		return nil, fmt.Errorf("identity provider %q is not an LDAP directory", idp.Name)
	}
	cfg := *idp.LDAP.DeepCopy()
	// New may be given an undefaulted configuration (tests, tools).
	v1alpha1.SetLDAPDefaults(&cfg)
	if cfg.UsernamePrefix == nil || cfg.GroupsPrefix == nil {
		return nil, fmt.Errorf("identity provider %q: ldap.usernamePrefix and ldap.groupsPrefix are required", idp.Name)
	}
	d := &Directory{name: idp.Name, displayName: idp.DisplayName, cfg: cfg, timeout: cfg.Timeout.Duration}
	if d.displayName == "" {
		d.displayName = idp.Name
	}
	if len(cfg.Hosts) == 0 {
		return nil, fmt.Errorf("identity provider %q: ldap.hosts is empty", idp.Name)
	}
	if f := cfg.CertificateAuthorityFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("identity provider %q: reading ldap.certificateAuthorityFile: %w", idp.Name, err)
		}
		if d.roots, err = certutil.NewPoolFromBytes(pem); err != nil {
			return nil, fmt.Errorf("identity provider %q: ldap.certificateAuthorityFile %s: %w", idp.Name, f, err)
		}
	}
	return d, nil
}

// Name is the identity provider's name.
func (d *Directory) Name() string { return d.name }

// DisplayName is the name shown on the login page.
func (d *Directory) DisplayName() string { return d.displayName }

// conn is a connection bound as Portcullis's own account.
type conn struct {
	*ldapv3.Conn
	host string
	stop func() bool
}

func (c *conn) close() {
	c.stop()
	_ = c.Close()
}

func (d *Directory) unavailable(host string, err error) error {
	return &unavailableError{directory: d.name, host: host, err: err}
}

// dial connects to the first host that answers, with TLS as configured,
// and binds as Portcullis's account. The connection is closed when ctx is
// done.
func (d *Directory) dial(ctx context.Context) (*conn, error) {
	password, err := d.bindPassword()
	if err != nil {
		return nil, &unavailableError{directory: d.name, err: err, bind: true}
	}
	var errs []error
	for _, h := range d.cfg.Hosts {
		c, err := d.dialHost(ctx, h)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h, err))
			continue
		}
		if err := c.Bind(d.cfg.BindDN, password); err != nil {
			c.close()
			if ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultInvalidCredentials) {
				return nil, &unavailableError{directory: d.name, host: h, err: errors.New("invalid credentials"), bind: true}
			}
			errs = append(errs, fmt.Errorf("%s: binding as %s: %w", h, d.cfg.BindDN, describe(err)))
			continue
		}
		return c, nil
	}
	return nil, d.unavailable("", errors.Join(errs...))
}

func (d *Directory) dialHost(ctx context.Context, hostport string) (*conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
		port = "389"
		if d.cfg.TLSMode == v1alpha1.LDAPTLSModeLDAPS {
			port = "636"
		}
	}
	addr := net.JoinHostPort(host, port)
	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, describe(err)
	}
	tlsConfig := &tls.Config{RootCAs: d.roots, ServerName: host, MinVersion: tls.VersionTLS12}
	if d.cfg.ServerName != "" {
		tlsConfig.ServerName = d.cfg.ServerName
	}
	var lc *ldapv3.Conn
	switch d.cfg.TLSMode {
	case v1alpha1.LDAPTLSModeLDAPS:
		tc := tls.Client(raw, tlsConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		lc = ldapv3.NewConn(tc, true)
		lc.Start()
	default:
		lc = ldapv3.NewConn(raw, false)
		lc.Start()
	}
	lc.SetTimeout(d.timeout)
	c := &conn{Conn: lc, host: addr}
	// go-ldap's operations take no context: closing the connection ends
	// whatever is waiting on it.
	c.stop = context.AfterFunc(ctx, func() { _ = lc.Close() })
	if d.cfg.TLSMode == v1alpha1.LDAPTLSModeStartTLS {
		if err := lc.StartTLS(tlsConfig); err != nil {
			c.close()
			return nil, fmt.Errorf("StartTLS: %w", describe(err))
		}
	}
	return c, nil
}

// bindPassword reads bindPasswordFile now, so a rotated password takes
// effect without a restart.
func (d *Directory) bindPassword() (string, error) {
	data, err := os.ReadFile(d.cfg.BindPasswordFile)
	if err != nil {
		// The path is configuration, not a secret; the contents never appear.
		return "", fmt.Errorf("reading ldap.bindPasswordFile: %w", err)
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("ldap.bindPasswordFile %s is empty", d.cfg.BindPasswordFile)
	}
	return pw, nil
}

// describe shortens go-ldap's errors, which may carry a whole packet.
func describe(err error) error {
	var le *ldapv3.Error
	if errors.As(err, &le) {
		msg := ldapv3.LDAPResultCodeMap[le.ResultCode]
		if le.Err != nil {
			msg = strings.TrimPrefix(le.Err.Error(), "ldap: ")
		}
		if msg == "" {
			msg = fmt.Sprintf("result code %d", le.ResultCode)
		}
		return errors.New(msg)
	}
	return err
}

// ValidUsername reports whether a login's user name may be sent to the
// directory at all (it is escaped in any case).
func ValidUsername(u string) bool {
	return u != "" && len(u) <= MaxUsernameLength && utf8.ValidString(u) && strings.TrimSpace(u) == u &&
		!strings.ContainsFunc(u, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// Authenticate checks username and password against the directory: it
// searches the user's entry (userSearch), binds as that entry with the
// password, and reads the user's groups. Every refusal is
// ErrInvalidCredentials; a directory that cannot be asked gives an error
// wrapping ErrUnavailable.
func (d *Directory) Authenticate(ctx context.Context, username, password string) (*Result, error) {
	if !ValidUsername(username) || password == "" || len(password) > MaxPasswordLength {
		return nil, ErrInvalidCredentials
	}
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	entry, err := d.findUser(c, d.cfg.UserSearch.BaseDN, ldapv3.ScopeWholeSubtree, userFilter(d.cfg.UserSearch, username))
	if err != nil {
		return nil, err
	}
	if entry == nil {
		klog.V(2).InfoS("LDAP login refused: no entry matches", "identityProvider", d.name)
		return nil, ErrInvalidCredentials
	}
	if err := c.Bind(entry.DN, password); err != nil {
		switch {
		case ldapv3.IsErrorAnyOf(err, ldapv3.LDAPResultInvalidCredentials, ldapv3.LDAPResultInappropriateAuthentication,
			ldapv3.LDAPResultInsufficientAccessRights, ldapv3.LDAPResultUnwillingToPerform, ldapv3.LDAPResultConstraintViolation):
			klog.V(2).InfoS("LDAP login refused: the directory refused the password", "identityProvider", d.name, "dn", entry.DN)
			return nil, ErrInvalidCredentials
		}
		return nil, d.unavailable(c.host, fmt.Errorf("binding as the user: %w", describe(err)))
	}
	// Back to Portcullis's account: the user may not be allowed to read
	// groups.
	pw, err := d.bindPassword()
	if err != nil {
		return nil, &unavailableError{directory: d.name, err: err, bind: true}
	}
	if err := c.Bind(d.cfg.BindDN, pw); err != nil {
		return nil, d.unavailable(c.host, fmt.Errorf("binding as %s again: %w", d.cfg.BindDN, describe(err)))
	}
	return d.result(c, entry)
}

// Lookup reads the user of a session again, by the DN Authenticate
// returned: ErrUserGone when the entry was deleted or no longer matches
// userSearch.filter (a disabled account), else the user with their current
// groups. The password is not checked again.
func (d *Directory) Lookup(ctx context.Context, dn string) (*Result, error) {
	if _, err := ldapv3.ParseDN(dn); err != nil {
		return nil, ErrUserGone
	}
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.close()
	entry, err := d.findUser(c, dn, ldapv3.ScopeBaseObject, d.cfg.UserSearch.Filter)
	if err != nil {
		return nil, err
	}
	if entry == nil {
		return nil, ErrUserGone
	}
	return d.result(c, entry)
}

// findUser returns the one entry filter matches under base, nil when none
// (or, refused as ambiguous, several) does.
func (d *Directory) findUser(c *conn, base string, scope int, filter string) (*ldapv3.Entry, error) {
	attrs := []string{d.cfg.UserSearch.UsernameAttribute, d.cfg.UserSearch.UIDAttribute}
	if a := d.cfg.UserSearch.EmailAttribute; a != "" {
		attrs = append(attrs, a)
	}
	if a := d.cfg.UserSearch.MemberOfAttribute; a != "" {
		attrs = append(attrs, a)
	}
	res, err := c.Search(ldapv3.NewSearchRequest(base, scope, ldapv3.NeverDerefAliases, 2, int(d.timeout/time.Second), false, filter, attrs, nil))
	switch {
	case ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultNoSuchObject):
		return nil, nil
	case ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultSizeLimitExceeded):
		klog.InfoS("LDAP login refused: the user name matches several entries; make userSearch.filter or usernameAttribute select one", "identityProvider", d.name)
		return nil, nil
	case err != nil:
		return nil, d.unavailable(c.host, fmt.Errorf("searching users: %w", describe(err)))
	}
	switch len(res.Entries) {
	case 0:
		return nil, nil
	case 1:
		return res.Entries[0], nil
	}
	klog.InfoS("LDAP login refused: the user name matches several entries; make userSearch.filter or usernameAttribute select one", "identityProvider", d.name)
	return nil, nil
}

// result maps the user's entry to an identity, with its groups.
func (d *Directory) result(c *conn, entry *ldapv3.Entry) (*Result, error) {
	us := d.cfg.UserSearch
	name := entry.GetEqualFoldAttributeValue(us.UsernameAttribute)
	if name == "" {
		klog.InfoS("LDAP login refused: the user's entry has no user name attribute", "identityProvider", d.name, "dn", entry.DN, "attribute", us.UsernameAttribute)
		return nil, ErrInvalidCredentials
	}
	uid := attributeString(entry.GetEqualFoldRawAttributeValue(us.UIDAttribute))
	if uid == "" {
		klog.InfoS("LDAP login refused: the user's entry has no UID attribute", "identityProvider", d.name, "dn", entry.DN, "attribute", us.UIDAttribute)
		return nil, ErrInvalidCredentials
	}
	groups, err := d.groups(c, entry)
	if err != nil {
		return nil, err
	}
	id := identity.Identity{
		Username:         *d.cfg.UsernamePrefix + name,
		UID:              uid,
		IdentityProvider: d.name,
	}
	if a := us.EmailAttribute; a != "" {
		id.Email = entry.GetEqualFoldAttributeValue(a)
	}
	for _, g := range groups {
		id.Groups = append(id.Groups, *d.cfg.GroupsPrefix+g)
	}
	// As for OpenID Connect providers: a directory group named
	// system:masters (with no prefix) must not make its members that.
	id.Groups = identity.DropReservedGroups(d.name, id.Username, id.Groups)
	return &Result{DN: entry.DN, Identity: id}, nil
}

// attributeString is an attribute value as text: hex when it is binary
// (Active Directory's objectGUID).
func attributeString(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if utf8.Valid(v) && !slices.ContainsFunc(v, func(b byte) bool { return b < 0x20 || b == 0x7f }) {
		return string(v)
	}
	return hex.EncodeToString(v)
}

// groups returns the names of the user's groups, sorted.
func (d *Directory) groups(c *conn, entry *ldapv3.Entry) ([]string, error) {
	if a := d.cfg.UserSearch.MemberOfAttribute; a != "" {
		var names []string
		for _, dn := range entry.GetEqualFoldAttributeValues(a) {
			if n := firstRDNValue(dn); n != "" {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		return slices.Compact(names), nil
	}
	gs := d.cfg.GroupSearch
	if gs == nil {
		return nil, nil
	}
	search := func(filter string) ([]*ldapv3.Entry, error) {
		res, err := c.Search(ldapv3.NewSearchRequest(gs.BaseDN, ldapv3.ScopeWholeSubtree, ldapv3.NeverDerefAliases, maxGroups, int(d.timeout/time.Second), false,
			filter, []string{gs.NameAttribute}, nil))
		if ldapv3.IsErrorWithCode(err, ldapv3.LDAPResultNoSuchObject) {
			return nil, nil
		}
		if err != nil {
			return nil, d.unavailable(c.host, fmt.Errorf("searching groups: %w", describe(err)))
		}
		return res.Entries, nil
	}
	var found []*ldapv3.Entry
	switch gs.Nested {
	case v1alpha1.LDAPNestedInChain:
		es, err := search(groupFilter(gs, []string{entry.DN}))
		if err != nil {
			return nil, err
		}
		found = es
	default:
		seen := map[string]bool{}
		frontier := []string{entry.DN}
		for depth := 0; len(frontier) > 0 && depth < maxNestingDepth; depth++ {
			es, err := search(groupFilter(gs, frontier))
			if err != nil {
				return nil, err
			}
			frontier = nil
			for _, e := range es {
				key := strings.ToLower(e.DN)
				if seen[key] {
					continue
				}
				seen[key] = true
				found = append(found, e)
				frontier = append(frontier, e.DN)
			}
			if gs.Nested != v1alpha1.LDAPNestedRecursive || len(found) >= maxGroups {
				break
			}
		}
	}
	var names []string
	for _, e := range found {
		if n := e.GetEqualFoldAttributeValue(gs.NameAttribute); n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// groupFilter is the filter of the groups having one of members (DNs) as a
// member: with nested: InChain, through Active Directory's in-chain
// matching rule. The DNs are escaped: a DN may hold '*', '(' or ')'.
func groupFilter(gs *v1alpha1.LDAPGroupSearch, members []string) string {
	rule := ""
	if gs.Nested == v1alpha1.LDAPNestedInChain {
		rule = ":1.2.840.113556.1.4.1941:"
	}
	var b strings.Builder
	b.WriteString("(&" + gs.Filter)
	if len(members) > 1 {
		b.WriteString("(|")
	}
	for _, dn := range members {
		fmt.Fprintf(&b, "(%s%s=%s)", gs.MemberAttribute, rule, ldapv3.EscapeFilter(dn))
	}
	if len(members) > 1 {
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}

// userFilter is the filter of the user who typed username.
func userFilter(us v1alpha1.LDAPUserSearch, username string) string {
	return fmt.Sprintf("(&%s(%s=%s))", us.Filter, us.UsernameAttribute, ldapv3.EscapeFilter(username))
}

// firstRDNValue is the value of a DN's first attribute: "devs" for
// "cn=devs,ou=groups,dc=example,dc=com".
func firstRDNValue(dn string) string {
	parsed, err := ldapv3.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return ""
	}
	return parsed.RDNs[0].Attributes[0].Value
}

// healthInterval is how often HealthCheck asks the directory again.
const healthInterval = 10 * time.Second

// Check connects and binds as Portcullis's account now: nil when the
// directory can be used.
func (d *Directory) Check(ctx context.Context) error {
	c, err := d.dial(ctx)
	d.healthMu.Lock()
	d.healthAt, d.healthErr = time.Now(), err
	d.healthMu.Unlock()
	if err != nil {
		return err
	}
	c.close()
	return nil
}

// HealthCheck returns the result of the last Check, and starts a new one in
// the background when it is older than 10 seconds: a readiness probe never
// waits on the directory.
func (d *Directory) HealthCheck() error {
	d.healthMu.Lock()
	defer d.healthMu.Unlock()
	if time.Since(d.healthAt) >= healthInterval && !d.checking {
		d.checking = true
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*d.timeout)
			defer cancel()
			err := d.Check(ctx)
			if err != nil {
				klog.ErrorS(err, "LDAP directory check failed", "identityProvider", d.name)
			}
			d.healthMu.Lock()
			d.checking = false
			d.healthMu.Unlock()
		}()
	}
	return d.healthErr
}
