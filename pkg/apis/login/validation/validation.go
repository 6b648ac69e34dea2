// Package validation checks login.portcullis.dev objects as clients send
// them. An invalid object is answered with 422 Invalid, listing every error.
package validation

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// MaxTokenLength bounds spec.token. Portcullis's own tokens are far smaller;
// ID tokens with many groups can reach tens of kilobytes, and nothing larger
// is looked at by any verifier.
const MaxTokenLength = 64 << 10

// ValidateTokenCredentialRequest checks a TokenCredentialRequest after
// defaulting (see v1alpha1.DefaultTokenCredentialRequest).
func ValidateTokenCredentialRequest(r *v1alpha1.TokenCredentialRequest) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	switch t := r.Spec.Token; {
	case t == "":
		errs = append(errs, field.Required(spec.Child("token"), "give the identity provider's ID token or a Portcullis token to exchange"))
	case len(t) > MaxTokenLength:
		// Never echo the token: TooLong carries no value.
		errs = append(errs, field.TooLong(spec.Child("token"), "", MaxTokenLength))
	case strings.TrimSpace(t) != t || strings.ContainsAny(t, " \t\r\n"):
		errs = append(errs, field.Invalid(spec.Child("token"), "<redacted>", "must be the token alone, without spaces or line breaks (is it still prefixed with \"Bearer \"?)"))
	}
	switch c := r.Spec.Cluster; {
	case c == "":
		errs = append(errs, field.Required(spec.Child("cluster"), "name the cluster (clusters[].name in Portcullis's configuration) the token is for"))
	default:
		for _, msg := range validation.IsDNS1123Label(c) {
			errs = append(errs, field.Invalid(spec.Child("cluster"), c, msg))
		}
	}
	if r.Status != (v1alpha1.TokenCredentialRequestStatus{}) {
		errs = append(errs, field.Forbidden(field.NewPath("status"), "is set by the server: leave it out"))
	}
	return errs
}

// ValidateWhoAmIRequest checks a WhoAmIRequest: the server fills the status.
func ValidateWhoAmIRequest(r *v1alpha1.WhoAmIRequest) field.ErrorList {
	var errs field.ErrorList
	s := r.Status.UserInfo
	if s.Username != "" || s.UID != "" || len(s.Groups) > 0 || len(s.Extra) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("status"), "is set by the server: leave it out"))
	}
	return errs
}

// ValidateSessionName checks a session name given in a request path.
func ValidateSessionName(name string) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(field.NewPath("metadata", "name"), "")}
	}
	if len(name) > 253 || strings.ContainsAny(name, "/%") {
		return field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), name, "is not a session ID")}
	}
	return nil
}

// MaxTokenIDLength bounds spec.tokenID: Portcullis's own IDs are 22
// characters (128 random bits, base64url).
const MaxTokenIDLength = 128

// ValidateTokenRevocation checks a TokenRevocation as a client sends it.
func ValidateTokenRevocation(r *v1alpha1.TokenRevocation) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	switch id := r.Spec.TokenID; {
	case id == "":
		errs = append(errs, field.Required(spec.Child("tokenID"), "give the token's jti claim (audit annotation portcullis.dev/jti of its mint or exchange)"))
	case len(id) > MaxTokenIDLength:
		errs = append(errs, field.TooLong(spec.Child("tokenID"), "", MaxTokenIDLength))
	case strings.IndexFunc(id, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}) >= 0:
		errs = append(errs, field.Invalid(spec.Child("tokenID"), id, "must be a token ID as Portcullis issues them: letters, digits, '-' and '_' (base64url)"))
	}
	switch reason := r.Spec.Reason; {
	case strings.TrimSpace(reason) == "":
		errs = append(errs, field.Required(spec.Child("reason"), "say why the token is revoked; it is recorded in the audit log"))
	case len(reason) > 1024:
		errs = append(errs, field.TooLong(spec.Child("reason"), "", 1024))
	}
	if r.Status != (v1alpha1.TokenRevocationStatus{}) {
		errs = append(errs, field.Forbidden(field.NewPath("status"), "is set by the server: leave it out"))
	}
	return errs
}
