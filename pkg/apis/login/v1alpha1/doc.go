// Package v1alpha1 is version v1alpha1 of the login.portcullis.dev API.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +groupName=login.portcullis.dev
package v1alpha1
