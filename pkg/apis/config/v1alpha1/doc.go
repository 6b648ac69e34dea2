// Package v1alpha1 is the versioned configuration file of portcullis-server,
// group config.portcullis.dev, kind PortcullisConfiguration.
//
// The file is decoded strictly (unknown and duplicate fields are errors),
// defaulted, then validated; every problem is reported with its field path, all
// at once. Identity providers reuse the shape (and, through k8s.io/apiserver,
// the semantics and code) of kube-apiserver's AuthenticationConfiguration JWT
// authenticators, so operators can carry their claim mappings over.
package v1alpha1
