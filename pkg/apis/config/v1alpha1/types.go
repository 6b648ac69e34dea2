package v1alpha1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
)

// GroupName is the API group of the configuration file.
const GroupName = "config.portcullis.dev"

// SchemeGroupVersion is the group and version of this package's types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// PortcullisConfiguration is the whole configuration of portcullis-server.
type PortcullisConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// IssuerURL is the https URL at which clients and kube-apiservers reach
	// Portcullis. It is the "iss" of every cluster token, and the base of the
	// OpenID discovery document (IssuerURL + "/.well-known/openid-configuration").
	IssuerURL string `json:"issuerURL"`

	// Store is where signing keys, sessions, revocations and grants are kept.
	Store StoreConfig `json:"store"`

	// Tokens configures cluster tokens and signing keys.
	Tokens TokensConfig `json:"tokens"`

	// IdentityProviders are the upstream OpenID Connect issuers users log in with.
	IdentityProviders []IdentityProvider `json:"identityProviders,omitempty"`

	// GroupMappings add groups to users, for IdPs that send none (or not the
	// ones RBAC needs). Every mapping that matches adds its groups.
	GroupMappings []GroupMapping `json:"groupMappings,omitempty"`

	// Clusters are the Kubernetes clusters Portcullis authenticates for.
	Clusters []Cluster `json:"clusters"`

	// Webhook configures the TokenReview webhook that kube-apiserver calls.
	Webhook WebhookConfig `json:"webhook"`

	// Portal configures the browser login portal and sessions.
	Portal PortalConfig `json:"portal"`

	// Notifications configures outgoing notifications of access requests.
	Notifications *NotificationsConfig `json:"notifications,omitempty"`
}

// NotificationsConfig says where Portcullis announces access requests and
// their decisions (e.g. to a chat bot).
type NotificationsConfig struct {
	// Webhook receives a JSON POST for every access request transition.
	Webhook *NotificationWebhook `json:"webhook,omitempty"`
}

// NotificationWebhook is an https endpoint notified of access request
// transitions, with retries. It is told of transitions, never asked: a
// receiver that is down delays nothing and decides nothing.
type NotificationWebhook struct {
	// URL is the https URL POSTed to.
	URL string `json:"url"`
	// CertificateAuthorityFile is URL's PEM CA. Default: system roots.
	CertificateAuthorityFile string `json:"certificateAuthorityFile,omitempty"`
	// MaxAttempts bounds the attempts per notification (1-10, default 5),
	// with exponential backoff from 1s after a network error, a 5xx or a 429.
	MaxAttempts int `json:"maxAttempts,omitempty"`
}

// StoreConfig selects the state store backend.
type StoreConfig struct {
	// Type is the backend: "bolt" (an embedded file, the default; one
	// replica) or "kubernetes" (Secrets and ConfigMaps in one namespace of
	// the cluster Portcullis runs in, shared by every replica).
	Type string `json:"type,omitempty"`
	// Path is the file of the bolt backend. Default /var/lib/portcullis/state.db.
	// Only for type bolt.
	Path string `json:"path,omitempty"`
	// Kubernetes configures the kubernetes backend. Only for type kubernetes;
	// may be left out to use the pod's own namespace and service account.
	Kubernetes *KubernetesStoreConfig `json:"kubernetes,omitempty"`
}

// KubernetesStoreConfig configures the kubernetes store backend.
type KubernetesStoreConfig struct {
	// Namespace holds the state. Default: the namespace of the pod
	// Portcullis runs in (required when Kubeconfig is set).
	Namespace string `json:"namespace,omitempty"`
	// Kubeconfig is the path of a kubeconfig file, for running outside the
	// cluster. Empty: the pod's service account (in-cluster configuration).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Context is the kubeconfig context to use. Default: its current context.
	Context string `json:"context,omitempty"`
}

