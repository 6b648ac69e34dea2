package portal

import (
	"testing"
	"time"
)

func TestDeviceFlow_WrongUserCodesAreLimitedForEveryoneTogether(t *testing.T) {
	d := newDeviceFlow(DefaultDeviceInterval)
	now := time.Now()
	for i := range 30 {
		if _, ok, limited := d.pendingByUserCode("WRONG-CODE", now); ok || limited {
			t.Fatalf("wrong code %d: ok=%v limited=%v, want a plain refusal within the burst of 30", i+1, ok, limited)
		}
	}
	if _, _, limited := d.pendingByUserCode("WRONG-CODE", now); !limited {
		t.Fatal("the 31st wrong code at once was not limited")
	}
	now = now.Add(2 * time.Second)
	if _, _, limited := d.pendingByUserCode("WRONG-CODE", now); limited {
		t.Fatal("no new try two seconds later")
	}
	if _, _, limited := d.pendingByUserCode("WRONG-CODE", now); !limited {
		t.Fatal("two tries two seconds later, want one")
	}
}
