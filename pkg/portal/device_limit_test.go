package portal

import (
	"context"
	"testing"
	"time"

	"portcullis.dev/portcullis/pkg/clientlimit"
	"portcullis.dev/portcullis/pkg/loginstate"
)

func TestDeviceFlow_WrongUserCodesAreLimitedPerClient(t *testing.T) {
	ctx := context.Background()
	d := newDeviceFlow(loginstate.NewMemory(100, nil), DefaultDeviceInterval, clientlimit.New(DefaultUserCodeLimits))
	now := time.Now()
	_, userCode, err := d.create(ctx, "c1", now)
	if err != nil {
		t.Fatal(err)
	}
	try := func(client, code string) (ok, limited bool) {
		_, _, ok, limited, err := d.pendingByUserCode(ctx, client, code, now)
		if err != nil {
			t.Fatal(err)
		}
		return ok, limited
	}
	burst := DefaultUserCodeLimits.PerClient.Burst
	for i := range burst {
		if ok, limited := try("192.0.2.66", "WRONG-CODE"); ok || limited {
			t.Fatalf("wrong code %d: ok=%v limited=%v, want a plain refusal within the burst of %d", i+1, ok, limited, burst)
		}
	}
	if _, limited := try("192.0.2.66", "WRONG-CODE"); !limited {
		t.Fatalf("wrong code %d at once from one client was not limited", burst+1)
	}
	// The guesser keeps going: another user's right code still works.
	for range 100 {
		try("192.0.2.66", "WRONG-CODE")
	}
	if ok, limited := try("198.51.100.7", userCode); !ok || limited {
		t.Fatalf("another client's right code while one client guesses: ok=%v limited=%v", ok, limited)
	}
	now = now.Add(DefaultUserCodeLimits.PerClient.Every)
	if _, limited := try("192.0.2.66", "WRONG-CODE"); limited {
		t.Fatal("no new try for the guesser after a refill")
	}
	if _, limited := try("192.0.2.66", "WRONG-CODE"); !limited {
		t.Fatal("two tries after one refill, want one")
	}
}

func TestDeviceFlow_WrongUserCodesOfManyClientsAreCappedTogether(t *testing.T) {
	ctx := context.Background()
	limits := clientlimit.Limits{PerClient: clientlimit.Rate{Every: 2 * time.Second, Burst: 10}, Global: clientlimit.Rate{Every: time.Second, Burst: 25}}
	d := newDeviceFlow(loginstate.NewMemory(100, nil), DefaultDeviceInterval, clientlimit.New(limits))
	now := time.Now()
	limited := 0
	for i := range 10 {
		for range 10 {
			_, _, _, l, err := d.pendingByUserCode(ctx, "2001:db8:0:"+string(rune('a'+i))+"::1", "WRONG-CODE", now)
			if err != nil {
				t.Fatal(err)
			}
			if l {
				limited++
			}
		}
	}
	if limited != 100-25 {
		t.Fatalf("%d of 100 wrong codes from 10 clients limited, want all past the global burst of 25", limited)
	}
}

func TestDeviceFlow_ARightUserCodeStartsAFewLoginsAtMost(t *testing.T) {
	ctx := context.Background()
	d := newDeviceFlow(loginstate.NewMemory(100, nil), DefaultDeviceInterval, clientlimit.New(DefaultUserCodeLimits))
	now := time.Now()
	_, userCode, err := d.create(ctx, "c1", now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxUserCodeEntries {
		if _, _, ok, _, err := d.pendingByUserCode(ctx, "192.0.2.1", userCode, now); err != nil || !ok {
			t.Fatalf("entry %d of a right code: ok=%v err=%v", i+1, ok, err)
		}
	}
	if _, _, ok, _, err := d.pendingByUserCode(ctx, "192.0.2.1", userCode, now); err != nil || ok {
		t.Fatalf("entry %d of a right code: ok=%v err=%v, want a refusal", maxUserCodeEntries+1, ok, err)
	}
}
