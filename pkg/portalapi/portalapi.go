// Package portalapi is the wire format of the login portal's JSON API
// (pkg/portal serves it, the portcullis CLI in pkg/cli calls it): the
// answers of /portal/api/..., /device/code and /device/token, and their
// errors. Requests are form-encoded (RFC 6749) and have no types here.
//
// It is a leaf: it imports nothing of Portcullis, so the CLI does not pull
// in the server.
package portalapi

import "time"

// The API's paths, which the portal serves and the CLI calls.
const (
	// PathToken redeems the CLI's one-time login code (loopback flow).
	PathToken = "/portal/api/token"
	// PathRefresh rotates a refresh token and mints a cluster token.
	PathRefresh = "/portal/api/refresh"
	// PathSession describes a refresh token's session without using it.
	PathSession = "/portal/api/session"
	// PathLogout ends a session.
	PathLogout = "/portal/api/logout"
	// PathPassword logs in to an LDAP identity provider with a user name
	// and password (JSON or form: username, password, idp, cluster); the
	// answer is a TokenResponse, as for PathToken.
	PathPassword = "/portal/api/password"
	// PathClusters lists the clusters and identity providers.
	PathClusters = "/portal/api/clusters"
	// PathCLIComplete is where the CLI sends the browser once it has its
	// tokens.
	PathCLIComplete = "/portal/cli-complete"
	// PathDeviceCode starts a device login (RFC 8628 §3.1).
	PathDeviceCode = "/device/code"
	// PathDeviceToken polls a device login (RFC 8628 §3.4).
	PathDeviceToken = "/device/token"
)

// TokenResponse is the answer of /portal/api/token, /portal/api/refresh and
// /device/token: an RFC 6749 §5.1 token response (access_token is the token
// of the cluster asked for) with Portcullis's additions.
type TokenResponse struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// Cluster is the cluster of AccessToken.
	Cluster string `json:"cluster,omitempty"`
	// ClusterTokens are the tokens minted, by cluster.
	ClusterTokens map[string]ClusterToken `json:"cluster_tokens,omitempty"`
	Session       SessionInfo             `json:"session"`
}

// ClusterToken is one cluster token.
type ClusterToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SessionInfo describes a session to its owner: the answer of
// /portal/api/session, and the session of a TokenResponse.
type SessionInfo struct {
	ID               string    `json:"id"`
	Username         string    `json:"username"`
	UID              string    `json:"uid,omitempty"`
	Email            string    `json:"email,omitempty"`
	IdentityProvider string    `json:"identity_provider,omitempty"`
	Groups           []string  `json:"groups,omitempty"`
	Clusters         []string  `json:"clusters,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	ExpiresAt        time.Time `json:"expires_at"`
	// IdleExpiresAt is the zero time (sent as 0001-01-01T00:00:00Z) when the
	// session has no idle timeout, or reaches ExpiresAt before it.
	IdleExpiresAt time.Time `json:"idle_expires_at"`
}

// LogoutResponse is the answer of /portal/api/logout.
type LogoutResponse struct {
	// Revoked is false when the refresh token belonged to no live session.
	Revoked bool `json:"revoked"`
}

// ClusterInfo describes a cluster for `portcullis kubeconfig`.
type ClusterInfo struct {
	Name string `json:"name"`
	// Mode is "proxy" (kubectl talks to Portcullis, Server says where) or
	// "webhook" (kubectl talks to the cluster's own API server, which asks
	// Portcullis).
	Mode string `json:"mode"`
	// Server is the URL kubectl sends requests to: Portcullis's
	// /clusters/<name> in proxy mode; in webhook mode the cluster's own API
	// server, when the configuration gives it (clusters[].apiServer).
	Server string `json:"server,omitempty"`
	// CertificateAuthorityData is the PEM CA of Server in webhook mode
	// (empty: the system's roots).
	CertificateAuthorityData []byte `json:"certificate_authority_data,omitempty"`
}

// ClustersResponse is the answer of /portal/api/clusters.
type ClustersResponse struct {
	Issuer            string        `json:"issuer"`
	Clusters          []ClusterInfo `json:"clusters"`
	IdentityProviders []IdPInfo     `json:"identity_providers"`
}

// IdPInfo names an identity provider.
type IdPInfo struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	// Type is IdPTypeOIDC (log in in a browser) or IdPTypeLDAP (log in
	// with a user name and password at PathPassword); empty from servers
	// that predate it, meaning OIDC.
	Type string `json:"type,omitempty"`
}

// The kinds of identity provider in IdPInfo.Type.
const (
	IdPTypeOIDC = "oidc"
	IdPTypeLDAP = "ldap"
)

// DeviceCodeResponse is RFC 8628 §3.2's device authorization response, the
// answer of /device/code.
type DeviceCodeResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// OAuthError is an RFC 6749 §5.2 error response, the answer of every
// endpoint that fails.
type OAuthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}
