package server

import (
	"errors"
	"net/http"
	"strings"

	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/user"

	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/jwtpeek"
	"portcullis.dev/portcullis/pkg/server/hotpath"
)

// clusterUser is a user Portcullis's bearer authenticator resolved for one
// cluster. No other authenticator (front-proxy headers, client certificates)
// can produce this type, so the authorizer trusts it and nothing else for
// /clusters/ paths. A policy refusal rides along to the authorizer, so the
// client gets a 403 naming the cluster rather than a 401.
type clusterUser struct {
	*user.DefaultInfo
	cluster string
	denied  string
}

// clusterFromPath returns the cluster a /clusters/<name>/... path is for.
func clusterFromPath(path string) (string, bool) { return hotpath.ClusterFromPath(path) }

// newRequestAuthenticator is the generic chain's authenticator: Portcullis's
// bearer tokens, then the webhook callers' client certificates, then the
// delegated authenticators (front proxy, client CA), and anonymous last, only
// for requests that carried no credential at all.
func newRequestAuthenticator(a *authn.Authenticator, state *configState, webhookClients, delegated authenticator.Request) authenticator.Request {
	// A bearer token that fails must fail the request: the delegated
	// authenticator ends in anonymous, so it may only be consulted when
	// Portcullis had no opinion (no bearer token at all).
	var others []authenticator.Request
	if webhookClients != nil {
		others = append(others, webhookClients)
	}
	if delegated != nil {
		others = append(others, delegated)
	}
	return union.NewFailOnError(&bearerAuthenticator{authn: a, state: state}, union.New(others...), anonymous.NewAuthenticator(nil))
}

type bearerAuthenticator struct {
	authn *authn.Authenticator
	state *configState
}

func (b *bearerAuthenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	raw, ok := bearerToken(req)
	if !ok {
		return nil, false, nil
	}
	cluster, ok := clusterFromPath(req.URL.Path)
	if !ok {
		// Off the proxy paths the token names its cluster; verification
		// checks that claim like every other.
		cluster = b.clusterFromToken(raw)
		if cluster == "" {
			return nil, false, errors.New("token is not for any configured cluster")
		}
	}
	res, err := b.authn.Authenticate(req.Context(), cluster, raw)
	denied := ""
	var ae *authn.Error
	if err != nil && errors.As(err, &ae) && ae.Denied && res != nil {
		denied, err = ae.Reason, nil
	}
	if err != nil {
		audit.AddAuditAnnotations(req.Context(), "portcullis.dev/authentication-failure", err.Error(), "portcullis.dev/cluster", cluster)
		return nil, false, err
	}
	// The credential is Portcullis's to consume: never pass it on.
	req.Header.Del("Authorization")
	return &authenticator.Response{User: &clusterUser{DefaultInfo: res.User, cluster: cluster, denied: denied}}, true, nil
}

func (b *bearerAuthenticator) clusterFromToken(raw string) string {
	for _, aud := range jwtpeek.Audiences(raw) {
		if _, ok := b.state.cluster(aud); ok {
			return aud
		}
	}
	if c := b.state.defaultCluster(); c != "" {
		return c
	}
	return ""
}

func bearerToken(req *http.Request) (string, bool) {
	h := req.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
