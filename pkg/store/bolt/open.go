package bolt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/store"
)

// SchemaVersion is the version of the file layout this build reads and
// writes. Open refuses a file with a higher version.
const SchemaVersion = 1

// DefaultTimeout is how long Open waits by default for another process to
// release the file before giving up.
const DefaultTimeout = time.Second

// fileMode is the mode of a new state file: it holds private keys and
// upstream refresh tokens, so only its owner may read it.
const fileMode os.FileMode = 0o600

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another
	// process before failing with an "in use by another process" error.
	// Zero (or negative) means DefaultTimeout.
	Timeout time.Duration
}

var (
	bucketMeta        = []byte("meta")
	bucketSigningKeys = []byte("signingKeys")
	bucketSessions    = []byte("sessions")
	bucketRevocations = []byte("revocations")
	bucketGrants      = []byte("grants")
	bucketRequests    = []byte("accessRequests")

	keySchemaVersion = []byte("schemaVersion")
)

// dataBuckets are the buckets holding objects, with the names used in
// messages and a function that checks one stored value decodes.
var dataBuckets = []struct {
	name   []byte
	kind   string
	decode func(id, v []byte) error
}{
	{bucketSigningKeys, "signing key", decodeChecked[store.SigningKey](func(k store.SigningKey) string { return k.ID })},
	{bucketSessions, "session", decodeChecked[store.Session](func(s store.Session) string { return s.ID })},
	{bucketRevocations, "revocation", decodeChecked[store.Revocation](func(r store.Revocation) string { return r.ID })},
	{bucketGrants, "grant", decodeChecked[store.Grant](func(g store.Grant) string { return g.ID })},
	{bucketRequests, "access request", decodeChecked[store.AccessRequest](func(r store.AccessRequest) string { return r.ID })},
}

func decodeChecked[T any](idOf func(T) string) func(id, v []byte) error {
	return func(id, v []byte) error {
		var obj T
		if err := json.Unmarshal(v, &obj); err != nil {
			return err
		}
		if idOf(obj) != string(id) {
			return fmt.Errorf("it is stored under a different ID than its own (%q)", idOf(obj))
		}
		return nil
	}
}

// Open opens the store in the file at path, creating the file (mode 0600)
// and its parent directory (mode 0700) if they do not exist.
//
// An existing file is validated first and any problem is an error that names
// the file and says what to do; the file is then left exactly as it was.
// Open never replaces a file it cannot use with an empty store. A file that
// is in use by another process makes Open fail after opts.Timeout.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("opening store: no state file given; set the path of the file Portcullis should keep its state in")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}

	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(path)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("opening store %s: creating its directory: %w; create %s yourself, writable by the user Portcullis runs as, or choose another path", path, err, dir)
		}
		klog.InfoS("Creating a new state store", "path", path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("opening store %s: %w; give the user Portcullis runs as permission to search the directories leading to it", path, err)
	case err != nil:
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	case info.IsDir():
		return nil, fmt.Errorf("opening store %s: it is a directory, not a file; give the path of a file (which may not exist yet) instead, for example %s", path, filepath.Join(path, "state.db"))
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("opening store %s: it is not a regular file (mode %v); give the path of a regular file, which may not exist yet", path, info.Mode())
	default:
		if err := checkAccess(path); err != nil {
			return nil, err
		}
		if info.Size() == 0 {
			// Nothing to lose: e.g. a Kubernetes hostPath volume of type
			// FileOrCreate creates the file empty.
			klog.InfoS("State file is empty, initializing a new store in it", "path", path)
		} else if err := validate(path, info.Size(), timeout); err != nil {
			return nil, err
		}
	}

	db, err := bbolt.Open(path, fileMode, &bbolt.Options{Timeout: timeout})
	if err != nil {
		// The file is new, empty or validated: a failure here is not
		// corruption (it may be a read-only or full file system).
		if errors.Is(err, berrors.ErrTimeout) || errors.Is(err, fs.ErrPermission) {
			return nil, openError(path, timeout, err)
		}
		return nil, fmt.Errorf("opening store %s: %w; check that its file system is writable and has free space", path, err)
	}
	s := &Store{path: path, db: db}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if info != nil && info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, fileMode); err != nil {
			klog.ErrorS(err, "Could not restrict the state file's permissions; it holds secrets, so make it mode 0600", "path", path, "mode", info.Mode().Perm())
		} else {
			klog.InfoS("Restricted the state file's permissions, as it holds secrets", "path", path, "from", info.Mode().Perm(), "to", fileMode)
		}
	}
	return s, nil
}

// checkAccess fails clearly if the current user cannot both read and write
// the existing file at path (bbolt's own error would not say what to do).
func checkAccess(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("opening store %s: permission denied: Portcullis must be able to read and write this file; make the user Portcullis runs as its owner and give it mode 0600 (chown, chmod 600)", path)
	}
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("opening store %s: its file system is read-only: Portcullis must be able to write its state file; mount it read-write, or move the file to a writable file system and set store.path", path)
	}
	if err != nil {
		return fmt.Errorf("opening store %s: %w", path, err)
	}
	return f.Close()
}

