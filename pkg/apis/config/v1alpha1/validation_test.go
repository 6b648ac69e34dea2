package v1alpha1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testkit"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
)

// files are the files a valid configuration points at.
type files struct {
	dir    string
	ca     string // a PEM CA certificate
	secret string // a client secret
	token  string // a bearer token
	key    string // a PEM private key: a file that is not a CA certificate
}

func newFiles(t *testing.T) files {
	t.Helper()
	dir := t.TempDir()
	f := files{
		dir:    dir,
		ca:     filepath.Join(dir, "ca.crt"),
		secret: filepath.Join(dir, "client-secret"),
		token:  filepath.Join(dir, "token"),
		key:    filepath.Join(dir, "ca.key"),
	}
	ca := testkit.NewCA(t, "test CA")
	certPEM, keyPEM := ca.CertPEM, testkit.ECKeyPEM(t, ca.Key)
	for path, content := range map[string][]byte{f.ca: certPEM, f.key: keyPEM, f.secret: []byte("s3cret\n"), f.token: []byte("token\n")} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func ptr[T any](v T) *T { return &v }

// valid returns a defaulted configuration that uses every part of the
// file, and is valid.
func valid(f files) *PortcullisConfiguration {
	c := &PortcullisConfiguration{
		TypeMeta:  metav1.TypeMeta{APIVersion: SchemeGroupVersion.String(), Kind: "PortcullisConfiguration"},
		IssuerURL: "https://portcullis.example.com",
		Store:     StoreConfig{Path: filepath.Join(f.dir, "state.db")},
		IdentityProviders: []IdentityProvider{{
			Name: "dex",
			Issuer: apiserverv1.Issuer{
				URL: "https://dex.example.com/dex",
			},
			ClaimMappings: apiserverv1.ClaimMappings{
				Username: apiserverv1.PrefixedClaimOrExpression{Claim: "email", Prefix: ptr("")},
				Groups:   apiserverv1.PrefixedClaimOrExpression{Claim: "groups", Prefix: ptr("oidc:")},
			},
			CertificateAuthorityFile: f.ca,
			ClientID:                 "portcullis",
			ClientSecretFile:         f.secret,
			UserInfo:                 &UserInfoConfig{},
		}, {
			Name: "gitlab",
			Issuer: apiserverv1.Issuer{
				URL:       "https://gitlab.example.com",
				Audiences: []string{"portcullis"},
			},
			ClaimValidationRules: []apiserverv1.ClaimValidationRule{{Expression: "claims.email_verified == true", Message: "verify your email"}},
			ClaimMappings: apiserverv1.ClaimMappings{
				Username: apiserverv1.PrefixedClaimOrExpression{Expression: "claims.email"},
			},
			UserValidationRules: []apiserverv1.UserValidationRule{{Expression: "!user.username.startsWith('system:')", Message: "no system users"}},
			AcceptIDTokens:      true,
		}},
		GroupMappings: []GroupMapping{{
			Match:  GroupMatch{EmailDomains: []string{"example.com"}, IdentityProviders: []string{"dex"}},
			Groups: []string{"staff"},
		}, {
			Match:  GroupMatch{Users: []string{"jane@example.com"}, Emails: []string{"jane@example.com"}, Groups: []string{"oidc:admins"}},
			Groups: []string{"sre"},
		}},
		Clusters: []Cluster{{
			Name:   "dev",
			Access: AccessPolicy{AllUsers: true},
		}, {
			Name:          "prod",
			TokenLifetime: &metav1.Duration{Duration: 5 * time.Minute},
			Access:        AccessPolicy{Users: []string{"jane@example.com"}, Groups: []string{"sre"}, EmailDomains: []string{"example.com"}},
			Upstream: &Upstream{
				Server:                   "https://prod.example.com:6443",
				CertificateAuthorityFile: f.ca,
				TokenFile:                f.token,
			},
		}},
		Webhook: WebhookConfig{ClientCAFile: f.ca, AllowedClientNames: []string{"kube-apiserver"}},
	}
	SetDefaults(c)
	return c
}

// want is an expected error: its field path, and text its message contains.
type want struct {
	field, text string
}

// checkErrors fails unless errs are exactly the wanted ones, in any order.
func checkErrors(t *testing.T, errs field.ErrorList, wants ...want) {
	t.Helper()
	used := make([]bool, len(errs))
	for _, w := range wants {
		found := false
		for i, e := range errs {
			if !used[i] && e.Field == w.field && strings.Contains(e.Error(), w.text) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing error: %s: ...%s...", w.field, w.text)
		}
	}
	for i, e := range errs {
		if !used[i] {
			t.Errorf("unexpected error: %v", e)
		}
	}
}

func TestTheBaseConfigurationIsValid(t *testing.T) {
	checkErrors(t, Validate(valid(newFiles(t))))
}

func TestKubernetesStoreConfigurationsThatAreValid(t *testing.T) {
	f := newFiles(t)
	for name, sc := range map[string]StoreConfig{
		"in the cluster, in the pod's namespace (no kubernetes section)": {Type: "kubernetes"},
		"in the cluster, in a named namespace":                           {Type: "kubernetes", Kubernetes: &KubernetesStoreConfig{Namespace: "auth"}},
		"outside the cluster, with a kubeconfig and its context":         {Type: "kubernetes", Kubernetes: &KubernetesStoreConfig{Namespace: "auth", Kubeconfig: f.ca, Context: "prod"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := valid(f)
			c.Store = sc
			SetDefaults(c)
			checkErrors(t, Validate(c))
			if c.Store.Path != "" {
				t.Errorf("store.path was defaulted to %q for a kubernetes store", c.Store.Path)
			}
		})
	}
}

func TestValidateReportsEveryRuleWithItsFieldPath(t *testing.T) {
	f := newFiles(t)
	type C = PortcullisConfiguration
	tests := []struct {
		name   string
		mutate func(c *C)
		want   []want
	}{
		// The file as a whole.
		{"a wrong apiVersion is refused", func(c *C) { c.APIVersion = "config.portcullis.dev/v1" }, []want{{"apiVersion", "must be config.portcullis.dev/v1alpha1"}}},
		{"a wrong kind is refused", func(c *C) { c.Kind = "Config" }, []want{{"kind", "must be PortcullisConfiguration"}}},

		// store
		{"an unknown store type is refused", func(c *C) { c.Store.Type = "etcd" }, []want{{"store.type", `supported values: "bolt", "kubernetes"`}}},
		{"a bolt store needs a path", func(c *C) { c.Store.Path = "" }, []want{{"store.path", "Required value"}}},
		{"a bolt store has no kubernetes settings", func(c *C) { c.Store.Kubernetes = &KubernetesStoreConfig{Namespace: "x"} }, []want{{"store.kubernetes", "Forbidden: is only for store.type kubernetes"}}},
		{"a kubernetes store has no path", func(c *C) { c.Store.Type = "kubernetes" }, []want{{"store.path", "Forbidden: is only for store.type bolt"}}},
		{"a kubernetes store outside the cluster needs a namespace", func(c *C) {
			c.Store = StoreConfig{Type: "kubernetes", Kubernetes: &KubernetesStoreConfig{Kubeconfig: f.ca}}
		}, []want{{"store.kubernetes.namespace", "Required value: set the namespace"}}},
		{"a kubernetes store's namespace must be a namespace name", func(c *C) {
			c.Store = StoreConfig{Type: "kubernetes", Kubernetes: &KubernetesStoreConfig{Namespace: "Portcullis_State"}}
		}, []want{{"store.kubernetes.namespace", `Invalid value: "Portcullis_State": must be a namespace name`}}},
		{"a kubernetes store's kubeconfig must be readable", func(c *C) {
			c.Store = StoreConfig{Type: "kubernetes", Kubernetes: &KubernetesStoreConfig{Namespace: "auth", Kubeconfig: filepath.Join(f.dir, "nope")}}
		}, []want{{"store.kubernetes.kubeconfig", "cannot be read"}}},
		{"a kubernetes store's context needs a kubeconfig", func(c *C) {
			c.Store = StoreConfig{Type: "kubernetes", Kubernetes: &KubernetesStoreConfig{Context: "prod"}}
		}, []want{{"store.kubernetes.context", "only means something with store.kubernetes.kubeconfig"}}},

		// tokens
		{"a negative token lifetime is refused", func(c *C) { c.Tokens.Lifetime.Duration = -time.Minute }, []want{{"tokens.lifetime", "must be positive"}}},
		{"a negative maximum token lifetime is refused", func(c *C) { c.Tokens.MaxLifetime.Duration = -time.Minute }, []want{{"tokens.maxLifetime", "must be positive"}}},
		{"a token lifetime above the maximum is refused", func(c *C) { c.Tokens.Lifetime.Duration = 48 * time.Hour }, []want{{"tokens.lifetime", "must not exceed tokens.maxLifetime (24h0m0s)"}}},
		{"a negative key rotation period is refused", func(c *C) { c.Tokens.KeyRotationPeriod.Duration = -time.Hour }, []want{{"tokens.keyRotationPeriod", "must be positive"}}},
		{"a key rotation period too short to publish a key first is refused", func(c *C) { c.Tokens.KeyRotationPeriod.Duration = 30 * time.Second }, []want{{"tokens.keyRotationPeriod", "must be at least 1m0s with store.type bolt"}}},
		{"a negative cache size is refused", func(c *C) { c.Tokens.CacheSize = -1 }, []want{{"tokens.cacheSize", "between 0 and 10000000"}}},
		{"a huge cache size is refused", func(c *C) { c.Tokens.CacheSize = 10_000_001 }, []want{{"tokens.cacheSize", "between 0 and 10000000"}}},

		// identityProviders: Portcullis's own rules
		{"an identity provider needs a name", func(c *C) { c.IdentityProviders[1].Name = "" }, []want{{"identityProviders[1].name", "Required value: use 1-63 lower-case"}}},
		{"an identity provider name must fit in a URL", func(c *C) { c.IdentityProviders[1].Name = "Git Lab" }, []want{{"identityProviders[1].name", `Invalid value: "Git Lab"`}}},
		{"identity provider names are unique", func(c *C) { c.IdentityProviders[1].Name = "dex" }, []want{{"identityProviders[1].name", "names must be unique"}}},
		{"a missing identity provider CA file is reported with its path", func(c *C) { c.IdentityProviders[0].CertificateAuthorityFile = filepath.Join(f.dir, "nope.crt") }, []want{{"identityProviders[0].certificateAuthorityFile", "nope.crt\": cannot be read (no such file or directory)"}}},
		{"an identity provider CA file without a certificate is refused", func(c *C) { c.IdentityProviders[0].CertificateAuthorityFile = f.key }, []want{{"identityProviders[0].certificateAuthorityFile", "holds no PEM certificate"}}},
		{"a missing client secret file is reported with its path", func(c *C) { c.IdentityProviders[0].ClientSecretFile = filepath.Join(f.dir, "nope") }, []want{{"identityProviders[0].clientSecretFile", "nope\": cannot be read"}}},
		{"a client secret file that is a directory is refused", func(c *C) { c.IdentityProviders[0].ClientSecretFile = f.dir }, []want{{"identityProviders[0].clientSecretFile", "is a directory"}}},
		{"a client secret file that is a device is refused", func(c *C) { c.IdentityProviders[0].ClientSecretFile = os.DevNull }, []want{{"identityProviders[0].clientSecretFile", "is not a regular file"}}},
		{"a CA file and an inline CA are not both set", func(c *C) { c.IdentityProviders[0].Issuer.CertificateAuthority = mustRead(t, f.ca) }, []want{{"identityProviders[0].certificateAuthorityFile", "set either this or issuer.certificateAuthority"}}},
		{"a client secret needs a client ID", func(c *C) { c.IdentityProviders[0].ClientID = "" }, []want{{"identityProviders[0].clientID", "a client secret needs the client ID"}}},
		{"an identity provider needs a client ID or to accept ID tokens", func(c *C) { c.IdentityProviders[1].AcceptIDTokens = false }, []want{{"identityProviders[1].clientID", "or acceptIDTokens: true"}}},
		{"login scopes include openid", func(c *C) { c.IdentityProviders[0].Scopes = []string{"email"} }, []want{{"identityProviders[0].scopes", `must include "openid"`}}},
		{"an issuer URL names a host", func(c *C) { c.IdentityProviders[1].Issuer.URL = "https:///gitlab" }, []want{{"identityProviders[1].issuer.url", "must name a host"}}},
		{"Portcullis's own issuerURL is refused as an identity provider", func(c *C) { c.IdentityProviders[1].Issuer.URL = c.IssuerURL }, []want{{"identityProviders[1].issuer.url", "is Portcullis's own issuerURL"}}},
		{"Portcullis's own issuerURL is refused with a trailing slash", func(c *C) { c.IdentityProviders[1].Issuer.URL = "https://Portcullis.example.com:443/" }, []want{{"identityProviders[1].issuer.url", "is Portcullis's own issuerURL"}}},
		{"an egress selector is refused", func(c *C) { c.IdentityProviders[1].Issuer.EgressSelectorType = apiserverv1.EgressSelectorCluster }, []want{{"identityProviders[1].issuer.egressSelectorType", "remove it"}}},

		// identityProviders: kube-apiserver's rules, at Portcullis's paths
		{"an identity provider needs an issuer URL", func(c *C) { c.IdentityProviders[1].Issuer.URL = "" }, []want{{"identityProviders[1].issuer.url", "Required value"}}},
		{"an issuer URL must be https", func(c *C) { c.IdentityProviders[1].Issuer.URL = "http://gitlab.example.com" }, []want{{"identityProviders[1].issuer.url", "URL scheme must be https"}}},
		{"two identity providers do not share an issuer", func(c *C) { c.IdentityProviders[1].Issuer.URL = c.IdentityProviders[0].Issuer.URL }, []want{{"identityProviders[1].issuer.url", "Duplicate value"}}},
		{"audiences are required without a client ID", func(c *C) { c.IdentityProviders[1].Issuer.Audiences = nil }, []want{{"identityProviders[1].issuer.audiences", "at least one identityProviders[1].issuer.audiences is required"}}},
		{"a claim mapping needs a prefix", func(c *C) { c.IdentityProviders[0].ClaimMappings.Username.Prefix = nil }, []want{{"identityProviders[0].claimMappings.username.prefix", "prefix is required when claim is set"}}},
		{"a username mapping is required", func(c *C) { c.IdentityProviders[0].ClaimMappings.Username = apiserverv1.PrefixedClaimOrExpression{} }, []want{{"identityProviders[0].claimMappings.username", "claim or expression is required"}}},
		{"a username expression that does not compile is refused", func(c *C) {
			c.IdentityProviders[1].ClaimMappings.Username.Expression = "claims.email +"
		}, []want{{"identityProviders[1].claimMappings.username.expression", "compilation failed"}}},
		{"a groups expression that does not compile is refused", func(c *C) {
			c.IdentityProviders[0].ClaimMappings.Groups = apiserverv1.PrefixedClaimOrExpression{Expression: "claims.groups.map(g, "}
		}, []want{{"identityProviders[0].claimMappings.groups.expression", "compilation failed"}}},
		{"a claim validation rule that does not compile is refused", func(c *C) {
			c.IdentityProviders[1].ClaimValidationRules[0].Expression = "claims.email_verified =="
		}, []want{{"identityProviders[1].claimValidationRules[0].expression", "compilation failed"}, {"identityProviders[1].claimMappings.username.expression", "claims.email_verified must be used"}}},
		{"a user validation rule that does not compile is refused", func(c *C) {
			c.IdentityProviders[1].UserValidationRules[0].Expression = "user.name("
		}, []want{{"identityProviders[1].userValidationRules[0].expression", "compilation failed"}}},

		// groupMappings
		{"a group mapping matches something", func(c *C) { c.GroupMappings[0].Match = GroupMatch{IdentityProviders: []string{"dex"}} }, []want{{"groupMappings[0].match", "name at least one of users, emails, emailDomains or groups"}}},
		{"a group mapping adds groups", func(c *C) { c.GroupMappings[1].Groups = nil }, []want{{"groupMappings[1].groups", "name the groups to add"}}},
		{"an added group is not empty", func(c *C) { c.GroupMappings[1].Groups = []string{"sre", ""} }, []want{{"groupMappings[1].groups[1]", "group names cannot be empty"}}},
		{"an added group is not a system group", func(c *C) { c.GroupMappings[1].Groups = []string{"system:masters"} }, []want{{"groupMappings[1].groups[0]", `reserved for Kubernetes`}}},
		{"an added group is not one of Portcullis's", func(c *C) { c.GroupMappings[1].Groups = []string{"portcullis.dev:tokenreview-callers"} }, []want{{"groupMappings[1].groups[0]", `reserved for Portcullis`}}},
		{"a matched group cannot be one an IdP's groups never are", func(c *C) { c.GroupMappings[1].Match.Groups = []string{"system:admins"} }, []want{{"groupMappings[1].match.groups[0]", `could never match`}}},
		{"a matched email domain is a bare domain", func(c *C) { c.GroupMappings[0].Match.EmailDomains = []string{"@example.com", "*.example.com", ""} }, []want{{"groupMappings[0].match.emailDomains[0]", "give a bare domain"}, {"groupMappings[0].match.emailDomains[1]", "give a bare domain"}, {"groupMappings[0].match.emailDomains[2]", "give a bare domain"}}},
		{"a matched email is an address", func(c *C) { c.GroupMappings[1].Match.Emails = []string{"jane"} }, []want{{"groupMappings[1].match.emails[0]", "give an email address"}}},
		{"a matched user is not empty", func(c *C) { c.GroupMappings[1].Match.Users = []string{""} }, []want{{"groupMappings[1].match.users[0]", "user names cannot be empty"}}},
		{"a matched group is not empty", func(c *C) { c.GroupMappings[1].Match.Groups = []string{" "} }, []want{{"groupMappings[1].match.groups[0]", "group names cannot be empty"}}},
		{"a matched identity provider exists", func(c *C) { c.GroupMappings[0].Match.IdentityProviders = []string{"gitlab", "github"} }, []want{{"groupMappings[0].match.identityProviders[1]", `Not found: "github": no entry of identityProviders has this name: use one of dex, gitlab`}}},

		// clusters
		{"a cluster needs a name", func(c *C) { c.Clusters[1].Name = "" }, []want{{"clusters[1].name", "Required value"}}},
		{"a cluster name must fit in a URL", func(c *C) { c.Clusters[1].Name = "prod_eu" }, []want{{"clusters[1].name", `Invalid value: "prod_eu"`}}},
		{"cluster names are unique", func(c *C) { c.Clusters[1].Name = "dev" }, []want{{"clusters[1].name", `Duplicate value: "dev"`}}},
		{"a cluster token lifetime is positive", func(c *C) { c.Clusters[1].TokenLifetime.Duration = 0 }, []want{{"clusters[1].tokenLifetime", "must be positive"}}},
		{"a cluster token lifetime is at most the maximum", func(c *C) { c.Clusters[1].TokenLifetime.Duration = 25 * time.Hour }, []want{{"clusters[1].tokenLifetime", "must not exceed tokens.maxLifetime"}}},
		{"an API audience is not empty", func(c *C) { c.Clusters[0].APIAudiences = []string{"https://kubernetes.default.svc", ""} }, []want{{"clusters[0].apiAudiences[1]", "audiences cannot be empty"}}},
		{"an admitted user is not empty", func(c *C) { c.Clusters[1].Access.Users = []string{""} }, []want{{"clusters[1].access.users[0]", "user names cannot be empty"}}},
		{"an admitted group is not empty", func(c *C) { c.Clusters[1].Access.Groups = []string{""} }, []want{{"clusters[1].access.groups[0]", "group names cannot be empty"}}},
		{"an admitted email domain is a bare domain", func(c *C) { c.Clusters[1].Access.EmailDomains = []string{"example.com/"} }, []want{{"clusters[1].access.emailDomains[0]", "give a bare domain"}}},
		{"an upstream needs a server", func(c *C) { c.Clusters[1].Upstream.Server = "" }, []want{{"clusters[1].upstream.server", "set an https:// URL"}}},
		{"an upstream server is https", func(c *C) { c.Clusters[1].Upstream.Server = "http://prod.example.com" }, []want{{"clusters[1].upstream.server", "must be an https:// URL"}}},
		{"a missing upstream CA file is reported with its path", func(c *C) { c.Clusters[1].Upstream.CertificateAuthorityFile = filepath.Join(f.dir, "prod-ca.crt") }, []want{{"clusters[1].upstream.certificateAuthorityFile", "prod-ca.crt\": cannot be read"}}},
		{"an upstream needs a token file", func(c *C) { c.Clusters[1].Upstream.TokenFile = "" }, []want{{"clusters[1].upstream.tokenFile", "the proxy needs a credential"}}},
		{"a missing upstream token file is reported with its path", func(c *C) { c.Clusters[1].Upstream.TokenFile = filepath.Join(f.dir, "sa-token") }, []want{{"clusters[1].upstream.tokenFile", "sa-token\": cannot be read (no such file or directory)"}}},

		// webhook
		{"a missing webhook client CA file is reported with its path", func(c *C) { c.Webhook.ClientCAFile = filepath.Join(f.dir, "clients.crt") }, []want{{"webhook.clientCAFile", "clients.crt\": cannot be read"}}},
		{"a webhook client CA file without a certificate is refused", func(c *C) { c.Webhook.ClientCAFile = f.secret }, []want{{"webhook.clientCAFile", "holds no PEM certificate"}}},
		{"allowed client names need a client CA", func(c *C) { c.Webhook.ClientCAFile = "" }, []want{{"webhook.clientCAFile", "allowedClientNames needs the CA"}}},
		{"an allowed client name is not empty", func(c *C) { c.Webhook.AllowedClientNames = []string{""} }, []want{{"webhook.allowedClientNames[0]", "client names cannot be empty"}}},

		// portal
		{"a negative session idle timeout is refused", func(c *C) { c.Portal.SessionIdleTimeout.Duration = -1 }, []want{{"portal.sessionIdleTimeout", "must be positive"}}},
		{"a negative session lifetime is refused", func(c *C) { c.Portal.SessionMaxLifetime.Duration = -1 }, []want{{"portal.sessionMaxLifetime", "must be positive"}}},
		{"a negative refresh reuse grace is refused", func(c *C) { c.Portal.RefreshReuseGrace.Duration = -1 }, []want{{"portal.refreshReuseGrace", "must be positive"}}},
		{"a session idle timeout above the session lifetime is refused", func(c *C) { c.Portal.SessionIdleTimeout.Duration = 200 * time.Hour }, []want{{"portal.sessionIdleTimeout", "must not exceed portal.sessionMaxLifetime (168h0m0s)"}}},
		{"a login start limit needs a burst and a refill time", func(c *C) {
			c.Portal.LoginStartLimits = &ClientRateLimits{Global: &RateLimit{Burst: 0, Every: metav1.Duration{Duration: -time.Second}}}
		}, []want{
			{"portal.loginStartLimits.perClient.burst", "must be between 1 and 1000000"},
			{"portal.loginStartLimits.perClient.every", "must be more than 0"},
			{"portal.loginStartLimits.global.burst", "must be between 1 and 1000000"},
			{"portal.loginStartLimits.global.every", "must be more than 0"},
		}},
		{"a client's login start bucket must refill before it is forgotten", func(c *C) {
			c.Portal.LoginStartLimits = &ClientRateLimits{PerClient: RateLimit{Burst: 20, Every: metav1.Duration{Duration: time.Minute}}}
		}, []want{{"portal.loginStartLimits.perClient", "burst × every must be at most 15m0s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid(f)
			tt.mutate(c)
			checkErrors(t, Validate(c), tt.want...)
		})
	}
}

func TestValidateChecksURLs(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want string // "" if valid
	}{
		{"an https URL with a host is valid", "https://portcullis.example.com", ""},
		{"an https URL with an IP and port is valid", "https://127.0.0.1:8443", ""},
		{"an https URL with a path is valid", "https://example.com/portcullis", ""},
		{"an empty URL is required", "", "Required value: set an https:// URL"},
		{"an http URL is refused", "http://portcullis.example.com", "must be an https:// URL"},
		{"a URL without a scheme is refused", "portcullis.example.com", "must be an https:// URL"},
		{"a URL without a host is refused", "https://", "must name a host"},
		{"a URL with only a port is refused", "https://:8443", "must name a host"},
		{"a URL with a path but no host is refused", "https:///portcullis", "must name a host"},
		{"a trailing slash is refused", "https://portcullis.example.com/", "remove the trailing '/'"},
		{"a trailing slash after a path is refused", "https://example.com/portcullis/", "remove the trailing '/'"},
		{"a query is refused", "https://portcullis.example.com?tenant=a", "must not carry a query"},
		{"an empty query is refused", "https://portcullis.example.com?", "must not carry a query"},
		{"a fragment is refused", "https://portcullis.example.com#top", "or a fragment"},
		{"an empty fragment is refused", "https://portcullis.example.com#", "or a fragment"},
		{"user info is refused", "https://admin@portcullis.example.com", "must not carry user info"},
		{"a password is refused and not repeated", "https://admin:hunter2@portcullis.example.com", `"https://admin:xxxxx@portcullis.example.com": must not carry user info`},
		{"a malformed URL is refused", "https://exa mple.com", "not a URL: invalid character"},
		{"a malformed URL's password is not repeated", "https://admin:hunter2@exa mple.com/x", `"https://admin:xxxxx@exa mple.com/x": not a URL`},
	}
	f := newFiles(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fld := range []string{"issuerURL", "clusters[1].upstream.server"} {
				c := valid(f)
				if fld == "issuerURL" {
					c.IssuerURL = tt.url
				} else {
					c.Clusters[1].Upstream.Server = tt.url
				}
				errs := Validate(c)
				if tt.want == "" {
					checkErrors(t, errs)
					continue
				}
				checkErrors(t, errs, want{fld, tt.want})
				if strings.Contains(errs.ToAggregate().Error(), "hunter2") {
					t.Errorf("the error repeats the password: %v", errs)
				}
			}
		})
	}
}

