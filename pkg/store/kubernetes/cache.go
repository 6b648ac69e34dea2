package kubernetes

import (
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// itemCache is this replica's view of one informer-backed kind (signing keys,
// revocations or grants), keyed by item ID.
//
// Two writers feed it: the informer's event handler (every change, from any
// replica, in the order etcd made them) and this replica's own writes, applied
// as soon as the API server accepts them so that a caller reads its own writes
// at once (the informer's copy arrives milliseconds later). Because the two
// race, every change carries the object's resourceVersion and only a newer
// version replaces an older one; a delete made here leaves a tombstone at the
// deleted version, so a late event for that version cannot bring the item
// back. Whatever order the two writers run in, the view ends where etcd is.
type itemCache[T any] struct {
	mu      sync.RWMutex
	entries map[string]*entry[T]
}

// entry is never changed once in the map (a change replaces it), and the
// map holds pointers so that a lookup copies 8 bytes, not the item.
type entry[T any] struct {
	item T
	rv   string
	// gone marks a tombstone: the version rv was deleted by this replica;
	// the informer's delete event (or a newer object) replaces it.
	gone      bool
	deletedAt time.Time
}

func newItemCache[T any]() *itemCache[T] {
	return &itemCache[T]{entries: map[string]*entry[T]{}}
}

// newer reports whether resourceVersion a is later than b. Versions that are
// not the integers every etcd-backed API server uses are compared for
// equality only: a different version is taken as the newer one, and so is a
// missing one (as from a fake clientset).
func newer(a, b string) bool {
	c, err := resourceversion.CompareResourceVersion(a, b)
	if err != nil {
		return a != b || a == ""
	}
	return c > 0
}

// put records item at version rv unless a newer version (or a tombstone for
// this or a later version) is already there.
func (c *itemCache[T]) put(id string, item T, rv string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok && !newer(rv, e.rv) {
		return
	}
	c.entries[id] = &entry[T]{item: item, rv: rv}
}

// deleted applies a delete event for the object last seen at version rv.
func (c *itemCache[T]) deleted(id, rv string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok && newer(e.rv, rv) {
		return // a later object with this ID already replaced the deleted one
	}
	delete(c.entries, id)
}

// tombstone records that this replica deleted version rv of the item.
func (c *itemCache[T]) tombstone(id, rv string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok && newer(e.rv, rv) {
		return
	}
	var zero T
	c.entries[id] = &entry[T]{item: zero, rv: rv, gone: true, deletedAt: now}
}

// has reports whether any of ids is present (not a tombstone).
func (c *itemCache[T]) has(ids []string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, id := range ids {
		if e, ok := c.entries[id]; ok && !e.gone {
			return true
		}
	}
	return false
}

// list returns copies of every present item, sorted by ID.
func (c *itemCache[T]) list(clone func(T) T) []T {
	type kv struct {
		id   string
		item T
	}
	c.mu.RLock()
	items := make([]kv, 0, len(c.entries))
	for id, e := range c.entries {
		if !e.gone {
			items = append(items, kv{id, clone(e.item)})
		}
	}
	c.mu.RUnlock()
	sort.Slice(items, func(i, j int) bool { return items[i].id < items[j].id })
	out := make([]T, len(items))
	for i, it := range items {
		out[i] = it.item
	}
	return out
}

// versioned is an item with the version it was seen at.
type versioned[T any] struct {
	id   string
	item T
	rv   string
}

// matching returns the present items for which pred is true, with versions.
func (c *itemCache[T]) matching(pred func(T) bool) []versioned[T] {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []versioned[T]
	for id, e := range c.entries {
		if !e.gone && pred(e.item) {
			out = append(out, versioned[T]{id, e.item, e.rv})
		}
	}
	return out
}

// sweep drops tombstones older than maxAge whose delete event never came
// (e.g. the informer was disconnected while the object came and went).
func (c *itemCache[T]) sweep(now time.Time, maxAge time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.entries {
		if e.gone && now.Sub(e.deletedAt) > maxAge {
			delete(c.entries, id)
		}
	}
}

// reset empties the cache (on Close).
func (c *itemCache[T]) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = map[string]*entry[T]{}
}

// replace applies a list of every item, made at version listRV: listed items
// are put, and items the list lacks are dropped unless they are newer than
// the list (written after it).
func (c *itemCache[T]) replace(items []versioned[T], listRV string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	listed := make(map[string]bool, len(items))
	for _, v := range items {
		listed[v.id] = true
		if e, ok := c.entries[v.id]; ok && !newer(v.rv, e.rv) {
			continue
		}
		c.entries[v.id] = &entry[T]{item: v.item, rv: v.rv}
	}
	for id, e := range c.entries {
		if !listed[id] && !newer(e.rv, listRV) {
			delete(c.entries, id)
		}
	}
}
