package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/gofrs/flock"

	"portcullis.dev/portcullis/pkg/portalapi"
)

// The token cache: one JSON file per Portcullis server in the cache
// directory (a subdirectory Portcullis creates, 0700), each written 0600 by
// rename, and a lock file beside it (github.com/gofrs/flock: flock(2) on
// Unix, LockFileEx on Windows).
// Every command that reads or changes a server's cache holds its lock, so
// kubectl processes started together do one login and one refresh between
// them: the first does it, the others wait and then find the result.

// cacheEntry is the cached state of one Portcullis server.
type cacheEntry struct {
	Server       string                 `json:"server"`
	RefreshToken string                 `json:"refresh_token,omitempty"`
	Session      portalapi.SessionInfo  `json:"session"`
	Tokens       map[string]cachedToken `json:"tokens,omitempty"`
}

type cachedToken struct {
	Token     string    `json:"token"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Exchanged marks a token got by exchanging an ID token (login
	// --id-token-file); IDTokenFile is where that ID token was read from,
	// for exchanging again ("" for stdin). The ID token is never cached.
	Exchanged   bool   `json:"exchanged,omitempty"`
	IDTokenFile string `json:"id_token_file,omitempty"`
}

// refreshMargin is how long before its expiry a token is replaced: a
// minute, or a quarter of its lifetime for short-lived tokens.
func (t cachedToken) refreshMargin() time.Duration {
	m := time.Minute
	if life := t.ExpiresAt.Sub(t.IssuedAt); life > 0 && life/4 < m {
		m = life / 4
	}
	return m
}

// fresh reports whether the token can be handed out at now without a refresh.
func (t cachedToken) fresh(now time.Time) bool {
	return t.Token != "" && now.Add(t.refreshMargin()).Before(t.ExpiresAt)
}

// usable reports whether the token is still valid at now at all.
func (t cachedToken) usable(now time.Time) bool {
	return t.Token != "" && now.Before(t.ExpiresAt)
}

// tokenCache is the cache directory.
type tokenCache struct {
	dir string
}

// cacheSubdir is the directory Portcullis keeps its cache in, under the
// directory the user names (--cache-dir, $PORTCULLIS_CACHE_DIR) or their
// cache directory. Only this one is made private: a directory the user
// names is theirs (it may be their home directory) and is never changed.
const cacheSubdir = "portcullis"

// cacheBase is the directory the cache subdirectory goes in: the flag,
// else $PORTCULLIS_CACHE_DIR, else the user's cache directory.
func (d *Deps) cacheBase(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if v := d.Getenv("PORTCULLIS_CACHE_DIR"); v != "" {
		return v, nil
	}
	base, err := d.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding your cache directory: %w; set PORTCULLIS_CACHE_DIR or --cache-dir", err)
	}
	return base, nil
}

// openCache opens the token cache under the directory flag names, or the
// default one (cacheBase).
func (d *Deps) openCache(flag string) (*tokenCache, error) {
	base, err := d.cacheBase(flag)
	if err != nil {
		return nil, err
	}
	c, err := openCache(filepath.Join(base, cacheSubdir))
	if err == nil {
		d.debugf(1, "token cache: %s", c.dir)
	}
	return c, err
}

// openCache opens the cache directory dir, creating it (0700) if it does
// not exist. An existing one is used only if other users cannot read it:
// Portcullis never changes the mode of a directory it did not create.
func openCache(dir string) (*tokenCache, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("creating the token cache directory %s: %w", filepath.Dir(dir), err)
	}
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return &tokenCache{dir: dir}, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("creating the token cache directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the token cache directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("the token cache %s is not a directory: remove it, or choose another directory with --cache-dir", dir)
	}
	// Windows has ACLs, not modes; a profile's cache directory is private.
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the token cache directory %s can be read by other users (mode %#o), and portcullis does not change directories it did not create: make it private with `chmod 700 %s`, or remove it", dir, fi.Mode().Perm(), dir)
	}
	return &tokenCache{dir: dir}, nil
}

func cacheKey(server string) string {
	sum := sha256.Sum256([]byte(server))
	return hex.EncodeToString(sum[:12])
}

func (c *tokenCache) path(server string) string {
	return filepath.Join(c.dir, cacheKey(server)+".json")
}

// lock takes the server's lock, waiting until ctx is done. onWait is called
// once if the lock is held by another process.
func (c *tokenCache) lock(ctx context.Context, server string, onWait func()) (unlock func(), err error) {
	name := filepath.Join(c.dir, cacheKey(server)+".lock")
	fl := flock.New(name, flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err == nil && !ok {
		if onWait != nil {
			onWait()
		}
		ok, err = fl.TryLockContext(ctx, 50*time.Millisecond)
	}
	if err != nil || !ok {
		_ = fl.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for another portcullis process to finish with the token cache %s: %w", name, ctx.Err())
		}
		return nil, fmt.Errorf("locking the token cache %s: %w", name, err)
	}
	return func() {
		_ = fl.Unlock()
		_ = fl.Close()
	}, nil
}

// load reads the server's entry; a missing file is an empty entry. Call it
// holding the lock.
func (c *tokenCache) load(server string) (*cacheEntry, error) {
	e := &cacheEntry{Server: server}
	b, err := os.ReadFile(c.path(server))
	if errors.Is(err, fs.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the token cache: %w", err)
	}
	if err := json.Unmarshal(b, e); err != nil || e.Server != server {
		// A damaged or foreign file is worth nothing: start over.
		return &cacheEntry{Server: server}, nil
	}
	return e, nil
}

// save writes the entry (0600, by rename). Call it holding the lock.
func (c *tokenCache) save(e *cacheEntry) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing the token cache: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("writing the token cache: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing the token cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the token cache: %w", err)
	}
	if err := os.Rename(f.Name(), c.path(e.Server)); err != nil {
		return fmt.Errorf("writing the token cache: %w", err)
	}
	return nil
}

// remove deletes the server's entry. Call it holding the lock.
func (c *tokenCache) remove(server string) error {
	if err := os.Remove(c.path(server)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the token cache: %w", err)
	}
	return nil
}
