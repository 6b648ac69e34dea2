package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/klog/v2"
)

// codecs serialize the Status objects of the proxy's own errors, in whatever
// form the client accepts (JSON, YAML, protobuf), as kube-apiserver does.
var codecs = func() runtime.NegotiatedSerializer {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(scheme).WithoutConversion()
}()

var statusGV = schema.GroupVersion{Version: "v1"}

// clusterResource names clusters in NotFound errors: clusters.portcullis.dev "x" not found.
var clusterResource = schema.GroupResource{Group: "portcullis.dev", Resource: "clusters"}

// writeError writes err as a Kubernetes Status, never an HTML page. Errors
// that are not API errors become 500s with their message.
func writeError(w http.ResponseWriter, req *http.Request, err error) {
	responsewriters.ErrorNegotiated(err, codecs, statusGV, w, req)
}

// errUpstreamRejectedCredential is returned by the upstream transport when
// the API server refused Portcullis's own token: the user's credential was
// fine, so the client must not see a 401 (kubectl would try to log in again).
var errUpstreamRejectedCredential = errors.New("the upstream API server refused Portcullis's credential")

// errorResponder reports the failures of the upgrade-aware handler (dialing,
// TLS, the upstream round trip) as a 503 Status naming the cluster.
type errorResponder struct {
	cluster string
}

func (e errorResponder) Error(w http.ResponseWriter, req *http.Request, err error) {
	if errors.Is(err, context.Canceled) && req.Context().Err() != nil {
		// The client went away; nobody reads an answer.
		klog.V(4).InfoS("Proxied request canceled by the client", "cluster", e.cluster, "path", req.URL.Path)
		if rec, ok := w.(*statusRecorder); ok {
			rec.canceled = true
		}
		return
	}
	var msg string
	switch {
	case errors.Is(err, errUpstreamRejectedCredential):
		msg = fmt.Sprintf("cluster %q: its API server refused Portcullis's own credential; an administrator must check the cluster's upstream credential (tokenFile, kubeconfig or inCluster) and the proxy's RBAC", e.cluster)
	case errors.Is(err, errNoToken):
		msg = fmt.Sprintf("cluster %q: Portcullis has no credential for its API server; an administrator must check the cluster's upstream credential (tokenFile, kubeconfig or inCluster)", e.cluster)
	default:
		msg = fmt.Sprintf("cluster %q: its API server is unreachable; try again later", e.cluster)
	}
	klog.ErrorS(err, "Proxying to the upstream API server failed", "cluster", e.cluster, "method", req.Method, "path", req.URL.Path)
	se := apierrors.NewServiceUnavailable(msg)
	writeError(w, req, se)
}

// errNoToken wraps failures to read the upstream token file.
var errNoToken = errors.New("no upstream token")
