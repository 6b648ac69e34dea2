package leader

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

func fastLease(t *testing.T, client *fake.Clientset, id string) *Lease {
	t.Helper()
	l, err := NewLease(client, LeaseOptions{
		Namespace: "ns", Name: "chores", Identity: id,
		LeaseDuration: 1500 * time.Millisecond, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOneReplicaLeadsAndHandsOverWhenStopped(t *testing.T) {
	client := fake.NewClientset()
	a, b := fastLease(t, client, "a"), fastLease(t, client, "b")
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA := make(chan struct{})
	go func() { a.Run(ctxA); close(doneA) }()
	waitFor(t, "a leads", a.IsLeader)
	go b.Run(ctxB)

	// b must not lead while a renews.
	for i := 0; i < 10; i++ {
		time.Sleep(100 * time.Millisecond)
		if b.IsLeader() {
			t.Fatal("b leads while a holds the Lease")
		}
	}
	stopA()
	<-doneA
	if a.IsLeader() {
		t.Fatal("a still reports leading after its Run returned")
	}
	// a released the Lease on the way out: b takes it well before a full
	// LeaseDuration would have passed on the Lease's own clock.
	waitFor(t, "b leads after a stopped", b.IsLeader)
}

func TestNewLeaseRefusesBadSettings(t *testing.T) {
	client := fake.NewClientset()
	for name, o := range map[string]LeaseOptions{
		"no identity":                 {Namespace: "ns", Name: "n"},
		"no namespace":                {Name: "n", Identity: "i"},
		"renew deadline beyond lease": {Namespace: "ns", Name: "n", Identity: "i", LeaseDuration: time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Millisecond},
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			if _, err := NewLease(client, o); err == nil {
				t.Fatal("NewLease accepted it")
			}
		})
	}
}

func TestAlwaysLeads(t *testing.T) {
	if !(Always{}).IsLeader() {
		t.Fatal("Always does not lead")
	}
}