// TokensConfig configures Portcullis's own cluster tokens.
type TokensConfig struct {
	// Lifetime is the default lifetime of a cluster token. Default 15m.
	Lifetime metav1.Duration `json:"lifetime,omitempty"`
	// MaxLifetime bounds every token Portcullis mints, including offline
	// mints and per-cluster overrides. Default 24h.
	MaxLifetime metav1.Duration `json:"maxLifetime,omitempty"`
	// KeyRotationPeriod is how often a new signing key becomes active.
	// Retired keys keep verifying for MaxLifetime. Default 24h.
	KeyRotationPeriod metav1.Duration `json:"keyRotationPeriod,omitempty"`
	// CacheSize bounds the number of verified tokens remembered. Default 10000.
	CacheSize int `json:"cacheSize,omitempty"`
}

// IdentityProvider is one upstream OpenID Connect issuer.
type IdentityProvider struct {
	// Name identifies the IdP in URLs, sessions, tokens ("idp" claim) and logs.
	Name string `json:"name"`
	// DisplayName is shown on the login page. Default: Name.
	DisplayName string `json:"displayName,omitempty"`

	// Issuer, ClaimValidationRules, ClaimMappings and UserValidationRules have
	// the meaning (and are evaluated by the same code) as in kube-apiserver's
	// AuthenticationConfiguration (apiserver.config.k8s.io/v1) jwt entries.
	// issuer.audiences defaults to [clientID].
	Issuer               apiserverv1.Issuer                `json:"issuer"`
	ClaimValidationRules []apiserverv1.ClaimValidationRule `json:"claimValidationRules,omitempty"`
	ClaimMappings        apiserverv1.ClaimMappings         `json:"claimMappings"`
	UserValidationRules  []apiserverv1.UserValidationRule  `json:"userValidationRules,omitempty"`

	// CertificateAuthorityFile is a PEM file of CAs to trust for the issuer,
	// as an alternative to issuer.certificateAuthority. Default: system roots.
	CertificateAuthorityFile string `json:"certificateAuthorityFile,omitempty"`

	// ClientID and ClientSecretFile are Portcullis's OAuth2 client at the IdP,
	// used by the login portal. The secret file is re-read on each use.
	ClientID         string `json:"clientID,omitempty"`
	ClientSecretFile string `json:"clientSecretFile,omitempty"`
	// Scopes requested at login. Default [openid, email, profile, offline_access].
	Scopes []string `json:"scopes,omitempty"`

	// AcceptIDTokens lets the IdP's own ID tokens be used directly as bearer
	// tokens (webhook, proxy, credential exchange). Default false.
	AcceptIDTokens bool `json:"acceptIDTokens,omitempty"`

	// UserInfo, when set, makes Portcullis ask the IdP's userinfo endpoint at
	// login and refresh, and take groups from its GroupsClaim.
	UserInfo *UserInfoConfig `json:"userInfo,omitempty"`

	// LDAP, when set, makes this identity provider an LDAP directory
	// instead of an OpenID Connect issuer (see LDAPConfig); the OpenID
	// Connect fields above must then be left out.
	LDAP *LDAPConfig `json:"ldap,omitempty"`
}

// UserInfoConfig configures the userinfo lookup.
type UserInfoConfig struct {
	// GroupsClaim is the userinfo claim holding groups. Default "groups".
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// GroupsPrefix is prepended to each group from userinfo.
	GroupsPrefix string `json:"groupsPrefix,omitempty"`
}

// GroupMapping adds Groups to every user that Match matches.
type GroupMapping struct {
	Match GroupMatch `json:"match"`
	// Groups are added to the matching users (after any IdP prefix).
	Groups []string `json:"groups"`
}

// GroupMatch matches a user by any of its lists (an OR). Comparisons of
// emails and domains are case-insensitive; usernames and groups are exact.
type GroupMatch struct {
	Users        []string `json:"users,omitempty"`
	Emails       []string `json:"emails,omitempty"`
	EmailDomains []string `json:"emailDomains,omitempty"`
	// Groups matches users who already have one of these (mapped) groups.
	Groups []string `json:"groups,omitempty"`
	// IdentityProviders limits the mapping to users of these IdPs.
	IdentityProviders []string `json:"identityProviders,omitempty"`
}

