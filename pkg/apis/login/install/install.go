// Package install registers the login.portcullis.dev API group in a scheme.
package install

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"portcullis.dev/portcullis/pkg/apis/login"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// InternalGroupVersion is the group's hub version, which the apiserver
// decodes requests into before calling the storage.
var InternalGroupVersion = schema.GroupVersion{Group: login.GroupName, Version: runtime.APIVersionInternal}

// Install registers v1alpha1, and the same Go types as the internal (hub)
// version: with one served version, converting between a version and itself
// is a copy, so no conversion functions are needed.
func Install(scheme *runtime.Scheme) {
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	scheme.AddKnownTypes(InternalGroupVersion, v1alpha1.KnownTypes()...)
	utilruntime.Must(scheme.SetVersionPriority(v1alpha1.SchemeGroupVersion))
}

// OpenAPINamerScheme is a scheme for the OpenAPI definition namer
// (k8s.io/apiserver/pkg/endpoints/openapi.NewDefinitionNamer), which tags
// each schema with the kinds its Go type is registered as: with the served
// version only, so that the schemas do not also claim the internal version.
// It holds meta's unversioned types as the server's scheme does.
func OpenAPINamerScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	scheme.AddUnversionedTypes(schema.GroupVersion{Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	return scheme
}
