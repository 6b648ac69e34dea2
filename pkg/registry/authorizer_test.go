package registry

import (
	"context"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func TestAuthorizer(t *testing.T) {
	anonymous := &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{user.AllAuthenticated}}
	res := func(u user.Info, verb, resource, sub string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: "login.portcullis.dev", APIVersion: "v1alpha1", Resource: resource, Subresource: sub, ResourceRequest: true}
	}
	path := func(u user.Info, verb, p string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, Path: p}
	}
	for _, tc := range []struct {
		name  string
		attrs authorizer.AttributesRecord
		want  authorizer.Decision
	}{
		{"anyone may create a TokenCredentialRequest", res(anonymous, "create", "tokencredentialrequests", ""), authorizer.DecisionAllow},
		{"an authenticated user may create a WhoAmIRequest", res(alice, "create", "whoamirequests", ""), authorizer.DecisionAllow},
		{"an anonymous user is left to RBAC for WhoAmIRequests", res(anonymous, "create", "whoamirequests", ""), authorizer.DecisionNoOpinion},
		{"sessions are left to RBAC", res(alice, "list", "sessions", ""), authorizer.DecisionNoOpinion},
		{"deleting sessions is left to RBAC", res(anonymous, "delete", "sessions", ""), authorizer.DecisionNoOpinion},
		{"only create is public", res(anonymous, "list", "tokencredentialrequests", ""), authorizer.DecisionNoOpinion},
		{"no subresource is public", res(anonymous, "create", "tokencredentialrequests", "status"), authorizer.DecisionNoOpinion},
		{"another group's resource of the same name is not public", authorizer.AttributesRecord{User: anonymous, Verb: "create", APIGroup: "example.com", Resource: "tokencredentialrequests", ResourceRequest: true}, authorizer.DecisionNoOpinion},
		{"an authenticated user may create an AccessRequest (the policy decides in the storage)", res(alice, "create", "accessrequests", ""), authorizer.DecisionAllow},
		{"an authenticated user may list AccessGrants", res(alice, "list", "accessgrants", ""), authorizer.DecisionAllow},
		{"an authenticated user may revoke an AccessGrant (the policy decides in the storage)", res(alice, "delete", "accessgrants", ""), authorizer.DecisionAllow},
		{"an authenticated user may create an AccessRequestDecision", res(alice, "create", "accessrequestdecisions", ""), authorizer.DecisionAllow},
		{"access requests cannot be deleted", res(alice, "delete", "accessrequests", ""), authorizer.DecisionNoOpinion},
		{"an anonymous user is left to RBAC for AccessRequests", res(anonymous, "create", "accessrequests", ""), authorizer.DecisionNoOpinion},
		{"the group's discovery is public", path(anonymous, "get", "/apis/login.portcullis.dev/v1alpha1"), authorizer.DecisionAllow},
		{"OpenAPI is public", path(anonymous, "get", "/openapi/v3/apis/login.portcullis.dev/v1alpha1"), authorizer.DecisionAllow},
		{"other paths are not", path(anonymous, "get", "/metrics"), authorizer.DecisionNoOpinion},
		{"discovery is read-only", path(anonymous, "post", "/apis"), authorizer.DecisionNoOpinion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := Authorizer().Authorize(context.Background(), tc.attrs)
			if err != nil || got != tc.want {
				t.Errorf("decision %v (%v), want %v", got, err, tc.want)
			}
		})
	}

	deny := authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
		return authorizer.DecisionDeny, "rbac says no", nil
	})
	chained := WithPublicResources(deny)
	if d, _, _ := chained.Authorize(context.Background(), res(anonymous, "create", "tokencredentialrequests", "")); d != authorizer.DecisionAllow {
		t.Errorf("WithPublicResources: the exchange is %v, want allowed before the delegated authorizer", d)
	}
	if d, reason, _ := chained.Authorize(context.Background(), res(alice, "list", "sessions", "")); d != authorizer.DecisionDeny || reason != "rbac says no" {
		t.Errorf("WithPublicResources: sessions are %v %q, want the delegated authorizer's denial", d, reason)
	}
}
