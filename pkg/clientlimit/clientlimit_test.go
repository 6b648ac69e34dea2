package clientlimit

import (
	"strconv"
	"testing"
	"time"
)

func TestKeyGroupsIPv6ClientsByTheir64(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7":                 "192.0.2.7",
		"::ffff:192.0.2.7":          "192.0.2.7",
		"2001:db8:1:2:aaaa::1":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff::9": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":           "2001:db8:1:3::/64",
		"fe80::1%eth0":              "fe80::/64",
		"not-an-ip":                 "not-an-ip",
	} {
		if got := Key(addr); got != want {
			t.Errorf("Key(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestOneClientCannotUseUpWhatOthersShare(t *testing.T) {
	l := New(Limits{PerClient: Rate{Every: time.Second, Burst: 3}, Global: Rate{Every: time.Second / 10, Burst: 100}})
	now := time.Now()
	for i := range 3 {
		if !l.Allow("a", now) {
			t.Fatalf("request %d of client a refused within its burst", i+1)
		}
	}
	for range 50 {
		if l.Allow("a", now) {
			t.Fatal("client a went past its burst")
		}
	}
	if !l.Allow("b", now) {
		t.Fatal("client b refused because client a was over its limit")
	}
	if !l.Allow("a", now.Add(time.Second)) {
		t.Fatal("client a refused after its bucket refilled")
	}
}

func TestTheGlobalBucketBoundsManyClientsTogether(t *testing.T) {
	l := New(Limits{PerClient: Rate{Every: time.Second, Burst: 5}, Global: Rate{Every: time.Second, Burst: 10}})
	now := time.Now()
	allowed := 0
	for i := range 100 {
		if l.Allow(string(rune('a'+i%26))+string(rune('a'+i/26)), now) {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("%d requests of 100 clients allowed at once, want the global burst of 10", allowed)
	}
}

func TestFailuresAreCountedPerClient(t *testing.T) {
	l := New(Limits{PerClient: Rate{Every: 2 * time.Second, Burst: 2}, Global: Rate{Every: time.Second / 10, Burst: 300}})
	now := time.Now()
	l.Fail("a", now)
	if l.Limited("a", now) {
		t.Fatal("limited after one failure of a burst of two")
	}
	l.Fail("a", now)
	if !l.Limited("a", now) {
		t.Fatal("not limited after two failures")
	}
	if l.Limited("b", now) {
		t.Fatal("client b limited by client a's failures")
	}
	if l.Limited("a", now.Add(2*time.Second)) {
		t.Fatal("client a still limited after a refill")
	}
}

// What a start took and gave back (the state store could not record it) is
// there again for the client and for everyone; a refund never raises a
// bucket above its burst.
func TestARefundGivesBackWhatWasTaken(t *testing.T) {
	l := New(Limits{PerClient: Rate{Every: time.Hour, Burst: 6}, Global: Rate{Every: time.Hour, Burst: 9}})
	now := time.Now()
	for i := range 20 {
		taken, ok := l.TakeN("a", now, 3)
		if !ok {
			t.Fatalf("start %d refused although every earlier one was refunded", i+1)
		}
		// Refunded after the store answered, a little later.
		now = now.Add(time.Millisecond)
		taken.Refund()
	}
	for range 2 {
		if _, ok := l.TakeN("a", now, 3); !ok {
			t.Fatal("client a refused within its burst after refunds")
		}
	}
	if _, ok := l.TakeN("a", now, 3); ok {
		t.Fatal("refunds raised client a's bucket above its burst")
	}
	if _, ok := l.TakeN("b", now, 3); !ok {
		t.Fatal("client b refused with 3 of the global 9 left")
	}
	if _, ok := l.TakeN("c", now, 3); ok {
		t.Fatal("the global bucket went past its burst after refunds")
	}
	Taken{}.Refund() // a refused start's zero Taken
}

// Without a global bucket only each client's counts; with a per-client
// Every of zero nobody is limited.
func TestZeroLimitsMeanNoGlobalBoundAndNoLimit(t *testing.T) {
	now := time.Now()
	l := New(Limits{PerClient: Rate{Every: time.Hour, Burst: 2}})
	for i := range 1000 {
		key := strconv.Itoa(i)
		for range 2 {
			if !l.Allow(key, now) {
				t.Fatalf("client %d refused within its burst: a zero Global bounded the clients together", i)
			}
		}
		if l.Allow(key, now) {
			t.Fatalf("client %d went past its burst", i)
		}
	}
	free := New(Limits{})
	for range 1000 {
		if !free.Allow("a", now) || free.Limited("a", now) {
			t.Fatal("a limiter with a zero per-client Every limited a client")
		}
		if _, ok := free.TakeN("a", now, 3); !ok {
			t.Fatal("a limiter with a zero per-client Every refused TakeN")
		}
	}
}