// openError turns an error from bbolt.Open on an existing, non-empty file
// into one that says what to do: any failure other than a lock held by
// another process or missing permissions means bbolt could not make sense
// of the file.
func openError(path string, timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("opening store %s: the file is in use by another process (it was still locked after %v; is another Portcullis still running?); stop that process or give this one a different state file: %w", path, timeout, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("opening store %s: %w; make the user Portcullis runs as the file's owner and give it mode 0600 (chown, chmod 600)", path, err)
	default:
		return corruptError(path, err)
	}
}

// corruptError reports a file that exists but is not a usable store.
func corruptError(path string, cause error) error {
	return fmt.Errorf("opening store %s: the file is not a valid Portcullis state file; it may be corrupt or truncated (%w). "+
		"It has been left untouched. Restore it from a backup, or, to start over with an empty store, move it aside and restart "+
		"(every user will have to log in again and new signing keys will be made)", path, cause)
}

// validate checks an existing, non-empty file without writing to it: it is
// opened read-only, checked for truncation, scanned, and checked by bbolt.
func validate(path string, size int64, timeout time.Duration) error {
	db, err := bbolt.Open(path, fileMode, &bbolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return openError(path, timeout, err)
	}
	defer func() { _ = db.Close() }()
	return db.View(func(tx *bbolt.Tx) error {
		// Pages past the end of the file are mapped but not backed: touching
		// them would crash the process, so a short file must be caught first.
		if tx.Size() > size {
			return corruptError(path, fmt.Errorf("the file is %d bytes long but its header says %d: it was probably truncated", size, tx.Size()))
		}
		// Reading every record before bbolt's check means the check only
		// visits pages already known to be readable.
		if err := scan(tx, path); err != nil {
			return err
		}
		var problems []string
		n := 0
		for err := range tx.Check(bbolt.WithKVStringer(redactingStringer{})) {
			if n < 3 {
				problems = append(problems, err.Error())
			}
			n++
		}
		if n > 0 {
			return corruptError(path, fmt.Errorf("bbolt's consistency check found %d problem(s): %s", n, strings.Join(problems, "; ")))
		}
		return nil
	})
}

// scan checks the schema version and decodes every record, turning faults
// and panics caused by a damaged file into an error.
func scan(tx *bbolt.Tx, path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(path, fmt.Errorf("reading it failed: %v", r))
		}
	}()
	if _, err := checkSchema(tx, path); err != nil {
		return err
	}
	for _, db := range dataBuckets {
		b := tx.Bucket(db.name)
		if b == nil {
			continue
		}
		err := b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("unexpected nested bucket %q in the %s bucket", k, db.kind)
			}
			if err := db.decode(k, v); err != nil {
				return fmt.Errorf("%s %q does not decode: %w", db.kind, k, err)
			}
			return nil
		})
		if err != nil {
			return corruptError(path, err)
		}
	}
	return nil
}

// redactingStringer keeps stored values (which hold secrets) out of bbolt's
// check messages.
type redactingStringer struct{}

func (redactingStringer) KeyToString(k []byte) string   { return strconv.Quote(string(k)) }
func (redactingStringer) ValueToString(v []byte) string { return fmt.Sprintf("<%d bytes>", len(v)) }

var errStop = errors.New("stop")

// checkSchema checks the file's schema version. It reports fresh if the file
// holds no buckets at all (bbolt initialised it but nothing was written).
func checkSchema(tx *bbolt.Tx, path string) (fresh bool, err error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bbolt.Bucket) error {
			empty = false
			return errStop
		})
		if empty {
			return true, nil
		}
		return false, fmt.Errorf("opening store %s: the file is a bbolt database but not a Portcullis state file (it has no schema version); it has been left untouched. Check the path; if the file belongs to another program, give Portcullis a different one", path)
	}
	raw := meta.Get(keySchemaVersion)
	v, err := strconv.Atoi(string(raw))
	if raw == nil || err != nil || v < 1 {
		return false, corruptError(path, fmt.Errorf("its schema version %q is not a positive integer", raw))
	}
	if v > SchemaVersion {
		return false, fmt.Errorf("opening store %s: the file was written by a newer Portcullis (schema version %d; this one understands up to %d) and has been left untouched; run that newer version, or restore a backup made by this one", path, v, SchemaVersion)
	}
	return false, nil
}

// load creates what a fresh file lacks and loads the revoked-ID set. It
// writes only if the file is missing buckets.
func (s *Store) load() error {
	revoked := map[string]struct{}{}
	needsWrite := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		fresh, err := checkSchema(tx, s.path)
		if err != nil {
			return err
		}
		needsWrite = fresh
		for _, db := range dataBuckets {
			if tx.Bucket(db.name) == nil {
				needsWrite = true
			}
		}
		if b := tx.Bucket(bucketRevocations); b != nil {
			return b.ForEach(func(k, _ []byte) error {
				revoked[string(k)] = struct{}{}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if needsWrite {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			if meta.Get(keySchemaVersion) == nil {
				if err := meta.Put(keySchemaVersion, []byte(strconv.Itoa(SchemaVersion))); err != nil {
					return err
				}
			}
			for _, db := range dataBuckets {
				if _, err := tx.CreateBucketIfNotExists(db.name); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("opening store %s: initializing it: %w", s.path, err)
		}
	}
	s.revoked = revoked
	return nil
}
