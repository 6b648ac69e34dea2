package hotpath

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/proxy"
	"portcullis.dev/portcullis/pkg/webhook/callerauth"
)

// The generic authentication filter answers every failure with its failed
// handler, a 401, and keeps the authenticator's error to itself. The hot
// paths need three answers more:
//
//   - a proxied request with no credential at all is a 401 (reason
//     Unauthorized), as kube-apiserver answers with anonymous requests off,
//     so client-go's exec credential plugin runs again; the union's
//     anonymous fallback would have made it a 403 as system:anonymous;
//   - a token that could not be checked because something Portcullis
//     depends on is unreachable (authn.IsUnavailable: an identity
//     provider's keys) is a 503, not a 401: the client should retry, not
//     log in again;
//   - a proxied request whose headers exceed proxy.MaxRequestHeaderBytes is
//     a 431, before any token is looked at.
//
// gate wraps the chain's authenticator and remembers, for the failed
// handler, why it refused a request; failedAuthentication answers
// accordingly. Both see the same *http.Request (WithAuthentication passes
// it to each), so that pointer keys the record, which the failed handler
// removes. Nothing is recorded for a request that authenticates or is
// simply refused, so the common paths cost one type switch more.
type gate struct {
	inner authenticator.Request
	// refused maps a *http.Request to the error to answer it with.
	refused sync.Map
}

func (g *gate) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	proxied := strings.HasPrefix(req.URL.Path, proxy.PathPrefix)
	if proxied {
		if n := proxy.RequestHeaderBytes(req.Header); n > proxy.MaxRequestHeaderBytes {
			err := proxy.NewRequestHeaderFieldsTooLarge(n)
			g.refused.Store(req, error(err))
			return nil, false, err
		}
	}
	resp, ok, err := g.inner.AuthenticateRequest(req)
	switch {
	case err != nil:
		// The chain's authenticator is a union: the error may list what
		// every authenticator said.
		if ae := authn.Unavailable(err); ae != nil {
			g.refused.Store(req, error(ae))
		}
	case ok && proxied && resp != nil && resp.User != nil && resp.User.GetName() == user.Anonymous:
		// No credential: a 401, so clients offer one.
		return nil, false, nil
	}
	return resp, ok, err
}

// failedAuthentication is the hot-path chain's failed handler: unavailable
// (503) or tooLarge (431) when the gate recorded why, else unauthorized.
// Each is wrapped in the failed-authentication audit filter, so all are
// audited alike.
type failedAuthentication struct {
	gate                  *gate
	unauthorized, refused http.Handler
}

type refusalKey struct{}

func (f *failedAuthentication) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if v, ok := f.gate.refused.LoadAndDelete(req); ok {
		f.refused.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), refusalKey{}, v)))
		return
	}
	f.unauthorized.ServeHTTP(w, req)
}

// refusedHandler writes the error the gate recorded as a Status in the
// client's format: the proxy's 431, or a 503 for an unreachable dependency
// (with the reason, which names the identity provider and never the token).
func refusedHandler(s runtime.NegotiatedSerializer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		err, _ := req.Context().Value(refusalKey{}).(error)
		var status apierrors.APIStatus
		if !errors.As(err, &status) {
			var ae *authn.Error
			reason := "a service it depends on cannot be reached"
			if errors.As(err, &ae) {
				reason = ae.Reason
			}
			se := apierrors.NewServiceUnavailable("Portcullis cannot check the credential now: " + reason)
			err = se
		}
		gv := schema.GroupVersion{}
		if info, ok := genericapirequest.RequestInfoFrom(req.Context()); ok {
			gv = schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
		}
		responsewriters.ErrorNegotiated(err, s, gv, w, req)
	})
}

// webhookCallersOnly admits to /tokenreview only callers authenticated by
// their client certificate (callerauth.IsCaller), whatever groups another
// credential carries, and refuses a review request that asks to impersonate:
// the caller acts as itself or not at all. The authorizer checks the caller
// too; this keeps the rule next to the chain that serves the endpoint.
func webhookCallersOnly(h http.Handler, c *genericapiserver.Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, proxy.PathPrefix) {
			var refusal error
			if hasImpersonation(r.Header) {
				refusal = errImpersonationRefused
			} else if u, ok := genericapirequest.UserFrom(r.Context()); !ok || !callerauth.IsCaller(u) {
				refusal = errNotACaller
			}
			if refusal != nil {
				err := apierrors.NewForbidden(authenticationv1.Resource("tokenreviews"), "", refusal)
				responsewriters.ErrorNegotiated(err, c.Serializer, authenticationv1.SchemeGroupVersion, w, r)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

type notACaller struct{}

func (notACaller) Error() string {
	return "only kube-apiservers presenting a client certificate signed by webhook.clientCAFile may call the TokenReview endpoint"
}

var errNotACaller = notACaller{}
