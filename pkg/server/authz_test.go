package server

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"portcullis.dev/portcullis/pkg/webhook/callerauth"
)

func TestAuthorizePortcullisPaths(t *testing.T) {
	c1 := &clusterUser{DefaultInfo: &user.DefaultInfo{Name: "alice"}, cluster: "c1"}
	refused := &clusterUser{DefaultInfo: &user.DefaultInfo{Name: "mallory"}, cluster: "c1", denied: "user mallory is not admitted to cluster c1 by policy"}
	// A front-proxy or client-certificate user with the same extras must not pass.
	forged := &user.DefaultInfo{Name: "eve", Extra: map[string][]string{"portcullis.dev/cluster": {"c1"}}}
	webhookCaller := &callerauth.Caller{DefaultInfo: user.DefaultInfo{Name: "kube-apiserver", Groups: []string{callerauth.Group}}}
	// A bearer token whose groups (an IdP's, a mint's) name the callers' group.
	tokenInCallersGroup := &clusterUser{DefaultInfo: &user.DefaultInfo{Name: "mallory", Groups: []string{callerauth.Group}}, cluster: "c1"}
	certLookalike := &user.DefaultInfo{Name: "kube-apiserver", Groups: []string{callerauth.Group}}
	anonymous := &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}
	monitoring := &user.DefaultInfo{Name: "prometheus", Groups: []string{MetricsGroup}}
	bearerMonitoring := &clusterUser{DefaultInfo: &user.DefaultInfo{Name: "alice", Groups: []string{MetricsGroup}}, cluster: "c1"}
	tests := []struct {
		name string
		path string
		user user.Info
		want authorizer.Decision
	}{
		{"anyone may read the discovery document", "/.well-known/openid-configuration", anonymous, authorizer.DecisionAllow},
		{"anyone may read the JWKS", "/openid/v1/jwks", anonymous, authorizer.DecisionAllow},
		{"anyone may open the login portal", "/login", anonymous, authorizer.DecisionAllow},
		{"anyone may start a login at an identity provider", "/login/dex", anonymous, authorizer.DecisionAllow},
		{"anyone may come back from an identity provider", "/callback", anonymous, authorizer.DecisionAllow},
		{"anyone may open the device page", "/device", anonymous, authorizer.DecisionAllow},
		{"anyone may use the device flow's API", "/device/token", anonymous, authorizer.DecisionAllow},
		{"anyone may open the portal without its trailing slash", "/portal", anonymous, authorizer.DecisionAllow},
		{"anyone may open the portal's pages", "/portal/kubeconfig", anonymous, authorizer.DecisionAllow},
		{"a path that only starts like a portal path is not the portal's", "/loginx", anonymous, authorizer.DecisionNoOpinion},
		{"a kube-apiserver with a webhook client certificate may post reviews", "/tokenreview/c1", webhookCaller, authorizer.DecisionAllow},
		{"an anonymous caller may not post reviews", "/tokenreview/c1", anonymous, authorizer.DecisionDeny},
		{"a bearer token in the callers' group may not post reviews", "/tokenreview/c1", tokenInCallersGroup, authorizer.DecisionDeny},
		{"another authenticator's user in the callers' group may not post reviews", "/tokenreview/c1", certLookalike, authorizer.DecisionDeny},
		{"a cluster user may not post reviews", "/tokenreview", c1, authorizer.DecisionDeny},
		{"a user verified for c1 may use c1", "/clusters/c1/api/v1/pods", c1, authorizer.DecisionAllow},
		{"a user verified for c1 may not use c2", "/clusters/c2/api/v1/pods", c1, authorizer.DecisionDeny},
		{"a user the policy refused is denied", "/clusters/c1/api", refused, authorizer.DecisionDeny},
		{"forged extras from another authenticator are not trusted", "/clusters/c1/api", forged, authorizer.DecisionDeny},
		{"anonymous users may not use clusters", "/clusters/c1/api", anonymous, authorizer.DecisionDeny},
		{"other paths are left to the delegated authorizer", "/apis/login.portcullis.dev/v1alpha1", c1, authorizer.DecisionNoOpinion},
		{"a monitoring client certificate may read the metrics", "/metrics", monitoring, authorizer.DecisionAllow},
		{"anonymous metrics readers are left to the delegated authorizer", "/metrics", anonymous, authorizer.DecisionNoOpinion},
		{"a bearer token's system:monitoring group does not open the metrics", "/metrics", bearerMonitoring, authorizer.DecisionNoOpinion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, err := authorizePortcullis(context.Background(), authorizer.AttributesRecord{User: tt.user, Path: tt.path, Verb: "get"})
			if err != nil || got != tt.want {
				t.Fatalf("decision = %v (%q, %v), want %v", got, reason, err, tt.want)
			}
			if got == authorizer.DecisionDeny && reason == "" {
				t.Errorf("a denial without a reason")
			}
		})
	}
}

