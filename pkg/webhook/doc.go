// Package webhook serves the TokenReview endpoint that kube-apiserver calls
// when started with --authentication-token-webhook-config-file.
//
// It answers authentication.k8s.io/v1 and v1beta1 TokenReviews in the version
// asked, honours spec.audiences, and reports every bad token as HTTP 200 with
// authenticated: false and a short reason. Only a malformed or ambiguous
// request (a key given twice, no spec) is a 4xx, and only Portcullis's own
// faults, or an outage of what it depends on (an identity provider's keys),
// are 5xx: kube-apiserver caches refusals but not errors.
//
// It must never log, echo or audit the token under review.
package webhook
