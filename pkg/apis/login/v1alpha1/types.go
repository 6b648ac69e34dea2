package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TokenCredentialRequest exchanges a credential Portcullis trusts for a
// short-lived Portcullis cluster token, without a browser: for CI systems
// and other tools. The credential is checked exactly as the TokenReview
// webhook checks bearer tokens for the same cluster (issuer, audience, claim
// mappings, group mappings, central policy).
//
// It is create-only and stores nothing. Anyone may create one, including
// anonymous clients (the token inside is the credential); the server limits
// how often each client may.
type TokenCredentialRequest struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. Only name and generateName are read; the
	// object is never stored.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the credential to exchange and the cluster to exchange it for.
	Spec TokenCredentialRequestSpec `json:"spec"`

	// Status is the outcome: a token, or a reason and message.
	// +optional
	Status TokenCredentialRequestStatus `json:"status,omitempty"`
}

// TokenCredentialRequestSpec is what a client asks for.
type TokenCredentialRequestSpec struct {
	// Token is an ID token of an identity provider configured with
	// acceptIDTokens, or a Portcullis cluster token for the same cluster
	// (which keeps its login session: revoking the session revokes the new
	// token too). It is never echoed back, logged or audited.
	Token string `json:"token"`

	// Cluster is the name of the cluster (clusters[].name in Portcullis's
	// configuration) the new token is for; it becomes the token's audience.
	// It may be left out when Portcullis knows exactly one cluster.
	// +optional
	Cluster string `json:"cluster,omitempty"`
}

// TokenCredentialRequestReason says why an exchange gave no token.
type TokenCredentialRequestReason string

// Reasons of a failed exchange.
const (
	// ReasonAuthenticationFailed: the token was rejected (unknown issuer,
	// bad signature, expired, wrong audience, revoked, refused by a claim
	// validation rule...).
	ReasonAuthenticationFailed TokenCredentialRequestReason = "AuthenticationFailed"
	// ReasonPolicyDenied: the token is good but the central policy does not
	// admit the user to the cluster.
	ReasonPolicyDenied TokenCredentialRequestReason = "PolicyDenied"
	// ReasonUnknownCluster: no cluster of that name is configured.
	ReasonUnknownCluster TokenCredentialRequestReason = "UnknownCluster"
	// ReasonInternalError: Portcullis could not decide or mint (its store
	// or an identity provider is unavailable); retrying later may succeed.
	ReasonInternalError TokenCredentialRequestReason = "InternalError"
)

