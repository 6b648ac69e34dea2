package ldap

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"k8s.io/apiserver/pkg/server/healthz"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// Directories are the configured LDAP identity providers.
type Directories struct {
	list   []*Directory
	byName map[string]*Directory
}

// NewDirectories makes a Directory for each identity provider of cfg that
// has an ldap block.
func NewDirectories(cfg *v1alpha1.PortcullisConfiguration) (*Directories, error) {
	ds := &Directories{byName: map[string]*Directory{}}
	if cfg == nil {
		return ds, nil
	}
	for _, idp := range cfg.IdentityProviders {
		if !idp.IsLDAP() {
			continue
		}
		if _, dup := ds.byName[idp.Name]; dup {
			return nil, fmt.Errorf("identity provider %q is configured twice", idp.Name)
		}
		d, err := New(idp)
		if err != nil {
			return nil, err
		}
		ds.list = append(ds.list, d)
		ds.byName[d.Name()] = d
	}
	return ds, nil
}

// Get returns the directory called name.
func (ds *Directories) Get(name string) (*Directory, bool) {
	if ds == nil {
		return nil, false
	}
	d, ok := ds.byName[name]
	return d, ok
}

// List returns the directories in configuration order.
func (ds *Directories) List() []*Directory {
	if ds == nil {
		return nil
	}
	return append([]*Directory(nil), ds.list...)
}

// CheckBindCredentials binds as Portcullis's account at every directory,
// for the server's start-up: it fails only when a directory refuses the
// bind DN and password (an operator's mistake that no retry cures). A
// directory that cannot be reached now is logged by the caller and left to
// the readiness check: it may come up later.
func (ds *Directories) CheckBindCredentials(ctx context.Context) (unreachable []error, err error) {
	if ds == nil {
		return nil, nil
	}
	var fatal []error
	for _, d := range ds.list {
		cerr := d.Check(ctx)
		switch {
		case cerr == nil:
		case errors.Is(cerr, ErrBindCredentials):
			fatal = append(fatal, cerr)
		default:
			unreachable = append(unreachable, cerr)
		}
	}
	return unreachable, errors.Join(fatal...)
}

// ReadyzChecks are /readyz checks, one per directory ("ldap-<name>"): a
// directory that refuses Portcullis's bind DN and password makes the server
// not ready, with the reason in the check's output (/readyz?verbose), until
// the password file is fixed. A directory that cannot be reached does not:
// only its logins fail (503, naming it), while tokens, refreshes of other
// identity providers, the webhook and the proxy keep working.
func (ds *Directories) ReadyzChecks() []healthz.HealthChecker {
	var out []healthz.HealthChecker
	for _, d := range ds.List() {
		out = append(out, healthz.NamedCheck("ldap-"+d.Name(), func(*http.Request) error {
			if err := d.HealthCheck(); errors.Is(err, ErrBindCredentials) {
				return err
			}
			return nil
		}))
	}
	return out
}
