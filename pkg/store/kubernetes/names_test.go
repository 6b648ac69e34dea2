package kubernetes

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

var allKinds = []kind{kindSigningKey, kindSession, kindRevocation, kindGrant}

func TestObjectNamesAreValidAndReversible(t *testing.T) {
	for _, k := range allKinds {
		for _, id := range []string{
			"a", "sess-a", "UPPER-and-lower", "with spaces and / slashes", "ünïcødé ✓", "\x00\xff", "..", "-",
			"7f3c2a1e-9b4d-4c8e-a5f6-0123456789ab", strings.Repeat("x", k.maxIDLength()),
		} {
			name, err := objectName(k, id)
			if err != nil {
				t.Fatalf("%s: objectName(%q): %v", k.label, id, err)
			}
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				t.Errorf("%s: objectName(%q) = %q is not a valid object name: %v", k.label, id, name, errs)
			}
			back, err := idFromName(k, name)
			if err != nil || back != id {
				t.Errorf("%s: idFromName(%q) = %q, %v; want %q", k.label, name, back, err, id)
			}
		}
	}
}

func TestObjectNameRefusesEmptyAndTooLongIDs(t *testing.T) {
	for _, k := range allKinds {
		if _, err := objectName(k, ""); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("%s: objectName(\"\") = %v, want an error saying the ID is empty", k.label, err)
		}
		_, err := objectName(k, strings.Repeat("x", k.maxIDLength()+1))
		if !errors.Is(err, errIDTooLong) || !strings.Contains(err.Error(), "at most") {
			t.Errorf("%s: objectName(too long) = %v, want an error wrapping errIDTooLong that gives the limit", k.label, err)
		}
	}
}

func TestIDFromNameRefusesForeignNames(t *testing.T) {
	for _, name := range []string{
		"portcullis-session-", "portcullis-grant-c4", "something-else", "portcullis-session-C4",
		"portcullis-session-c4x", "portcullis-session-zz", "portcullis-session-c5", // c5: non-zero trailing bits
	} {
		if id, err := idFromName(kindSession, name); err == nil {
			t.Errorf("idFromName(%q) = %q, want an error", name, id)
		}
	}
}

func TestDistinctIDsGetDistinctNames(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"a", "A", "a ", "ab", "b", "\x00", "\x00\x00", "sess-1", "sess-01"} {
		name, err := objectName(kindSession, id)
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("IDs %q and %q both map to %q", other, id, name)
		}
		seen[name] = id
	}
}

func FuzzObjectName(f *testing.F) {
	for _, s := range []string{"a", "sess-a", "\x00\xff", "ünïcødé"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		for _, k := range allKinds {
			name, err := objectName(k, id)
			if id == "" || len(id) > k.maxIDLength() {
				if err == nil {
					t.Fatalf("objectName(%q) accepted an ID of %d bytes", id, len(id))
				}
				continue
			}
			if err != nil {
				t.Fatalf("objectName(%q): %v", id, err)
			}
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				t.Fatalf("objectName(%q) = %q: %v", id, name, errs)
			}
			if back, err := idFromName(k, name); err != nil || back != id {
				t.Fatalf("idFromName(objectName(%q)) = %q, %v", id, back, err)
			}
		}
	})
}