// TokenCredentialRequestStatus is the outcome of an exchange. Exactly one of
// token (with expirationTimestamp) and reason (with message) is set.
type TokenCredentialRequestStatus struct {
	// Token is the Portcullis cluster token (a JWT whose audience is the
	// cluster), for use as a bearer token against the cluster.
	// +optional
	Token string `json:"token,omitempty"`

	// ExpirationTimestamp is when Token stops being valid.
	// +optional
	ExpirationTimestamp *metav1.Time `json:"expirationTimestamp,omitempty"`

	// Reason is a machine-readable reason for a failed exchange.
	// +optional
	Reason TokenCredentialRequestReason `json:"reason,omitempty"`

	// Message is a human-readable explanation of a failed exchange.
	// +optional
	Message string `json:"message,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// WhoAmIRequest returns the caller as Portcullis sees them: as kube-apiserver
// authenticated them when the request came through it (aggregated API), or as
// Portcullis authenticated their token when it came directly. It is
// create-only and stores nothing.
type WhoAmIRequest struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; ignored.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is empty.
	// +optional
	Spec WhoAmIRequestSpec `json:"spec,omitempty"`

	// Status is filled by the server.
	// +optional
	Status WhoAmIRequestStatus `json:"status,omitempty"`
}

// WhoAmIRequestSpec is empty: the request itself is the question.
type WhoAmIRequestSpec struct{}

// WhoAmIRequestStatus is the answer.
type WhoAmIRequestStatus struct {
	// UserInfo is the caller.
	UserInfo UserInfo `json:"userInfo"`
}

// UserInfo is a Kubernetes user, as in authentication.k8s.io/v1.
type UserInfo struct {
	// Username is the user's name.
	Username string `json:"username"`
	// UID is the user's stable identifier, if known.
	// +optional
	UID string `json:"uid,omitempty"`
	// Groups are the user's groups.
	// +optional
	// +listType=atomic
	Groups []string `json:"groups,omitempty"`
	// Extra is further information the authenticator provided, e.g.
	// portcullis.dev/idp (the identity provider) or portcullis.dev/sid (the
	// login session).
	// +optional
	Extra map[string]ExtraValue `json:"extra,omitempty"`
}

// ExtraValue is the values of one extra key.
// +listType=atomic
type ExtraValue []string

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Session is a user's login session in Portcullis's store, for
// administrators: list them to see who is logged in, delete one to revoke
// it. Deleting a session revokes every cluster token minted for it (their
// "sid" claim) and ends its refresh token; the revocation is audited.
//
// Sessions are created by logging in (the portal, the CLI), never through
// this API.
type Session struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata: the name is the session ID (the "sid" claim
	// of its tokens), creationTimestamp is the login time.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is who logged in.
	Spec SessionSpec `json:"spec"`

	// Status is the session's use and lifetime.
	// +optional
	Status SessionStatus `json:"status,omitempty"`
}

// SessionSpec is the identity a session was opened for, as resolved at login
// (and again at each refresh).
type SessionSpec struct {
	// Username is the Kubernetes user name.
	Username string `json:"username"`
	// UID is the Kubernetes user UID.
	// +optional
	UID string `json:"uid,omitempty"`
	// Groups are the user's groups at the last refresh.
	// +optional
	// +listType=atomic
	Groups []string `json:"groups,omitempty"`
	// Email is the user's verified email address.
	// +optional
	Email string `json:"email,omitempty"`
	// IdentityProvider is the identity provider the user logged in with.
	// +optional
	IdentityProvider string `json:"identityProvider,omitempty"`
	// ClientAddress is the address the login came from.
	// +optional
	ClientAddress string `json:"clientAddress,omitempty"`
}

// SessionStatus is how a session has been used and when it ends.
type SessionStatus struct {
	// LastUsedTime is the last refresh.
	// +optional
	LastUsedTime *metav1.Time `json:"lastUsedTime,omitempty"`
	// IdleExpirationTimestamp is when the session ends unless refreshed
	// before (unset when sessions do not expire when idle).
	// +optional
	IdleExpirationTimestamp *metav1.Time `json:"idleExpirationTimestamp,omitempty"`
	// ExpirationTimestamp is when the session ends, whatever happens.
	// +optional
	ExpirationTimestamp *metav1.Time `json:"expirationTimestamp,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// SessionList is a list of sessions.
type SessionList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the sessions.
	Items []Session `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TokenRevocation revokes one cluster token by its ID (its "jti" claim), for
// administrators: for tokens that belong to no login session, which deleting
// a Session cannot revoke (break-glass `portcullis-server mint`, tokens
// exchanged for an identity provider's ID token), or to revoke one token of
// a session without ending it. The TokenReview webhook, the proxy and the
// exchange refuse the token from then on, on every replica (the revocation
// is kept in the shared state store until every token with that ID has
// expired). Every revocation is audited.
//
// It is create-only: the object is not kept (the revocation is).
type TokenRevocation struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. Only name and generateName are read.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the token to revoke and why.
	Spec TokenRevocationSpec `json:"spec"`

	// Status is the revocation as kept.
	// +optional
	Status TokenRevocationStatus `json:"status,omitempty"`
}

// TokenRevocationSpec names the token to revoke.
type TokenRevocationSpec struct {
	// TokenID is the token's "jti" claim, as recorded in the audit log of
	// the mint or exchange that issued it (annotation portcullis.dev/jti).
	TokenID string `json:"tokenID"`
	// Reason says why, for the audit log.
	Reason string `json:"reason"`
}

// TokenRevocationStatus is the revocation as the server keeps it.
type TokenRevocationStatus struct {
	// RevokedAt is when the token was revoked.
	// +optional
	RevokedAt *metav1.Time `json:"revokedAt,omitempty"`
	// ExpirationTimestamp is when the revocation is forgotten: by then any
	// token with this ID has expired (the longest token lifetime Portcullis
	// issues, from now, plus a margin for clock skew).
	// +optional
	ExpirationTimestamp *metav1.Time `json:"expirationTimestamp,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// AccessRequest is a user's request for extra groups on one cluster for a
// while (just-in-time access). The cluster's justInTime policy in
// Portcullis's configuration says which groups may be asked for, for how
// long, and who decides; approvers decide with AccessRequestDecisions. An
// approved request becomes an AccessGrant of the same name.
//
// Anyone authenticated may create one for themselves; requesters see their
// own requests, approvers those they may decide.
type AccessRequest struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. The server names the request; name and
	// generateName are read as a prefix hint only.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is what is asked for.
	Spec AccessRequestSpec `json:"spec"`

	// Status is where the request stands.
	// +optional
	Status AccessRequestStatus `json:"status,omitempty"`
}

// AccessRequestSpec is what a user asks for.
type AccessRequestSpec struct {
	// Cluster is the Portcullis cluster name.
	Cluster string `json:"cluster"`
	// Groups are the groups asked for; each must be requestable on the
	// cluster.
	// +listType=atomic
	Groups []string `json:"groups"`
	// Duration is how long the groups are wanted, from approval; at most
	// the cluster's justInTime.maxDuration.
	Duration metav1.Duration `json:"duration"`
	// Reason says why (an incident or ticket), for the approvers and the
	// audit log.
	Reason string `json:"reason"`
	// Username is the requester, set by the server from the authenticated
	// user; a different value is refused.
	// +optional
	Username string `json:"username,omitempty"`
}

