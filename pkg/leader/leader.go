// Package leader decides which replica does Portcullis's cluster-wide chores:
// rotating the signing key and collecting expired state. With several
// replicas on the Kubernetes store, one replica at a time holds a
// coordination.k8s.io Lease through client-go's leaderelection; a store that
// only one process can open (bolt, memory) makes that process the leader.
//
// Leadership only decides who does chores. It must never gate serving: every
// replica verifies, mints and proxies whether it leads or not, so losing the
// Lease (or the API server) costs nothing but a delayed chore.
package leader

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Elector reports whether this process should do the cluster-wide chores now.
type Elector interface {
	// IsLeader is cheap and safe for concurrent use.
	IsLeader() bool
	// Run takes part in the election until ctx is done.
	Run(ctx context.Context)
}

// Always is the Elector of a process that is alone with its store.
type Always struct{}

// IsLeader is always true.
func (Always) IsLeader() bool { return true }

// Run waits for ctx.
func (Always) Run(ctx context.Context) { <-ctx.Done() }

// Lease timings: a replica that dies holds the chores for at most
// LeaseDuration; one that is stopped (rolling update) hands them over at once,
// since it releases the Lease on the way out.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// LeaseOptions configure a Lease election.
type LeaseOptions struct {
	Namespace string
	// Name of the Lease, e.g. "portcullis-chores".
	Name string
	// Identity of this replica (pod name); must be unique among replicas.
	Identity string

	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Lease is an Elector backed by a coordination.k8s.io Lease.
type Lease struct {
	opts   LeaseOptions
	client kubernetes.Interface
	leader atomic.Bool
}

// NewLease returns an election on the Lease opts.Namespace/opts.Name.
func NewLease(client kubernetes.Interface, opts LeaseOptions) (*Lease, error) {
	if opts.Namespace == "" || opts.Name == "" || opts.Identity == "" {
		return nil, fmt.Errorf("leader: a Lease election needs a namespace, a name and an identity (got %q, %q, %q)", opts.Namespace, opts.Name, opts.Identity)
	}
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if opts.RenewDeadline == 0 {
		opts.RenewDeadline = DefaultRenewDeadline
	}
	if opts.RetryPeriod == 0 {
		opts.RetryPeriod = DefaultRetryPeriod
	}
	if !(opts.LeaseDuration > opts.RenewDeadline && opts.RenewDeadline > opts.RetryPeriod && opts.RetryPeriod > 0) {
		return nil, fmt.Errorf("leader: need leaseDuration (%s) > renewDeadline (%s) > retryPeriod (%s) > 0", opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod)
	}
	return &Lease{opts: opts, client: client}, nil
}

// IsLeader reports whether this replica holds the Lease.
func (l *Lease) IsLeader() bool { return l.leader.Load() }

// Run campaigns for the Lease until ctx is done. Losing the Lease (say, the
// API server was unreachable past the renew deadline) makes it campaign
// again, not exit: chores wait, serving goes on.
func (l *Lease) Run(ctx context.Context) {
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metaFor(l.opts),
				Client:     l.client.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: l.opts.Identity},
			},
			LeaseDuration:   l.opts.LeaseDuration,
			RenewDeadline:   l.opts.RenewDeadline,
			RetryPeriod:     l.opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            l.opts.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					l.leader.Store(true)
					klog.InfoS("This replica now does the cluster-wide chores", "lease", l.opts.Namespace+"/"+l.opts.Name, "identity", l.opts.Identity)
				},
				OnStoppedLeading: func() {
					l.leader.Store(false)
					klog.InfoS("This replica no longer does the cluster-wide chores", "lease", l.opts.Namespace+"/"+l.opts.Name, "identity", l.opts.Identity)
				},
			},
		})
		if err != nil { // only for a bad configuration, checked in NewLease
			klog.ErrorS(err, "Leader election")
			return
		}
		le.Run(ctx)
		l.leader.Store(false)
		select {
		case <-ctx.Done():
		case <-time.After(l.opts.RetryPeriod):
		}
	}
}

func metaFor(o LeaseOptions) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name}
}