func TestClusterFromPath(t *testing.T) {
	for path, want := range map[string]string{
		"/clusters/c1/api":   "c1",
		"/clusters/c1":       "c1",
		"/clusters/":         "",
		"/clusters":          "",
		"/tokenreview/c1":    "",
		"/clusters/a/../b/x": "a",
	} {
		got, ok := clusterFromPath(path)
		if got != want || ok != (want != "") {
			t.Errorf("clusterFromPath(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
}

// alwaysAllowMasters plays the delegated authorizer's always-allow group.
var alwaysAllowMasters = authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if u := a.GetUser(); u != nil && slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
})

func TestPolicyRefusedUsersAreDeniedOnEveryPath(t *testing.T) {
	az, err := buildAuthorizer(alwaysAllowMasters)
	if err != nil {
		t.Fatal(err)
	}
	refused := &clusterUser{DefaultInfo: &user.DefaultInfo{Name: "mallory", Groups: []string{user.SystemPrivilegedGroup}}, cluster: "c1", denied: "user mallory is not admitted to cluster c1 by policy"}
	admitted := &clusterUser{DefaultInfo: &user.DefaultInfo{Name: "root", Groups: []string{user.SystemPrivilegedGroup}}, cluster: "c1"}
	requests := map[string]authorizer.AttributesRecord{
		"a session list on the aggregated API":  {Verb: "list", APIGroup: "login.portcullis.dev", APIVersion: "v1alpha1", Resource: "sessions", ResourceRequest: true},
		"a token exchange (a public resource)":  {Verb: "create", APIGroup: "login.portcullis.dev", APIVersion: "v1alpha1", Resource: "tokencredentialrequests", ResourceRequest: true},
		"a WhoAmIRequest (a public resource)":   {Verb: "create", APIGroup: "login.portcullis.dev", APIVersion: "v1alpha1", Resource: "whoamirequests", ResourceRequest: true},
		"the metrics":                           {Verb: "get", Path: "/metrics"},
		"a portal page":                         {Verb: "get", Path: "/portal/"},
		"the proxied cluster the token is for":  {Verb: "get", Path: "/clusters/c1/api"},
		"discovery of the aggregated API group": {Verb: "get", Path: "/apis/login.portcullis.dev/v1alpha1"},
	}
	for name, attrs := range requests {
		t.Run(name+" is denied to a user the policy refuses, even in system:masters", func(t *testing.T) {
			attrs.User = refused
			d, reason, err := az.Authorize(context.Background(), attrs)
			if err != nil || d != authorizer.DecisionDeny || !strings.Contains(reason, "not admitted") {
				t.Fatalf("decision = %v (%q, %v), want a denial giving the policy's reason", d, reason, err)
			}
		})
	}
	t.Run("an admitted user in system:masters still reaches the sessions", func(t *testing.T) {
		attrs := requests["a session list on the aggregated API"]
		attrs.User = admitted
		if d, reason, err := az.Authorize(context.Background(), attrs); err != nil || d != authorizer.DecisionAllow {
			t.Fatalf("decision = %v (%q, %v), want allow", d, reason, err)
		}
	})
}

func TestMetricsAreNotAnAlwaysAllowedPath(t *testing.T) {
	if paths := NewOptions().Authorization.AlwaysAllowPaths; slices.Contains(paths, MetricsPath) {
		t.Fatalf("always-allowed paths %v include %s: anonymous clients could read the metrics", paths, MetricsPath)
	}
}