func TestValidateReportsAllProblemsAtOnce(t *testing.T) {
	f := newFiles(t)
	c := valid(f)
	c.IssuerURL = "http://portcullis.example.com"
	c.Tokens.CacheSize = -5
	c.IdentityProviders[0].ClaimMappings.Username.Expression = "claims.email +"
	c.Clusters[1].Name = "dev"
	c.Webhook.ClientCAFile = filepath.Join(f.dir, "missing.crt")
	checkErrors(t, Validate(c),
		want{"issuerURL", "https"},
		want{"tokens.cacheSize", "between"},
		want{"identityProviders[0].claimMappings.username", "claim and expression can't both be set"},
		want{"clusters[1].name", "Duplicate value"},
		want{"webhook.clientCAFile", "cannot be read"},
	)
}

func TestSetDefaults(t *testing.T) {
	c := &PortcullisConfiguration{
		IdentityProviders: []IdentityProvider{{Name: "dex", ClientID: "portcullis", UserInfo: &UserInfoConfig{}}, {Name: "ext", Issuer: apiserverv1.Issuer{Audiences: []string{"a"}}, ClientID: "b"}},
		Clusters:          []Cluster{{Name: "dev"}},
	}
	SetDefaults(c)
	checks := []struct {
		name      string
		got, want any
	}{
		{"store.type", c.Store.Type, "bolt"},
		{"store.path", c.Store.Path, "/var/lib/portcullis/state.db"},
		{"tokens.lifetime", c.Tokens.Lifetime.Duration, 15 * time.Minute},
		{"tokens.maxLifetime", c.Tokens.MaxLifetime.Duration, 24 * time.Hour},
		{"tokens.keyRotationPeriod", c.Tokens.KeyRotationPeriod.Duration, 24 * time.Hour},
		{"tokens.cacheSize", c.Tokens.CacheSize, 10000},
		{"identityProviders[0].displayName", c.IdentityProviders[0].DisplayName, "dex"},
		{"identityProviders[0].issuer.audiences", strings.Join(c.IdentityProviders[0].Issuer.Audiences, ","), "portcullis"},
		{"identityProviders[1].issuer.audiences (set, kept)", strings.Join(c.IdentityProviders[1].Issuer.Audiences, ","), "a"},
		{"identityProviders[0].scopes", strings.Join(c.IdentityProviders[0].Scopes, ","), "openid,email,profile,offline_access"},
		{"identityProviders[0].userInfo.groupsClaim", c.IdentityProviders[0].UserInfo.GroupsClaim, "groups"},
		{"identityProviders[1].userInfo (unset, stays unset)", c.IdentityProviders[1].UserInfo == nil, true},
		{"clusters[0].apiAudiences", strings.Join(c.Clusters[0].APIAudiences, ","), "https://kubernetes.default.svc"},
		{"portal.sessionIdleTimeout", c.Portal.SessionIdleTimeout.Duration, 12 * time.Hour},
		{"portal.sessionMaxLifetime", c.Portal.SessionMaxLifetime.Duration, 168 * time.Hour},
		{"portal.refreshReuseGrace", c.Portal.RefreshReuseGrace.Duration, 30 * time.Second},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	// Defaults are copies: changing one cluster's must not change another's.
	c.Clusters[0].APIAudiences[0] = "changed"
	c.IdentityProviders[0].Scopes[0] = "changed"
	if DefaultAPIAudiences[0] == "changed" || DefaultScopes[0] == "changed" {
		t.Error("SetDefaults shares the default slices")
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