// Cluster is one Kubernetes cluster Portcullis authenticates for.
type Cluster struct {
	// Name identifies the cluster in URLs (/clusters/<name>, the webhook path)
	// and is the "aud" of its cluster tokens.
	Name string `json:"name"`
	// TokenLifetime overrides tokens.lifetime for this cluster.
	TokenLifetime *metav1.Duration `json:"tokenLifetime,omitempty"`
	// APIAudiences are the kube-apiserver's own API audiences (its
	// --api-audiences, by default its --service-account-issuer) that a
	// TokenReview may ask for in spec.audiences. Default
	// [https://kubernetes.default.svc].
	APIAudiences []string `json:"apiAudiences,omitempty"`
	// Access says who may reach this cluster. Nobody may when it is empty.
	Access AccessPolicy `json:"access"`
	// Upstream is the cluster's API server, for the impersonating proxy.
	Upstream *Upstream `json:"upstream,omitempty"`
	// APIServer is where users' kubectl reaches the API server of a cluster
	// in webhook mode (no upstream), so the portal's kubeconfig download and
	// `portcullis kubeconfig` can write a complete kubeconfig for it.
	APIServer *APIServer `json:"apiServer,omitempty"`
	// JustInTime lets users ask for extra groups on this cluster for a
	// while, with someone else's approval. Nil: no requests are accepted.
	JustInTime *JustInTimeAccess `json:"justInTime,omitempty"`
}

// JustInTimeAccess is a cluster's policy for access requests and time-bound
// grants. Who decides is read from here on every request (so a reload
// applies at once), never from anything the requester sends.
type JustInTimeAccess struct {
	// RequestableGroups are the groups a user may ask for. Required.
	RequestableGroups []string `json:"requestableGroups"`
	// MaxDuration is the longest window a request may ask for.
	// Default DefaultJustInTimeMaxDuration (1h); at most 7 days.
	MaxDuration metav1.Duration `json:"maxDuration,omitempty"`
	// Approvers are the users and groups who may approve or deny.
	Approvers Approvers `json:"approvers"`
	// ApprovalsRequired is how many distinct approvers must approve.
	// Default 1.
	ApprovalsRequired int `json:"approvalsRequired,omitempty"`
	// AllowSelfApproval lets an approver approve their own request.
	// Default false: the requester's approval never counts.
	AllowSelfApproval bool `json:"allowSelfApproval,omitempty"`
	// DirectGrantGroups are groups whose members may grant requestable
	// groups to anyone, themselves included, without a request
	// (break-glass). Every such grant is audited like an approval.
	DirectGrantGroups []string `json:"directGrantGroups,omitempty"`
}

