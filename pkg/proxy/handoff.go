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

// streamReadSize is the buffer a handed-off stream waits on. An idle watch
// holds it for as long as it is open, so it is small; a read that fills it
// is followed by reads into a pooled buffer (smallBuffers) until the burst
// is drained.
const streamReadSize = 512

// streamSlot receives, from the streaming reverse proxy's ModifyResponse,
// the upstream body of a stream that WithStreamHandoff copies.
type streamSlot struct {
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
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Without a cancellation signal in the request's context the
		// reverse proxy may make a context of its own for the upstream
		// request, which it cancels when it returns.
		if req.Method != http.MethodGet || !strings.HasPrefix(req.URL.Path, PathPrefix) || !mayStream(req.URL) || req.Context().Done() == nil {
			h.ServeHTTP(w, req)
			return
		}
		slot := &streamSlot{}
		defer slot.close() // if h panics after the hand-off
		h.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), streamSlotKey{}, slot)))
		if body := slot.body; body != nil {
			slot.body = nil
			copyStream(w, body)
		}
	})
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

// handOffStream is the streaming reverse proxy's ModifyResponse: it moves
// the body of a streamed answer into the request's slot, if there is one,
// so that the reverse proxy writes the headers, copies nothing and returns.
// It runs after the reverse proxy has removed the hop-by-hop headers.
func handOffStream(res *http.Response) error {
	if res.StatusCode != http.StatusOK || res.ContentLength != -1 || len(res.Trailer) > 0 || res.Request == nil {
		// Trailers are copied by the reverse proxy after the body.
		return nil
	}
	slot, ok := res.Request.Context().Value(streamSlotKey{}).(*streamSlot)
	if !ok || slot.body != nil {
		return nil
	}
	slot.body = res.Body
	res.Body = http.NoBody
	return nil
}

// copyStream copies a handed-off upstream body to w, flushing the headers
// first and then every write. It waits for data on a small buffer; a read
// that fills it is followed by reads into a pooled buffer, each written and
// flushed, until one comes back short, and the pooled buffer is returned
// before waiting again. It stops when the client is gone (a failed write or
// flush) and panics with http.ErrAbortHandler on an upstream read error
// other than io.EOF. It closes body in every case.
func copyStream(w http.ResponseWriter, body io.ReadCloser) {
	defer body.Close()
	rc := http.NewResponseController(w)
	if !flush(rc) {
		return
	}
	small := make([]byte, streamReadSize)
	for {
		n, err := body.Read(small)
		if n > 0 && !writeFlush(w, rc, small[:n]) {
			return
		}
		if err == nil && n == len(small) {
			err = drainBurst(w, rc, body)
		}
		if err != nil {
			if err == io.EOF || err == errClientGone {
				return
			}
			if !errors.Is(err, context.Canceled) {
				klog.V(2).InfoS("Reverse proxy: read error during body copy", "err", err)
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// errClientGone reports a failed write or flush to the client.
var errClientGone = errors.New("client gone")

// drainBurst copies what follows a read that filled the small buffer with a
// pooled buffer, until a read comes back short or fails.
func drainBurst(w http.ResponseWriter, rc *http.ResponseController, body io.Reader) error {
	buf := smallBuffers.Get()
	defer smallBuffers.Put(buf)
	for {
		n, err := body.Read(buf)
		if n > 0 && !writeFlush(w, rc, buf[:n]) {
			return errClientGone
		}
		if err != nil || n < len(buf) {
			return err
		}
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
