package install

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// The apiserver decodes requests into the internal version and encodes
// responses from it; with the v1alpha1 types standing in for it, both must
// be copies.
func TestRoundTripThroughTheInternalVersion(t *testing.T) {
	scheme := runtime.NewScheme()
	Install(scheme)
	codecs := serializer.NewCodecFactory(scheme)
	in := []byte(`{"apiVersion":"login.portcullis.dev/v1alpha1","kind":"TokenCredentialRequest","metadata":{"name":"x"},"spec":{"cluster":"prod","token":"a.b.c"}}`)

	obj, gvk, err := codecs.UniversalDecoder(InternalGroupVersion).Decode(in, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := obj.(*v1alpha1.TokenCredentialRequest)
	if !ok || gvk.Kind != "TokenCredentialRequest" || r.Spec.Cluster != "prod" || r.Spec.Token != "a.b.c" {
		t.Fatalf("decoded %T %v %+v", obj, gvk, obj)
	}
	r.Status.Token = "minted"
	r.Status.ExpirationTimestamp = &metav1.Time{}
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	out, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, v1alpha1.SchemeGroupVersion), r)
	if err != nil {
		t.Fatal(err)
	}
	back := &v1alpha1.TokenCredentialRequest{}
	if _, _, err := codecs.UniversalDecoder(v1alpha1.SchemeGroupVersion).Decode(out, nil, back); err != nil {
		t.Fatal(err)
	}
	if back.APIVersion != "login.portcullis.dev/v1alpha1" || back.Kind != "TokenCredentialRequest" || back.Status.Token != "minted" {
		t.Errorf("encoded %s", out)
	}

	for _, o := range v1alpha1.KnownTypes() {
		kinds, _, err := scheme.ObjectKinds(o)
		if err != nil || len(kinds) != 2 {
			t.Errorf("%T is registered as %v (%v), want v1alpha1 and the internal version", o, kinds, err)
		}
	}
	namerKinds, _, _ := OpenAPINamerScheme().ObjectKinds(&v1alpha1.Session{})
	if len(namerKinds) != 1 || namerKinds[0].Version != "v1alpha1" {
		t.Errorf("the OpenAPI namer scheme has Session as %v, want v1alpha1 only", namerKinds)
	}
}