// AccessRequestPhase is where a request stands.
type AccessRequestPhase string

// Phases of an AccessRequest.
const (
	AccessRequestPending  AccessRequestPhase = "Pending"
	AccessRequestApproved AccessRequestPhase = "Approved"
	AccessRequestDenied   AccessRequestPhase = "Denied"
	AccessRequestExpired  AccessRequestPhase = "Expired"
	AccessRequestRevoked  AccessRequestPhase = "Revoked"
)

// AccessRequestStatus is where a request stands.
type AccessRequestStatus struct {
	// Phase is Pending, Approved (the grant exists), Denied, Expired
	// (nobody decided in time, or the grant's window has passed) or
	// Revoked.
	// +optional
	Phase AccessRequestPhase `json:"phase,omitempty"`
	// Approvals so far.
	// +optional
	// +listType=atomic
	Approvals []AccessApproval `json:"approvals,omitempty"`
	// ApprovalsRequired is how many approvals the policy asks for.
	// +optional
	ApprovalsRequired int32 `json:"approvalsRequired,omitempty"`
	// DecidedBy is who moved the request out of Pending.
	// +optional
	DecidedBy string `json:"decidedBy,omitempty"`
	// DecisionTime is when.
	// +optional
	DecisionTime *metav1.Time `json:"decisionTime,omitempty"`
	// DecisionReason is what they said.
	// +optional
	DecisionReason string `json:"decisionReason,omitempty"`
	// PendingUntil is when a request nobody decided expires.
	// +optional
	PendingUntil *metav1.Time `json:"pendingUntil,omitempty"`
	// NotBefore and ExpirationTimestamp are the grant's window.
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// +optional
	ExpirationTimestamp *metav1.Time `json:"expirationTimestamp,omitempty"`
}

// AccessApproval is one approver's yes.
type AccessApproval struct {
	// User is the approver.
	User string `json:"user"`
	// Time is when they approved.
	Time metav1.Time `json:"time"`
	// Reason is what they said.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// AccessRequestList is a list of access requests.
type AccessRequestList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the requests.
	Items []AccessRequest `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// AccessRequestDecision approves or denies an AccessRequest. Only the
// cluster's approvers may, and never for their own request unless the
// policy allows self-approval. It is create-only: the object is not kept
// (the decision is, in the request's status, and in the audit log).
type AccessRequestDecision struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. Only name and generateName are read.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the decision.
	Spec AccessRequestDecisionSpec `json:"spec"`

	// Status is the request after the decision.
	// +optional
	Status AccessRequestStatus `json:"status,omitempty"`
}

// AccessRequestDecisionSpec is one approver's decision.
type AccessRequestDecisionSpec struct {
	// RequestName is the AccessRequest decided.
	RequestName string `json:"requestName"`
	// Decision is Approve or Deny.
	Decision string `json:"decision"`
	// Reason says why, for the requester and the audit log.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// AccessGrant is a time-bound grant: extra groups for a user on a cluster
// until it expires. Approving an AccessRequest creates one of the same
// name; members of the cluster's justInTime.directGrantGroups may create
// one directly (break-glass). Deleting one revokes it. Grantees see their
// own; approvers and direct granters see their clusters'.
type AccessGrant struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the grant.
	Spec AccessGrantSpec `json:"spec"`

	// Status is the grant's window.
	// +optional
	Status AccessGrantStatus `json:"status,omitempty"`
}

// AccessGrantSpec is who gets what where.
type AccessGrantSpec struct {
	// Username is the grantee.
	Username string `json:"username"`
	// Cluster is the Portcullis cluster name.
	Cluster string `json:"cluster"`
	// Groups are the groups granted.
	// +listType=atomic
	Groups []string `json:"groups"`
	// Duration is the window's length (on create).
	// +optional
	Duration metav1.Duration `json:"duration,omitempty"`
	// Reason says why.
	Reason string `json:"reason"`
}

// AccessGrantStatus is a grant's window and origin.
type AccessGrantStatus struct {
	// GrantedBy is the last approver, or the direct granter.
	// +optional
	GrantedBy string `json:"grantedBy,omitempty"`
	// NotBefore is when the grant starts.
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// ExpirationTimestamp is when it ends.
	// +optional
	ExpirationTimestamp *metav1.Time `json:"expirationTimestamp,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// AccessGrantList is a list of grants.
type AccessGrantList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the grants.
	Items []AccessGrant `json:"items"`
}
