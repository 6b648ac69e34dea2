package portal_test

import (
	"net/http"
	"testing"

	"portcullis.dev/portcullis/internal/testkit/portaltest"
	"portcullis.dev/portcullis/pkg/portal"
)

// recordingMux records what Install mounts.
type recordingMux struct{ exact, prefixes []string }

func (m *recordingMux) Handle(p string, _ http.Handler)       { m.exact = append(m.exact, p) }
func (m *recordingMux) HandlePrefix(p string, _ http.Handler) { m.prefixes = append(m.prefixes, p) }

func TestIsPublicPath_CoversEveryPathThePortalMounts(t *testing.T) {
	e := portaltest.New(t, portaltest.Options{})
	var mux recordingMux
	e.Portal.Install(&mux)
	if len(mux.exact) == 0 || len(mux.prefixes) == 0 {
		t.Fatalf("Install mounted %v and %v", mux.exact, mux.prefixes)
	}
	for _, p := range mux.exact {
		if !portal.IsPublicPath(p) {
			t.Errorf("the portal mounts %s but does not publish it", p)
		}
	}
	for _, p := range mux.prefixes {
		if !portal.IsPublicPath(p) || !portal.IsPublicPath(p+"x/y") {
			t.Errorf("the portal mounts the subtree %s but does not publish it", p)
		}
	}
	for _, p := range []string{"/portal", "/loginx", "/clusters/c1/api", "/apis/login.portcullis.dev/v1alpha1"} {
		want := p == "/portal"
		if got := portal.IsPublicPath(p); got != want {
			t.Errorf("IsPublicPath(%s) = %v, want %v", p, got, want)
		}
	}
}
