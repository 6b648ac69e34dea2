package server

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/union"

	"portcullis.dev/portcullis/pkg/portal"
	"portcullis.dev/portcullis/pkg/proxy"
	"portcullis.dev/portcullis/pkg/registry"
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/pkg/webhook"
	"portcullis.dev/portcullis/pkg/webhook/callerauth"
)

// publicPaths answer anyone, including anonymous clients: discovery and keys
// (kube-apiserver fetches them to trust Portcullis natively). The portal
// publishes its own (portal.IsPublicPath).
var publicPaths = []string{token.DiscoveryPath, token.JWKSPath}

// buildAuthorizer is the server's authorizer: the central policy's refusals
// first, then the public resources of login.portcullis.dev (anyone may
// create TokenCredentialRequests and WhoAmIRequests), then Portcullis's own
// paths, then the delegated authorizer.
func buildAuthorizer(delegated authorizer.Authorizer) (authorizer.Authorizer, error) {
	a, err := newAuthorizer(delegated)
	if err != nil {
		return nil, err
	}
	return refusePolicyDenied(registry.WithPublicResources(a)), nil
}

// newAuthorizer decides Portcullis's own paths and leaves the rest (the
// aggregated API's resources) to the delegated authorizer.
func newAuthorizer(delegated authorizer.Authorizer) (authorizer.Authorizer, error) {
	auths := []union.NamedAuthorizer{{AuthorizerName: "portcullis", Authorizer: authorizer.AuthorizerFunc(authorizePortcullis)}}
	if delegated != nil {
		auths = append(auths, union.NamedAuthorizer{AuthorizerName: "delegated", Authorizer: delegated})
	}
	return union.New(auths...)
}

// refusePolicyDenied puts the central policy in front of every other
// authorizer: a user whose Portcullis or identity-provider token is valid
// but whom the policy refuses (for the cluster the token names) is denied on
// every path, not only under /clusters/. Without it such a user, still
// holding an unexpired token, would reach the aggregated API, the public
// resources and anything the delegated authorizer allows, which always
// allows groups like system:masters.
func refusePolicyDenied(next authorizer.Authorizer) authorizer.Authorizer {
	return authorizer.AuthorizerFunc(func(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if u, ok := a.GetUser().(*clusterUser); ok && u.denied != "" {
			return authorizer.DecisionDeny, u.denied, nil
		}
		return next.Authorize(ctx, a)
	})
}

func authorizePortcullis(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	if !attrs.IsResourceRequest() {
		path := attrs.GetPath()
		switch {
		case slices.Contains(publicPaths, path) || portal.IsPublicPath(path):
			return authorizer.DecisionAllow, "", nil
		case path == webhook.PathPrefix || strings.HasPrefix(path, webhook.PathPrefix+"/"):
			if u := attrs.GetUser(); u != nil && callerauth.IsCaller(u) {
				return authorizer.DecisionAllow, "", nil
			}
			return authorizer.DecisionDeny, "only kube-apiservers presenting a client certificate signed by webhook.clientCAFile may call the TokenReview endpoint", nil
		case strings.HasPrefix(path, proxy.PathPrefix):
			return authorizeCluster(attrs)
		case path == MetricsPath:
			return authorizeMetrics(attrs)
		}
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// MetricsPath is where the server's Prometheus metrics are.
const MetricsPath = "/metrics"

// MetricsGroup may read /metrics without asking the delegated authorizer:
// the group kube-apiserver's bootstrap RBAC gives /metrics to (ClusterRole
// system:monitoring), so one client certificate with this organization
// scrapes Portcullis and the control plane alike.
const MetricsGroup = "system:monitoring"

// authorizeMetrics lets a monitoring client read /metrics when a client
// certificate (or kube-apiserver's front proxy) puts it in MetricsGroup.
// Portcullis's own bearer tokens never do: their groups come from identity
// providers. Anyone else is left to the delegated authorizer (a
// SubjectAccessReview for get on the non-resource URL /metrics), which denies
// when there is none; anonymous clients are never allowed.
func authorizeMetrics(attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	u := attrs.GetUser()
	if _, bearer := u.(*clusterUser); !bearer && u != nil && attrs.GetVerb() == "get" && slices.Contains(u.GetGroups(), MetricsGroup) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// authorizeCluster admits a proxied request when authentication resolved the
// user for this very cluster and the central policy admitted them.
func authorizeCluster(attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	cluster, _ := clusterFromPath(attrs.GetPath())
	u, ok := attrs.GetUser().(*clusterUser)
	switch {
	case !ok || u.cluster != cluster:
		return authorizer.DecisionDeny, fmt.Sprintf("log in to cluster %q with a Portcullis or identity-provider token to use it", cluster), nil
	case u.denied != "":
		return authorizer.DecisionDeny, u.denied, nil
	}
	return authorizer.DecisionAllow, "", nil
}
