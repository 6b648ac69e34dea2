// Package kubernetes is a store.Store on the Kubernetes API: Portcullis's
// state in Secrets and ConfigMaps of one namespace of the cluster it runs in,
// so that several replicas share it through etcd. docs/architecture.md
// (section State) explains the layout and the reasons for it; in short:
//
//   - signing keys and sessions are Secrets, revocations and grants
//     ConfigMaps; one object per item, labelled (LabelManagedBy, LabelKind)
//     and named after the item's ID (the kind's prefix and the ID in
//     lower-case base32hex), the item as JSON in one data key;
//   - signing keys, revocations and grants are served from informer-fed
//     caches, so IsRevoked, ListSigningKeys and ListGrants never call the API
//     and keep answering while it is unreachable; the store's own writes are
//     applied to its cache at once, ordered against the informer's events by
//     resourceVersion;
//   - sessions are read and written through the API each time;
//     UpdateSession is a read-modify-write guarded by the resourceVersion,
//     retried on conflict, so it is atomic across replicas;
//   - a request that cannot reach the API server fails with an error
//     wrapping store.ErrUnavailable.
//
// What this package must never do:
//
//   - log or put into an error message a secret: a session's
//     UpstreamRefreshToken or refresh-token hashes, or a signing key's
//     PrivateKeyPEM (only IDs, object names and the API server's address
//     appear in messages);
//   - touch objects it did not create: everything it lists or watches is
//     selected by its labels, and an object that does not decode or is not
//     where its ID says it should be is reported, never rewritten.
//
// The store passes the conformance suite in pkg/store/storetest against a
// real kube-apiserver (test/e2e/store_kubernetes_test.go).
package kubernetes
