package kubernetes

import (
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Labels and annotations on every object the store writes.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByValue      = "portcullis"
	LabelKind           = "portcullis.dev/kind"
	AnnotationID        = "portcullis.dev/id"
	AnnotationExpiresAt = "portcullis.dev/expires-at"
	// LabelSessionEnds is on sessions: when the session ends (by age or
	// idleness, whichever is first) in Unix seconds, so that garbage
	// collection lists only ended sessions (a "<" label selector) instead of
	// every session.
	LabelSessionEnds = "portcullis.dev/ends-unix"
)

// maxNameLength is the longest name a Secret or ConfigMap may have (a DNS-1123
// subdomain).
const maxNameLength = 253

// kind describes how one kind of item is kept: in a Secret (signing keys and
// sessions hold secrets) or a ConfigMap (revocations and grants hold none).
type kind struct {
	what       string // for messages: "signing key"
	label      string // value of LabelKind
	prefix     string // of object names
	dataKey    string // the one data key holding the item as JSON
	secretType corev1.SecretType
}

var (
	kindSigningKey = kind{"signing key", "signing-key", "portcullis-signing-key-", "signing-key.json", "portcullis.dev/signing-key"}
	kindSession    = kind{"session", "session", "portcullis-session-", "session.json", "portcullis.dev/session"}
	kindRevocation = kind{"revocation", "revocation", "portcullis-revocation-", "revocation.json", ""}
	kindGrant      = kind{"grant", "grant", "portcullis-grant-", "grant.json", ""}
	kindRequest    = kind{"access request", "access-request", "portcullis-access-request-", "access-request.json", ""}
)

// encoding is lower-case base32hex without padding: its alphabet (0-9, a-v) is
// a subset of what DNS-1123 names allow, and it keeps no '=' or upper case.
var encoding = base32.NewEncoding(strings.ToLower("0123456789ABCDEFGHIJKLMNOPQRSTUV")).WithPadding(base32.NoPadding)

// errIDTooLong is wrapped by objectName for IDs whose name would not fit.
var errIDTooLong = errors.New("ID too long")

// maxIDLength returns the longest ID (in bytes) whose object name fits.
func (k kind) maxIDLength() int { return (maxNameLength - len(k.prefix)) * 5 / 8 }

// objectName returns the name of the object holding the item with this ID:
// the kind's prefix and the ID in lower-case base32hex. Every non-empty ID of
// at most maxIDLength bytes maps to a distinct valid name; idFromName undoes it.
func objectName(k kind, id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("%s ID is empty: every %s needs a non-empty ID", k.what, k.what)
	}
	if len(id) > k.maxIDLength() {
		return "", fmt.Errorf("%s ID is %d bytes long; the kubernetes store keeps each %s in an object named after its ID, which fits IDs of at most %d bytes: %w",
			k.what, len(id), k.what, k.maxIDLength(), errIDTooLong)
	}
	return k.prefix + encoding.EncodeToString([]byte(id)), nil
}

// idFromName is the inverse of objectName. It refuses names objectName would
// not have made (another prefix, characters outside the alphabet, or a
// non-canonical encoding).
func idFromName(k kind, name string) (string, error) {
	enc, ok := strings.CutPrefix(name, k.prefix)
	if !ok || enc == "" {
		return "", fmt.Errorf("object name %q does not start with %q followed by an encoded ID", name, k.prefix)
	}
	b, err := encoding.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("object name %q does not hold a base32hex-encoded ID: %w", name, err)
	}
	if encoding.EncodeToString(b) != enc {
		return "", fmt.Errorf("object name %q does not hold a canonically encoded ID", name)
	}
	return string(b), nil
}
