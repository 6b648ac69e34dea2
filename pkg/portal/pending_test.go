package portal

import (
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

func TestPending_IsBoundedByLiveEntries(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	p := newPending[int](2, clk)
	if !p.put("a", 1, time.Minute) || !p.put("b", 2, 2*time.Minute) {
		t.Fatal("puts within the bound were refused")
	}
	if p.put("c", 3, time.Minute) {
		t.Fatal("a put beyond the bound was accepted")
	}
	if _, ok := p.take("c"); ok {
		t.Fatal("a refused entry can be taken")
	}
	clk.Step(time.Minute)
	if !p.put("c", 3, time.Minute) {
		t.Fatal("a put was refused although an entry had expired")
	}
	if _, ok := p.take("a"); ok {
		t.Fatal("an expired entry was taken")
	}
}

func TestPending_EntriesAreTakenOnce(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	p := newPending[string](10, clk)
	p.put("k", "v", time.Minute)
	if v, ok := p.take("k"); !ok || v != "v" {
		t.Fatalf("take = %q, %v", v, ok)
	}
	if _, ok := p.take("k"); ok {
		t.Fatal("an entry was taken twice")
	}
}

func TestPending_UpdateChangesTheEntryAndKeepsItsExpiry(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Now())
	p := newPending[string](10, clk)
	p.put("k", "v", time.Minute)
	want := clk.Now().Add(time.Minute)
	if !p.update("k", func(v *string, expires time.Time) bool {
		if !expires.Equal(want) {
			t.Errorf("expires = %v, want %v", expires, want)
		}
		*v = "w"
		return true
	}) {
		t.Fatal("update of a live entry reported none")
	}
	if !p.update("k", func(v *string, _ time.Time) bool { return *v != "w" }) {
		t.Fatal("second update reported none")
	}
	if p.update("k", func(*string, time.Time) bool { return true }) {
		t.Fatal("an entry update dropped is still there")
	}
	p.put("e", "v", time.Minute)
	clk.Step(time.Minute)
	if p.update("e", func(*string, time.Time) bool { return true }) {
		t.Fatal("an expired entry was updated")
	}
}
