package proxy

import (
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxRequestHeaderBytes bounds the headers of a proxied request, counted as
// on the HTTP/1.1 wire ("Name: value" and a line end per value) whatever the
// protocol, without the Authorization header (the credential is never
// forwarded, and is bounded by the token size limit, 64 KiB). kube-apiserver
// and Go servers accept up to 1 MiB, and the proxy forwards headers
// upstream and keeps them for as long as a watch is open: no client kubectl,
// client-go or a browser sends more than a few KiB.
const MaxRequestHeaderBytes = 32 << 10

// RequestHeaderBytes is the size of h that MaxRequestHeaderBytes bounds.
func RequestHeaderBytes(h http.Header) int {
	n := 0
	for name, values := range h {
		if name == "Authorization" {
			continue
		}
		for _, v := range values {
			n += len(name) + len(v) + 4 // ": " and CRLF
		}
	}
	return n
}

// ReasonRequestHeaderFieldsTooLarge is the Status reason of a 431: metav1
// has none for that code.
const ReasonRequestHeaderFieldsTooLarge metav1.StatusReason = "RequestHeaderFieldsTooLarge"

// NewRequestHeaderFieldsTooLarge is the error a proxied request with headers
// over MaxRequestHeaderBytes is answered with: 431 (RFC 6585).
func NewRequestHeaderFieldsTooLarge(size int) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure,
		Code:   http.StatusRequestHeaderFieldsTooLarge,
		Reason: ReasonRequestHeaderFieldsTooLarge,
		Message: fmt.Sprintf("the request's headers are %d bytes; the proxy accepts at most %d (not counting Authorization): send fewer or shorter headers",
			size, MaxRequestHeaderBytes),
	}}
}
