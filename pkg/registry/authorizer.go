package registry

import (
	"context"
	"slices"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// discoveryPaths are the discovery and OpenAPI documents a client needs to
// use the group (kubectl builds its REST mapping from them), readable by
// anyone, as an anonymous client must be able to find the exchange.
var discoveryPaths = map[string]bool{
	"/api":                      true,
	"/apis":                     true,
	"/version":                  true,
	"/openapi/v2":               true,
	"/openapi/v3":               true,
	groupPath:                   true,
	versionPath:                 true,
	"/openapi/v3" + versionPath: true,
}

const (
	groupPath   = "/apis/" + v1alpha1.GroupName
	versionPath = groupPath + "/v1alpha1"
)

// Authorizer allows anyone, anonymous clients included, to create
// TokenCredentialRequests (the token inside is the credential; each client
// is rate-limited) and to read the group's discovery documents; any
// authenticated user to create WhoAmIRequests. It has no opinion on anything
// else: Sessions are left to the delegated authorizer (the cluster's RBAC).
// Put it before the delegated authorizer in a union (or use
// WithPublicResources).
//
// When aggregated, kube-apiserver authorizes the request first: its RBAC
// must allow the callers too (artifacts/overlays/aggregated does).
func Authorizer() authorizer.Authorizer {
	return authorizer.AuthorizerFunc(authorizePublic)
}

// WithPublicResources is Authorizer in front of next: next decides every
// request Authorizer has no opinion on.
func WithPublicResources(next authorizer.Authorizer) authorizer.Authorizer {
	if next == nil {
		return Authorizer()
	}
	return authorizer.AuthorizerFunc(func(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if d, reason, err := authorizePublic(ctx, a); d != authorizer.DecisionNoOpinion || err != nil {
			return d, reason, err
		}
		return next.Authorize(ctx, a)
	})
}

func authorizePublic(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if !a.IsResourceRequest() {
		if a.GetVerb() == "get" && discoveryPaths[a.GetPath()] {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	}
	if a.GetAPIGroup() == v1alpha1.GroupName && a.GetSubresource() == "" && accessVerbs[a.GetResource()][a.GetVerb()] && authenticated(a.GetUser()) {
		// Who may see or decide what is the justInTime policy's
		// decision, made in the storage; this only lets users reach it.
		return authorizer.DecisionAllow, "", nil
	}
	if a.GetAPIGroup() != v1alpha1.GroupName || a.GetVerb() != "create" || a.GetSubresource() != "" {
		return authorizer.DecisionNoOpinion, "", nil
	}
	switch a.GetResource() {
	case "tokencredentialrequests":
		return authorizer.DecisionAllow, "", nil
	case "whoamirequests":
		if authenticated(a.GetUser()) {
			return authorizer.DecisionAllow, "", nil
		}
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// accessVerbs are the verbs any authenticated user may use on the access
// resources; the storage then applies the cluster's justInTime policy.
var accessVerbs = map[string]map[string]bool{
	"accessrequests":         {"create": true, "get": true, "list": true},
	"accessrequestdecisions": {"create": true},
	"accessgrants":           {"create": true, "get": true, "list": true, "delete": true},
}

func authenticated(u user.Info) bool {
	return u != nil && u.GetName() != "" && u.GetName() != user.Anonymous && !slices.Contains(u.GetGroups(), user.AllUnauthenticated)
}
