// Package v1alpha1 is version v1alpha1 of the login.portcullis.dev API.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=dev.portcullis.login.v1alpha1
// +groupName=login.portcullis.dev
package v1alpha1
