// Package registry is the storage of the login.portcullis.dev API group
// (pkg/apis/login): TokenCredentialRequest and WhoAmIRequest, which are
// create-only and store nothing, and Session, a view of pkg/store's login
// sessions where delete means revoke. It implements k8s.io/apiserver's
// rest interfaces, so the generic server's handlers do the decoding,
// content negotiation, authorization, audit and error responses.
//
// It must never:
//   - echo, log or audit a token it was given (spec.token);
//   - answer a failed exchange with a 5xx: a rejected, refused or
//     unverifiable token is a 201 with status.reason and status.message,
//     a malformed request a 400/422 Status;
//   - decide who may be authenticated by itself: every token goes through
//     pkg/authn, exactly as the TokenReview webhook's do.
package registry
