package v1alpha1

// Defaults here depend on the server's live configuration (which can change
// without a restart), so they are applied by the storage at request time,
// not registered as static scheme defaulters.

// DefaultTokenCredentialRequest fills what a client may leave out of a
// TokenCredentialRequest: the cluster, when the server knows exactly one
// (clusters are the names in its configuration, in order).
func DefaultTokenCredentialRequest(r *TokenCredentialRequest, clusters []string) {
	if r.Spec.Cluster == "" && len(clusters) == 1 {
		r.Spec.Cluster = clusters[0]
	}
}
