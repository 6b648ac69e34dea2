package portal

import (
	"context"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/loginstate"
)

func TestDeviceFlow_WrongUserCodesAreLimitedForEveryoneTogether(t *testing.T) {
	ctx := context.Background()
	d := newDeviceFlow(loginstate.NewMemory(10, nil), DefaultDeviceInterval)
	now := time.Now()
	try := func() (ok, limited bool) {
		_, _, ok, limited, err := d.pendingByUserCode(ctx, "WRONG-CODE", now)
		if err != nil {
			t.Fatal(err)
		}
		return ok, limited
	}
	for i := range 30 {
		if ok, limited := try(); ok || limited {
			t.Fatalf("wrong code %d: ok=%v limited=%v, want a plain refusal within the burst of 30", i+1, ok, limited)
		}
	}
	if _, limited := try(); !limited {
		t.Fatal("the 31st wrong code at once was not limited")
	}
	now = now.Add(2 * time.Second)
	if _, limited := try(); limited {
		t.Fatal("no new try two seconds later")
	}
	if _, limited := try(); !limited {
		t.Fatal("two tries two seconds later, want one")
	}
}
