package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/klog/v2"
)

// streamSlot receives, from the streaming reverse proxy's ModifyResponse,
// the upstream response of a stream whose body WithStreamHandoff copies.
type streamSlot struct {
	res  *http.Response
	body io.ReadCloser
}

type streamSlotKey struct{}

// WithStreamHandoff lets a proxied stream (a watch, logs -f) be copied to the
// client from this filter's frame instead of from deep inside the handler
// chain and the reverse proxy. For GET requests on PathPrefix paths that may
// be streams (see mayStream) it puts a slot in the request context and
// calls h. When the proxy gets a streamed answer (status 200, no
// Content-Length) it writes the response headers, leaves the upstream body
// in the slot and returns; once h has returned, WithStreamHandoff flushes
// the headers and copies the body to w itself, flushing every write, until
// the upstream ends it.
//
// Everything between this filter and the proxy has then returned: an idle
// stream no longer sits under authorization, the apiserver's mux and the
// reverse proxy. Install it inside the audit filter (WithAudit), so the
// audit event's ResponseComplete stage is still emitted when the stream
// ends. An upstream read error other than io.EOF aborts the response with
// http.ErrAbortHandler, as the reverse proxy does, so the client sees the
// stream reset rather than a clean end.
func WithStreamHandoff(h http.Handler) http.Handler {
	return &streamHandoff{next: h}
}

// streamHandoff is a type rather than a closure: an idle stream waits under
// this frame and every frame above it, so each is kept small (see
// copyStream).
type streamHandoff struct {
	next http.Handler
}

func (s *streamHandoff) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	slot, req := withStreamSlot(req)
	if slot == nil {
		s.next.ServeHTTP(w, req)
		return
	}
	defer slot.close() // if next panics after the hand-off
	s.next.ServeHTTP(w, req)
	if body := slot.body; body != nil {
		// The reverse proxy has copied the upstream's response headers and
		// written them; the upstream transport keeps the response for as long
		// as the stream lasts, but reads neither its headers nor its Request
		// (the outgoing request, with the headers it cloned) any more.
		slot.res.Header, slot.res.Request = nil, nil
		slot.res, slot.body = nil, nil
		copyStream(w, body)
	}
}

// withStreamSlot returns a slot and a request carrying it for a GET that may
// be a stream, and no slot otherwise.
func withStreamSlot(req *http.Request) (*streamSlot, *http.Request) {
	// Without a cancellation signal in the request's context the
	// reverse proxy may make a context of its own for the upstream
	// request, which it cancels when it returns.
	if req.Method != http.MethodGet || !strings.HasPrefix(req.URL.Path, PathPrefix) || !mayStream(req.URL) || req.Context().Done() == nil {
		return nil, req
	}
	slot := &streamSlot{}
	return slot, req.WithContext(context.WithValue(req.Context(), streamSlotKey{}, slot))
}

// mayStream is a quick test that spares ordinary GETs the slot (and the
// copy of the request carrying it): it is true for every request that the
// proxy sends through its streaming reverse proxy (watches, by query or by
// the legacy /watch/ path, and followed logs), unless the client escaped
// the query key, in which case the reverse proxy copies the stream itself.
func mayStream(u *url.URL) bool {
	return strings.Contains(u.RawQuery, "watch") || strings.Contains(u.RawQuery, "follow") || strings.Contains(u.Path, "/watch/")
}

func (s *streamSlot) close() {
	if s.body != nil {
		_ = s.body.Close()
		s.body = nil
	}
}

// HandOffStream is the streaming reverse proxy's ModifyResponse: it moves
// the body of a streamed answer into the request's slot, if there is one,
// so that the reverse proxy writes the headers, copies nothing and returns.
// It runs after the reverse proxy has removed the hop-by-hop headers.
func HandOffStream(res *http.Response) error {
	if res.StatusCode != http.StatusOK || res.ContentLength != -1 || len(res.Trailer) > 0 || res.Request == nil {
		// Trailers are copied by the reverse proxy after the body.
		return nil
	}
	slot, ok := res.Request.Context().Value(streamSlotKey{}).(*streamSlot)
	if !ok || slot.body != nil {
		return nil
	}
	slot.res, slot.body = res, res.Body
	res.Body = http.NoBody
	return nil
}

// copyStream copies a handed-off upstream body to w, flushing the headers
// first and then every write. It stops when the client is gone (a failed
// write or flush) and panics with http.ErrAbortHandler on an upstream read
// error other than io.EOF. It closes body in every case.
//
// An idle stream spends its life in the first Read below, so that is kept
// cheap: the wait is a one-byte read, and only when data comes does relay
// borrow a pooled buffer for it. The goroutine's stack matters as much: the
// runtime halves an idle goroutine's stack only while it uses less than a
// quarter of it, so this frame, and those of the filters above it, stay
// small (see hotPathChain).
func copyStream(w http.ResponseWriter, body io.ReadCloser) {
	defer body.Close()
	rc := http.NewResponseController(w)
	if !flush(rc) {
		return
	}
	first := make([]byte, 1)
	for {
		n, err := body.Read(first)
		if n > 0 {
			err = relay(w, rc, body, first[0], err)
		}
		if err != nil {
			endStream(err)
			return
		}
	}
}

// endStream handles the end of a copied stream: nothing for io.EOF or a
// client that went away, an aborted response for an upstream read error.
func endStream(err error) {
	if err == io.EOF || err == errClientGone {
		return
	}
	if !errors.Is(err, context.Canceled) {
		klog.V(2).InfoS("Reverse proxy: read error during body copy", "err", err)
	}
	panic(http.ErrAbortHandler)
}

// errClientGone reports a failed write or flush to the client.
var errClientGone = errors.New("client gone")

// relay writes first, and whatever the upstream has ready after it, with a
// pooled buffer: one write and one flush for an event that arrived whole. A
// read that fills the buffer is followed by more, each written and flushed,
// until one comes back short or fails. readErr is the error of the read that
// returned first; relay returns the error that ends the stream, if any.
func relay(w http.ResponseWriter, rc *http.ResponseController, body io.Reader, first byte, readErr error) error {
	buf := smallBuffers.Get()
	defer smallBuffers.Put(buf)
	buf[0] = first
	n, off := 1, 1
	for {
		if readErr == nil {
			var m int
			m, readErr = body.Read(buf[off:])
			n += m
		}
		if !writeFlush(w, rc, buf[:n]) {
			return errClientGone
		}
		if readErr != nil || n < len(buf) {
			return readErr
		}
		n, off = 0, 0
	}
}

func writeFlush(w http.ResponseWriter, rc *http.ResponseController, p []byte) bool {
	if _, err := w.Write(p); err != nil {
		return false
	}
	return flush(rc)
}

// flush reports false when the client is gone. A writer that cannot flush
// is written to all the same, as the reverse proxy does.
func flush(rc *http.ResponseController) bool {
	err := rc.Flush()
	return err == nil || errors.Is(err, http.ErrNotSupported)
}
