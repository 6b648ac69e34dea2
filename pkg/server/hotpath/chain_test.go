package hotpath

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"portcullis.dev/portcullis/pkg/webhook/callerauth"
)

// testCodecs serves the Status errors of the generic filters, as the
// server's codecs do.
func testCodecs() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	scheme.AddUnversionedTypes(schema.GroupVersion{Version: "v1"}, &metav1.Status{})
	return serializer.NewCodecFactory(scheme)
}

func TestIsHotPath(t *testing.T) {
	for path, want := range map[string]bool{
		"/tokenreview":                      true,
		"/tokenreview/c1":                   true,
		"/clusters/c1/api/v1/pods":          true,
		"/clusters/":                        true,
		"/tokenreviews":                     false,
		"/tokenreviewx/c1":                  false,
		"/apis/login.portcullis.dev/v1":     false,
		"/login":                            false,
		"/metrics":                          false,
		"/clusters":                         false,
		"/openid/v1/jwks":                   false,
		"/.well-known/openid-configuration": false,
	} {
		if got := isHotPath(path); got != want {
			t.Errorf("isHotPath(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestWebhookCallersOnly: /tokenreview admits only client-certificate
// callers (a bearer token whose groups name the callers' group is not
// one), and none that asks to impersonate; /clusters/ is left alone.
func TestWebhookCallersOnly(t *testing.T) {
	codecs := testCodecs()
	c := &genericapiserver.Config{Serializer: codecs}
	reached := 0
	h := webhookCallersOnly(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }), c)
	caller := &callerauth.Caller{DefaultInfo: user.DefaultInfo{Name: "kube-apiserver", Groups: []string{callerauth.Group}}}
	inCallersGroup := &user.DefaultInfo{Name: "mallory", Groups: []string{callerauth.Group, user.AllAuthenticated}}
	for _, tc := range []struct {
		name, path, header string
		user               user.Info
		want               int
		mention            string
	}{
		{"a caller", "/tokenreview/c1", "", caller, http.StatusOK, ""},
		{"a caller impersonating", "/tokenreview/c1", "Impersonate-User", caller, http.StatusForbidden, "Impersonate-"},
		{"a caller impersonating (lower case)", "/tokenreview/c1", "impersonate-group", caller, http.StatusForbidden, "Impersonate-"},
		{"a caller impersonating (underscore)", "/tokenreview/c1", "Impersonate_User", caller, http.StatusForbidden, "Impersonate-"},
		{"a caller impersonating (extra)", "/tokenreview/c1", "Impersonate-Extra-Scopes", caller, http.StatusForbidden, "Impersonate-"},
		{"a token in the callers' group", "/tokenreview/c1", "", inCallersGroup, http.StatusForbidden, "client certificate"},
		{"no user", "/tokenreview", "", nil, http.StatusForbidden, "client certificate"},
		// The proxy judges these itself (WithDeferredImpersonation).
		{"a proxied request impersonating", "/clusters/c1/api", "Impersonate-User", inCallersGroup, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached = 0
			r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader("{}"))
			if tc.user != nil {
				r = r.WithContext(genericapirequest.WithUser(r.Context(), tc.user))
			}
			if tc.header != "" {
				r.Header[tc.header] = []string{"mallory"}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if tc.want == http.StatusForbidden {
				if reached != 0 {
					t.Errorf("the request reached the handler")
				}
				if !strings.Contains(w.Body.String(), `"kind":"Status"`) || !strings.Contains(w.Body.String(), tc.mention) {
					t.Errorf("body is not a Status mentioning %q: %s", tc.mention, w.Body)
				}
			}
		})
	}
}
