package v1alpha1

import (
	"fmt"

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
	// The field selectors the List of sessions and of the access resources
	// understands: the
	// apiserver refuses any other before the storage sees it.
	for kind, fields := range map[string][]string{
		"AccessRequest": {"metadata.name", "spec.username", "spec.cluster", "status.phase"},
		"AccessGrant":   {"metadata.name", "spec.username", "spec.cluster"},
		"Session":       {"metadata.name", "spec.username", "spec.identityProvider"},
	} {
		known := map[string]bool{}
		for _, f := range fields {
			known[f] = true
		}
		err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind), func(label, value string) (string, string, error) {
			if !known[label] {
				return "", "", fmt.Errorf("field label %q is not supported for %s: use one of %v", label, kind, fields)
			}
			return label, value, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
