package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"portcullis.dev/portcullis/pkg/apis/login"
)

// GroupName is the API group.
const GroupName = login.GroupName

// SchemeGroupVersion is the group and version of this package's types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource returns the group-qualified resource.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// Kind returns the group-qualified kind.
func Kind(kind string) schema.GroupKind {
	return SchemeGroupVersion.WithKind(kind).GroupKind()
}

var (
	schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme registers this version's types, and the options types
	// (ListOptions, DeleteOptions...) the apiserver decodes for it.
	AddToScheme = schemeBuilder.AddToScheme
)

// KnownTypes are the types of the group, for registering them under
// another version (see the install package).
func KnownTypes() []runtime.Object {
	return []runtime.Object{
		&TokenCredentialRequest{},
		&WhoAmIRequest{},
		&Session{},
		&SessionList{},
		&TokenRevocation{},
		&AccessRequest{},
		&AccessRequestList{},
		&AccessRequestDecision{},
		&AccessGrant{},
		&AccessGrantList{},
	}
}

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, KnownTypes()...)
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
