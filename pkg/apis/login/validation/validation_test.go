package validation

import (
	"strings"
	"testing"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

func TestValidateTokenCredentialRequest(t *testing.T) {
	valid := func() *v1alpha1.TokenCredentialRequest {
		return &v1alpha1.TokenCredentialRequest{Spec: v1alpha1.TokenCredentialRequestSpec{Cluster: "prod", Token: "a.b.c"}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.TokenCredentialRequest)
		want   []string // field paths, in order
	}{
		{name: "a token and a cluster are enough", mutate: func(*v1alpha1.TokenCredentialRequest) {}},
		{name: "both missing", mutate: func(r *v1alpha1.TokenCredentialRequest) { r.Spec = v1alpha1.TokenCredentialRequestSpec{} }, want: []string{"spec.token", "spec.cluster"}},
		{name: "a token with its Bearer prefix", mutate: func(r *v1alpha1.TokenCredentialRequest) { r.Spec.Token = "Bearer a.b.c" }, want: []string{"spec.token"}},
		{name: "a token with a trailing newline", mutate: func(r *v1alpha1.TokenCredentialRequest) { r.Spec.Token = "a.b.c\n" }, want: []string{"spec.token"}},
		{name: "a token longer than any verifier reads", mutate: func(r *v1alpha1.TokenCredentialRequest) { r.Spec.Token = strings.Repeat("a", MaxTokenLength+1) }, want: []string{"spec.token"}},
		{name: "a token of the longest length", mutate: func(r *v1alpha1.TokenCredentialRequest) { r.Spec.Token = strings.Repeat("a", MaxTokenLength) }},
		{name: "a cluster name no configuration allows", mutate: func(r *v1alpha1.TokenCredentialRequest) { r.Spec.Cluster = "Prod_1" }, want: []string{"spec.cluster"}},
		{name: "a status from the client", mutate: func(r *v1alpha1.TokenCredentialRequest) { r.Status.Message = "x" }, want: []string{"status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := valid()
			tc.mutate(r)
			errs := ValidateTokenCredentialRequest(r)
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
				if strings.Contains(e.Error(), "a.b.c") || strings.Contains(e.Error(), "aaaa") {
					t.Errorf("the error echoes the token: %v", e)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("errors on %v, want %v (%v)", got, tc.want, errs)
			}
		})
	}
}

func TestValidateWhoAmIRequest(t *testing.T) {
	if errs := ValidateWhoAmIRequest(&v1alpha1.WhoAmIRequest{}); len(errs) != 0 {
		t.Errorf("an empty request: %v", errs)
	}
	planted := &v1alpha1.WhoAmIRequest{Status: v1alpha1.WhoAmIRequestStatus{UserInfo: v1alpha1.UserInfo{Groups: []string{"system:masters"}}}}
	if errs := ValidateWhoAmIRequest(planted); len(errs) != 1 || errs[0].Field != "status" {
		t.Errorf("a request with a status: %v, want one error on status", errs)
	}
}

func TestDefaultTokenCredentialRequest(t *testing.T) {
	r := &v1alpha1.TokenCredentialRequest{}
	v1alpha1.DefaultTokenCredentialRequest(r, []string{"only"})
	if r.Spec.Cluster != "only" {
		t.Errorf("with one cluster: %q, want it", r.Spec.Cluster)
	}
	r = &v1alpha1.TokenCredentialRequest{}
	v1alpha1.DefaultTokenCredentialRequest(r, []string{"a", "b"})
	if r.Spec.Cluster != "" {
		t.Errorf("with two clusters: %q, want none chosen", r.Spec.Cluster)
	}
	r = &v1alpha1.TokenCredentialRequest{Spec: v1alpha1.TokenCredentialRequestSpec{Cluster: "mine"}}
	v1alpha1.DefaultTokenCredentialRequest(r, []string{"only"})
	if r.Spec.Cluster != "mine" {
		t.Errorf("a named cluster was replaced by %q", r.Spec.Cluster)
	}
}
