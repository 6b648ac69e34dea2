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
	genericapiserver "k8s.io/apiserver/pkg/server"
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

func TestWebhookRefusesImpersonation(t *testing.T) {
	codecs := testCodecs()
	c := &genericapiserver.Config{Serializer: codecs}
	reached := 0
	h := withoutWebhookImpersonation(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }), c)
	for _, tc := range []struct {
		path, header string
		want         int
	}{
		{"/tokenreview/c1", "", http.StatusOK},
		{"/tokenreview/c1", "Impersonate-User", http.StatusForbidden},
		{"/tokenreview/c1", "impersonate-group", http.StatusForbidden},
		{"/tokenreview/c1", "Impersonate_User", http.StatusForbidden},
		{"/tokenreview/c1", "Impersonate-Extra-Scopes", http.StatusForbidden},
		// The proxy judges these itself (WithDeferredImpersonation).
		{"/clusters/c1/api", "Impersonate-User", http.StatusOK},
	} {
		reached = 0
		r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader("{}"))
		if tc.header != "" {
			r.Header[tc.header] = []string{"mallory"}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s with %q: %d, want %d (%s)", tc.path, tc.header, w.Code, tc.want, w.Body)
		}
		if tc.want == http.StatusForbidden {
			if reached != 0 {
				t.Errorf("%s with %q reached the handler", tc.path, tc.header)
			}
			if !strings.Contains(w.Body.String(), `"kind":"Status"`) || !strings.Contains(w.Body.String(), "Impersonate-") {
				t.Errorf("%s with %q: body is not a Status naming the header: %s", tc.path, tc.header, w.Body)
			}
		}
	}
}
