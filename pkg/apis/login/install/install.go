// Package install registers the login.portcullis.dev API group in a scheme.
package install

import (
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
