package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"portcullis.dev/portcullis/pkg/store"
)

// errClosed is returned by every method called after Close.
var errClosed = errors.New("kubernetes store is closed; this is a bug in the caller, which must not use a store after closing it")

// unavailableError is a failure to reach the API server, or an answer saying
// it cannot serve now. It wraps store.ErrUnavailable and the cause.
type unavailableError struct {
	host  string
	cause error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("the state store (Kubernetes API at %s) is unreachable or failing: %v", e.host, e.cause)
}

func (e *unavailableError) Is(target error) bool { return target == store.ErrUnavailable }
func (e *unavailableError) Unwrap() error        { return e.cause }

// unavailable reports whether err means the API server could not be reached
// or could not serve the request now (as opposed to refusing it).
func unavailable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		return code >= 500 || code == 429
	}
	var (
		urlErr *url.Error
		netErr net.Error
	)
	return errors.As(err, &urlErr) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// apiError turns an error of a request made under the caller's ctx into one
// callers can test with errors.Is: the caller's own context error, the
// store's sentinel errors, or an explanation of a permission problem. The
// request's own timeout, unlike the caller's, counts as unavailability.
func (s *Store) apiError(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	case apierrors.IsNotFound(err):
		return store.ErrNotFound
	case apierrors.IsAlreadyExists(err):
		return store.ErrAlreadyExists
	case apierrors.IsConflict(err):
		return fmt.Errorf("%w: %v", store.ErrConflict, err)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("the Kubernetes API at %s refused the request (%w); the account Portcullis runs as needs get, list, watch, create, update and delete on secrets and configmaps in namespace %s (see docs/configuration.md)", s.host, err, s.namespace)
	case unavailable(err):
		return &unavailableError{host: s.host, cause: err}
	default:
		return err
	}
}
