// Package authn decides who a bearer token belongs to, for one cluster: the
// single authentication path shared by the TokenReview webhook, the
// impersonating proxy and the server's own handler chain.
//
// A token is either a cluster token Portcullis minted (verified by pkg/token)
// or, for identity providers that allow it, an upstream ID token (verified by
// k8s.io/apiserver's OIDC authenticator through pkg/identity). Either way the
// central policy (pkg/policy) is applied at every authentication, so a policy
// change or a revocation takes effect on tokens already handed out.
//
// It must never log or return a token, nor trust a claim it did not verify.
package authn