// Approvers names who may decide access requests.
type Approvers struct {
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// APIServer is a webhook-mode cluster's API server as its users reach it.
type APIServer struct {
	// URL is the https URL kubectl sends requests to.
	URL string `json:"url"`
	// CertificateAuthorityFile is the PEM CA of URL, written into users'
	// kubeconfigs. Default: none (kubectl then uses the system's roots).
	CertificateAuthorityFile string `json:"certificateAuthorityFile,omitempty"`
}

// AccessPolicy admits a user who matches any of its lists.
type AccessPolicy struct {
	// AllUsers admits every authenticated user.
	AllUsers     bool     `json:"allUsers,omitempty"`
	Users        []string `json:"users,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	EmailDomains []string `json:"emailDomains,omitempty"`
}

// Upstream is how the impersonating proxy reaches a cluster's API server,
// with exactly one credential: TokenFile (with Server), Kubeconfig or
// InCluster.
type Upstream struct {
	// Server is the https URL of the API server. Required with TokenFile;
	// with Kubeconfig or InCluster the address comes from there.
	Server string `json:"server,omitempty"`
	// CertificateAuthorityFile is the PEM CA of Server. Default: system
	// roots. Only with TokenFile.
	CertificateAuthorityFile string `json:"certificateAuthorityFile,omitempty"`
	// TokenFile holds the bearer token Portcullis uses upstream (e.g. a
	// projected service-account token); re-read when it changes.
	TokenFile string `json:"tokenFile,omitempty"`
	// Kubeconfig is a kubeconfig file whose context gives the server, its
	// CA and the credential (exec plugin, client certificate, token or
	// token file), used through client-go.
	Kubeconfig *UpstreamKubeconfig `json:"kubeconfig,omitempty"`
	// InCluster uses Portcullis's own service account and the cluster's CA,
	// as client-go's in-cluster configuration reads them, for the cluster
	// Portcullis runs in.
	InCluster bool `json:"inCluster,omitempty"`
}

// UpstreamKubeconfig names a kubeconfig file and one of its contexts.
type UpstreamKubeconfig struct {
	// Path is the kubeconfig file; it, and the files it names, are re-read
	// when they change.
	Path string `json:"path"`
	// Context is the context to use. Default: the file's current context.
	Context string `json:"context,omitempty"`
}

// WebhookConfig configures the TokenReview endpoint.
type WebhookConfig struct {
	// ClientCAFile is the PEM CA that signed the client certificates
	// kube-apiservers present. Required when clusters use webhook mode.
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// AllowedClientNames, when set, restricts callers to certificates with
	// one of these common names.
	AllowedClientNames []string `json:"allowedClientNames,omitempty"`
}

// PortalConfig configures the login portal and its sessions.
type PortalConfig struct {
	// SessionIdleTimeout ends a session not refreshed for this long. Default 12h.
	SessionIdleTimeout metav1.Duration `json:"sessionIdleTimeout,omitempty"`
	// SessionMaxLifetime ends a session this long after login. Default 168h.
	SessionMaxLifetime metav1.Duration `json:"sessionMaxLifetime,omitempty"`
	// RefreshReuseGrace lets the previous refresh token be used again for
	// this long after rotation, so concurrent clients don't lock each other
	// out. Default 30s.
	RefreshReuseGrace metav1.Duration `json:"refreshReuseGrace,omitempty"`
	// LoginStartLimits bound how fast clients may start logins (GET
	// /login/<idp>) and ask for device codes (one counts as three starts).
	// Left out: each client address (IPv6 by /64) 20 at once, then one
	// every 6s; all clients together 500 at once, then 5 a second. Every
	// start keeps an entry in this process's logins in progress (at most
	// 10,000) for up to 10 minutes, and a CLI login's one-time code one
	// more for a minute: a global rate much above 15 a second lets a flood
	// fill it, and then logins fail until entries expire. Read at start.
	LoginStartLimits *ClientRateLimits `json:"loginStartLimits,omitempty"`
}

// ClientRateLimits are a token bucket per client address under one that all
// clients share.
type ClientRateLimits struct {
	// PerClient is each client address's bucket.
	PerClient RateLimit `json:"perClient"`
	// Global is the bucket all clients share. Left out: no bound but each
	// client's own.
	Global *RateLimit `json:"global,omitempty"`
}

// RateLimit is a token bucket: Burst at once, then one every Every.
type RateLimit struct {
	// Burst is how many at once (at least 1).
	Burst int `json:"burst"`
	// Every is how long one more takes to come back (more than 0).
	Every metav1.Duration `json:"every"`
}

// DeepCopyObject implements runtime.Object. The configuration is read once
// per (re)load, so a JSON round trip is cheap enough and cannot drift from
// the type the way a hand-written copy could.
func (c *PortcullisConfiguration) DeepCopyObject() runtime.Object {
	if c == nil {
		return nil
	}
	data, err := json.Marshal(c)
	if err != nil {
		panic("config: marshalling a PortcullisConfiguration cannot fail: " + err.Error())
	}
	out := &PortcullisConfiguration{}
	if err := json.Unmarshal(data, out); err != nil {
		panic("config: unmarshalling a marshalled PortcullisConfiguration cannot fail: " + err.Error())
	}
	return out
}

var (
	schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes, addDefaultingFuncs)
	// AddToScheme adds this package's types and defaults to a scheme.
	AddToScheme = schemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &PortcullisConfiguration{})
	return nil
}
