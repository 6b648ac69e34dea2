package policy

import (
	"fmt"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// Holder holds the current policy, so a configuration reload swaps it without
// a restart and without locking readers out. The zero Holder holds no
// policy (and a nil *Policy denies everything).
type Holder struct {
	p atomic.Pointer[Policy]
}

// NewHolder returns a Holder holding p.
func NewHolder(p *Policy) *Holder {
	h := &Holder{}
	h.Store(p)
	return h
}

// Load returns the current policy.
func (h *Holder) Load() *Policy { return h.p.Load() }

// Store makes p the current policy and logs what changed, as cluster names
// and counts (never the users, groups or domains themselves).
func (h *Holder) Store(p *Policy) {
	old := h.p.Swap(p)
	if p == nil {
		klog.InfoS("Access policy cleared: every request is denied")
		return
	}
	summary := make([]string, 0, len(p.names))
	for _, name := range p.names {
		summary = append(summary, p.clusters[name].summary())
	}
	if old == nil {
		klog.InfoS("Access policy loaded", "clusters", len(p.names), "access", summary)
		return
	}
	var added, removed, changed []string
	for _, name := range p.names {
		switch o, ok := old.clusters[name]; {
		case !ok:
			added = append(added, name)
		case !o.equal(p.clusters[name]):
			changed = append(changed, name)
		}
	}
	for _, name := range old.names {
		if _, ok := p.clusters[name]; !ok {
			removed = append(removed, name)
		}
	}
	if len(added)+len(removed)+len(changed) == 0 {
		klog.V(2).InfoS("Access policy reloaded without changes", "clusters", len(p.names))
		return
	}
	klog.InfoS("Access policy changed", "clusters", len(p.names),
		"added", added, "removed", removed, "changed", changed, "access", summary)
}

func (a *clusterAccess) summary() string {
	if a.allUsers {
		return fmt.Sprintf("%s: all users", a.name)
	}
	return fmt.Sprintf("%s: %d users, %d groups, %d email domains", a.name, a.users.Len(), a.groups.Len(), a.emailDomains.Len())
}

func (a *clusterAccess) equal(b *clusterAccess) bool {
	return a.allUsers == b.allUsers && a.users.Equal(b.users) && a.groups.Equal(b.groups) && a.emailDomains.Equal(b.emailDomains)
}
