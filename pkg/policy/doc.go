// Package policy is Portcullis's central access policy: which users may
// reach which cluster (clusters[].access in the configuration), plus the
// time-bound grants that admit a user and add groups during an incident.
//
// A Policy is immutable and built from one configuration; a Holder swaps
// policies atomically when the configuration is reloaded, so a decision
// always sees one whole policy.
//
// This package decides on identities that have already been verified
// (pkg/identity, pkg/token). It must never:
//   - take an unverified claim, or anything a client sent, as an identity;
//   - log tokens, or the member lists of the policy: logs summarise
//     clusters and counts;
//   - admit by default: an unknown cluster, a missing identity or policy, or
//     an empty access list denies, and a failure to list grants falls back to
//     the static policy alone.
package policy
