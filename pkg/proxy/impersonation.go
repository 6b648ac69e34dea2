package proxy

import (
	"context"
	"net/http"
	"strings"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// WithDeferredImpersonation must wrap the whole generic handler chain
// (BuildHandlerChainFunc). On proxied paths it takes the client's
// Impersonate-* headers out of the request before the generic chain's
// impersonation filter can act on them, and keeps them in the request
// context for the proxy.
//
// Without it the generic filter would judge kubectl --as with Portcullis's
// own authorizer, which knows nothing about the cluster's RBAC, and replace
// the authenticated user (and the cluster it was authenticated for) before
// the proxy sees it. With it, the proxy asks the upstream cluster itself
// whether the real user may impersonate (see upstream.impersonate).
func WithDeferredImpersonation(handler http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		handler.ServeHTTP(w, DeferImpersonation(req))
	})
}

// DeferImpersonation is WithDeferredImpersonation for a caller that routes
// requests itself: on a proxied path with Impersonate-* headers it returns a
// copy of req without them, carrying them in its context; otherwise req.
// It is never inlined, so its locals stay out of the caller's frame, under
// which a proxied watch waits for as long as it is open.
//
//go:noinline
func DeferImpersonation(req *http.Request) *http.Request {
	if !strings.HasPrefix(req.URL.Path, PathPrefix) {
		return req
	}
	var captured http.Header
	for name, values := range req.Header {
		if IsImpersonationHeader(name) {
			if captured == nil {
				captured = http.Header{}
			}
			captured[name] = values
		}
	}
	if captured == nil {
		return req
	}
	out := req.Clone(context.WithValue(req.Context(), deferredImpersonationKey{}, captured))
	for name := range captured {
		delete(out.Header, name)
	}
	return out
}

// IsImpersonationHeader matches every spelling of an Impersonate- header a
// client might try (Impersonate_User too); the proxy interprets only the
// canonical ones and drops the rest, the TokenReview endpoint refuses them all.
func IsImpersonationHeader(name string) bool {
	return len(name) >= len("impersonate") && strings.EqualFold(name[:len("impersonate")], "impersonate")
}

type deferredImpersonationKey struct{}

func deferredImpersonation(ctx context.Context) http.Header {
	h, _ := ctx.Value(deferredImpersonationKey{}).(http.Header)
	return h
}

// nestedResult receives the identity the impersonation filter allowed.
type nestedResult struct {
	user user.Info
}

type nestedResultKey struct{}

// nestedAllowed is the inner handler of each upstream's impersonation
// filter: reaching it means every check passed.
func nestedAllowed(_ http.ResponseWriter, req *http.Request) {
	if res, ok := req.Context().Value(nestedResultKey{}).(*nestedResult); ok {
		res.user, _ = request.UserFrom(req.Context())
	}
}

// impersonate decides a client's own impersonation request (kubectl --as,
// --as-group, --as-uid, --as-user-extra) for the real user usr. It runs
// kube-apiserver's own impersonation filter (constrained impersonation, with
// the legacy "impersonate" verb as fallback) with an authorizer that sends
// SubjectAccessReviews to the upstream cluster, as Portcullis, about usr as
// the cluster sees them, and with the RequestInfo of the request as the
// cluster will see it. So --as through Portcullis is allowed exactly when it
// would be allowed directly against the cluster.
//
// On success it returns the identity to forward: the impersonated one, with
// the real user's name in the ExtraOriginalUser extra. Otherwise the filter
// has written the 403 (or 400) Status and ok is false.
func (u *upstream) impersonate(w http.ResponseWriter, req *http.Request, usr user.Info, requested http.Header, info *request.RequestInfo) (*impersonatedUser, bool) {
	realID := identityFor(usr)
	res := &nestedResult{}
	seen := realID.asSeenUpstream()
	ctx := request.WithUser(req.Context(), seen)
	ctx = request.WithRequestInfo(ctx, info)
	ctx = context.WithValue(ctx, nestedResultKey{}, res)
	r := req.WithContext(ctx)
	r.Header = req.Header.Clone()
	for name := range r.Header {
		if IsImpersonationHeader(name) {
			delete(r.Header, name)
		}
	}
	for name, values := range requested {
		r.Header[name] = values
	}
	u.nested.ServeHTTP(w, r)
	if res.user == nil {
		return nil, false
	}
	if res.user == seen {
		// Only unusual spellings (Impersonate_User...), which kube-apiserver
		// ignores too: nothing to impersonate.
		return realID, true
	}
	id := identityFor(res.user)
	if len(requested.Values("Impersonate-Group")) == 0 && derivesGroups(id.User) {
		// kube-apiserver gives service accounts and nodes their groups
		// itself, and refuses them spelled out in constrained impersonation.
		id.Groups = nil
	}
	// Only the impersonated identity's own extras, as allowed upstream, and
	// the real user, which no client can set.
	id.Extra = map[string][]string{}
	for k, vs := range res.user.GetExtra() {
		if len(vs) > 0 {
			id.Extra[k] = vs
		}
	}
	id.Extra[ExtraOriginalUser] = []string{usr.GetName()}
	return id, true
}

// derivesGroups reports whether kube-apiserver derives the groups of an
// impersonated user from its name: service accounts and nodes.
func derivesGroups(name string) bool {
	if _, _, err := serviceaccount.SplitUsername(name); err == nil {
		return true
	}
	return strings.HasPrefix(name, "system:node:")
}
