// Package login holds the API group login.portcullis.dev, which Portcullis
// serves through the generic apiserver (directly, and through kube-apiserver
// when registered as an APIService):
//
//   - TokenCredentialRequest (create-only): exchange an upstream ID token, or
//     a Portcullis token, for a short-lived Portcullis cluster token;
//   - WhoAmIRequest (create-only): who the server thinks the caller is;
//   - Session (get, list, delete): the login sessions in the store, for
//     administrators; deleting one revokes it.
//
// The types live in v1alpha1 only. There is no separate internal version:
// the install package registers the v1alpha1 types as the group's internal
// (hub) version too, so the apiserver's decoding needs no conversion
// functions. A second version would bring a real internal version with it.
//
// The storage is in pkg/registry. Nothing here may depend on pkg/server.
package login

// GroupName is the API group.
const GroupName = "login.portcullis.dev"
