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
	"portcullis.dev/portcullis/pkg/token"
	"portcullis.dev/portcullis/pkg/webhook"
	"portcullis.dev/portcullis/pkg/webhook/callerauth"
)

// publicPaths answer anyone, including anonymous clients: discovery and keys
// (kube-apiserver fetches them to trust Portcullis natively). The portal
// publishes its own (portal.IsPublicPath).
var publicPaths = []string{token.DiscoveryPath, token.JWKSPath}

// newAuthorizer decides Portcullis's own paths and leaves the rest (the
// aggregated API's resources) to the delegated authorizer.
func newAuthorizer(delegated authorizer.Authorizer) (authorizer.Authorizer, error) {
	auths := []union.NamedAuthorizer{{AuthorizerName: "portcullis", Authorizer: authorizer.AuthorizerFunc(authorizePortcullis)}}
	if delegated != nil {
		auths = append(auths, union.NamedAuthorizer{AuthorizerName: "delegated", Authorizer: delegated})
	}
	return union.New(auths...)
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
		}
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
