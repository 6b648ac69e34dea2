package kubernetes

import (
	"testing"
	"time"
)

func ids(c *itemCache[string]) []string {
	return c.list(func(s string) string { return s })
}

func TestCacheOrdersChangesByResourceVersion(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		steps func(c *itemCache[string])
		want  []string
	}{
		{"a late event of an older version does not undo a local write", func(c *itemCache[string]) {
			c.put("a", "v2", "20")
			c.put("a", "v1", "10")
		}, []string{"v2"}},
		{"a late event of the deleted version does not bring an item back", func(c *itemCache[string]) {
			c.put("a", "v1", "10")
			c.tombstone("a", "10", now)
			c.put("a", "v1", "10")
		}, nil},
		{"the delete event removes the tombstone", func(c *itemCache[string]) {
			c.tombstone("a", "10", now)
			c.deleted("a", "11")
			c.put("a", "again", "12")
		}, []string{"again"}},
		{"a delete event of an older object leaves a newer one", func(c *itemCache[string]) {
			c.put("a", "new", "30")
			c.deleted("a", "20")
		}, []string{"new"}},
		{"a list drops what it lacks and is older, keeps what is newer", func(c *itemCache[string]) {
			c.put("gone", "gone", "5")
			c.put("written-after", "after", "50")
			c.put("kept", "old", "6")
			c.replace([]versioned[string]{{"kept", "listed", "7"}, {"new", "new", "8"}}, "40")
		}, []string{"listed", "new", "after"}}, // sorted by ID
		{"old tombstones are swept", func(c *itemCache[string]) {
			c.tombstone("a", "10", now.Add(-2*time.Minute))
			c.sweep(now, time.Minute)
			c.put("a", "v1", "10")
		}, []string{"v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newItemCache[string]()
			tc.steps(c)
			got := ids(c)
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}
