package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/breakglass"
	"portcullis.dev/portcullis/pkg/leader"
	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/store/bolt"
	"portcullis.dev/portcullis/pkg/store/kubernetes"
)

// Where Portcullis's state lives and who does its chores, per store type:
//
//	bolt:       one process; logins in progress in memory; that process
//	            does the chores; mint goes through a Unix socket.
//	kubernetes: any number of replicas; logins in progress in Secrets of
//	            the store's namespace; the holder of the Lease
//	            portcullis-chores does the chores.
type stateBackend struct {
	store.Store
	Logins loginstate.Store
	Chores leader.Elector
	// Ready is a /readyz check, or nil.
	Ready healthz.HealthChecker
	// MintSocket is where a running server answers mint requests, or "".
	MintSocket string
}

// sharedStoreKeyReload is how often replicas on the kubernetes store reload
// signing keys from their cache.
const sharedStoreKeyReload = 2 * time.Second

// ChoresLease is the Lease replicas on the kubernetes store elect their
// chores-doer with.
const ChoresLease = "portcullis-chores"

// OpenStore opens the configured state store.
func OpenStore(ctx context.Context, cfg *v1alpha1.PortcullisConfiguration) (store.Store, error) {
	switch cfg.Store.Type {
	case "bolt", "":
		return bolt.Open(cfg.Store.Path, bolt.Options{})
	case "kubernetes":
		k := cfg.Store.Kubernetes
		return kubernetes.Open(ctx, kubernetes.Options{Kubeconfig: k.Kubeconfig, Context: k.Context, Namespace: k.Namespace})
	}
	return nil, fmt.Errorf("store.type %q is not supported (bolt or kubernetes)", cfg.Store.Type)
}

func openStateBackend(ctx context.Context, cfg *v1alpha1.PortcullisConfiguration) (*stateBackend, error) {
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	b := &stateBackend{Store: st}
	switch s := st.(type) {
	case *kubernetes.Store:
		b.Logins = loginstate.NewKubernetes(s.Client(), s.Namespace(), nil, s.Unavailable)
		b.Ready = s.ReadyzCheck()
		id := replicaIdentity()
		if b.Chores, err = leader.NewLease(s.Client(), leader.LeaseOptions{Namespace: s.Namespace(), Name: ChoresLease, Identity: id}); err != nil {
			st.Close()
			return nil, err
		}
		klog.InfoS("State is kept in the Kubernetes API", "namespace", s.Namespace(), "replica", id)
	default:
		b.Logins = loginstate.NewMemory(loginstate.DefaultMaxInMemory, nil)
		b.Chores = leader.Always{}
		if cfg.Store.Type == "bolt" || cfg.Store.Type == "" {
			b.MintSocket = breakglass.SocketPath(cfg.Store.Path)
		}
	}
	return b, nil
}

// replicaIdentity names this replica in the chores Lease: the pod's name
// (POD_NAME, from the downward API), else the host name with a random
// suffix so that two processes on one host never share an identity.
func replicaIdentity() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// choresInterval is how often the chores-doer collects expired state.
const choresInterval = time.Minute

// runChores collects expired sessions, revocations, grants and logins in
// progress, on the replica that holds the chores, until ctx is done.
func (s *Server) runChores(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.backend.Chores.IsLeader() {
			continue
		}
		now := time.Now()
		n, err := s.Store.GarbageCollect(ctx, now)
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Collecting expired state failed; trying again at the next interval")
		}
		m, err := s.backend.Logins.Collect(ctx, now)
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Collecting expired logins in progress failed; trying again at the next interval")
		}
		if n+m > 0 {
			klog.InfoS("Collected expired state", "items", n, "loginsInProgress", m)
		}
	}
}
