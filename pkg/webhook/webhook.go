package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authenticationv1beta1 "k8s.io/api/authentication/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/authn"
)

// PathPrefix is where the endpoint is served: PathPrefix + "/<cluster>".
const PathPrefix = "/tokenreview"

// MaxBodyBytes bounds a TokenReview request. Tokens over 64 KiB are refused
// anyway; the rest of a review is small.
const MaxBodyBytes = 128 << 10

// Audit annotation keys recorded for every review.
const (
	AnnotationUser     = "portcullis.dev/user"
	AnnotationGroups   = "portcullis.dev/groups"
	AnnotationCluster  = "portcullis.dev/cluster"
	AnnotationDecision = "portcullis.dev/decision"
	AnnotationReason   = "portcullis.dev/reason"
	AnnotationSource   = "portcullis.dev/token-source"
)

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

func init() {
	utilruntimeMust(authenticationv1.AddToScheme(scheme))
	utilruntimeMust(authenticationv1beta1.AddToScheme(scheme))
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
}

func utilruntimeMust(err error) {
	if err != nil {
		panic(err)
	}
}

// Authenticator is what the handler needs of pkg/authn.
type Authenticator interface {
	Authenticate(ctx context.Context, cluster, raw string) (*authn.Result, error)
}

// Handler answers TokenReviews.
type Handler struct {
	Authn Authenticator
	// APIAudiences returns the API audiences a cluster's kube-apiserver may
	// ask for (config clusters[].apiAudiences), and whether the cluster exists.
	APIAudiences func(cluster string) ([]string, bool)
	// DefaultCluster is used for PathPrefix without a cluster ("" = none).
	DefaultCluster func() string
	Metrics        *Metrics
}

type review struct {
	token     string
	audiences []string
	v1beta1   bool
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		h.fail(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}, r.Method))
		return
	}
	cluster := strings.Trim(strings.TrimPrefix(r.URL.Path, PathPrefix), "/")
	if cluster == "" && h.DefaultCluster != nil {
		cluster = h.DefaultCluster()
	}
	if cluster == "" || strings.Contains(cluster, "/") {
		h.fail(w, r, apierrors.NewBadRequest("name the cluster in the path: "+PathPrefix+"/<cluster> (see `portcullis-server webhook-kubeconfig`)"))
		return
	}
	apiAuds, ok := h.APIAudiences(cluster)
	if !ok {
		h.fail(w, r, apierrors.NewNotFound(schema.GroupResource{Resource: "clusters"}, cluster))
		return
	}
	rv, obj, err := decode(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}

	status, err := h.review(r.Context(), cluster, rv, apiAuds)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var out runtime.Object
	gv := authenticationv1.SchemeGroupVersion
	if rv.v1beta1 {
		gv = authenticationv1beta1.SchemeGroupVersion
		in := obj.(*authenticationv1beta1.TokenReview)
		out = &authenticationv1beta1.TokenReview{
			TypeMeta:   metav1.TypeMeta{APIVersion: gv.String(), Kind: "TokenReview"},
			ObjectMeta: metav1.ObjectMeta{Name: in.Name, UID: in.UID, CreationTimestamp: metav1.Now()},
			Status: authenticationv1beta1.TokenReviewStatus{
				Authenticated: status.Authenticated,
				User: authenticationv1beta1.UserInfo{
					Username: status.User.Username, UID: status.User.UID, Groups: status.User.Groups,
					Extra: toV1beta1Extra(status.User.Extra),
				},
				Audiences: status.Audiences,
				Error:     status.Error,
			},
		}
	} else {
		in := obj.(*authenticationv1.TokenReview)
		out = &authenticationv1.TokenReview{
			TypeMeta:   metav1.TypeMeta{APIVersion: gv.String(), Kind: "TokenReview"},
			ObjectMeta: metav1.ObjectMeta{Name: in.Name, UID: in.UID, CreationTimestamp: metav1.Now()},
			Status:     status,
		}
	}
	h.Metrics.observe(status, time.Since(start))
	responsewriters.WriteRawJSON(http.StatusOK, out, w)
}

func toV1beta1Extra(in map[string]authenticationv1.ExtraValue) map[string]authenticationv1beta1.ExtraValue {
	if in == nil {
		return nil
	}
	out := make(map[string]authenticationv1beta1.ExtraValue, len(in))
	for k, v := range in {
		out[k] = authenticationv1beta1.ExtraValue(v)
	}
	return out
}

// review authenticates the token and shapes the status. Every outcome is
// annotated on the request's audit event; the token never is.
//
// The error is an API error, returned only when Portcullis could not decide
// (its own fault): kube-apiserver caches authenticated: false answers for
// its --authentication-token-webhook-cache-ttl, but retries errors and never
// caches them, so an outage must not be reported as a bad token.
func (h *Handler) review(ctx context.Context, cluster string, rv review, apiAuds []string) (authenticationv1.TokenReviewStatus, error) {
	audit.AddAuditAnnotations(ctx, AnnotationCluster, cluster)
	deny := func(reason string) (authenticationv1.TokenReviewStatus, error) {
		audit.AddAuditAnnotations(ctx, AnnotationDecision, "deny", AnnotationReason, reason)
		return authenticationv1.TokenReviewStatus{Authenticated: false, Error: reason}, nil
	}
	if rv.token == "" {
		return deny("no token in spec.token")
	}
	// spec.audiences are the API audiences the kube-apiserver wants the token
	// to be valid for; a cluster token is valid for its cluster's configured
	// API audiences. None in common means the token is not for this server.
	var auds []string
	if len(rv.audiences) > 0 {
		for _, a := range rv.audiences {
			if slices.Contains(apiAuds, a) && !slices.Contains(auds, a) {
				auds = append(auds, a)
			}
		}
		if len(auds) == 0 {
			return deny("token audiences do not include any of spec.audiences")
		}
	}
	res, err := h.Authn.Authenticate(ctx, cluster, rv.token)
	if err != nil {
		var ae *authn.Error
		if errors.As(err, &ae) && ae.Internal {
			klog.ErrorS(err, "TokenReview could not be completed", "cluster", cluster)
			audit.AddAuditAnnotations(ctx, AnnotationDecision, "error", AnnotationReason, ae.Reason)
			return authenticationv1.TokenReviewStatus{}, apierrors.NewInternalError(errors.New(ae.Reason))
		}
		if res != nil && res.User != nil {
			// A valid token the policy refused: say who was refused.
			audit.AddAuditAnnotations(ctx,
				AnnotationUser, res.User.Name,
				AnnotationGroups, strings.Join(res.User.Groups, ","),
				AnnotationSource, res.Source,
			)
		}
		return deny(err.Error())
	}
	audit.AddAuditAnnotations(ctx,
		AnnotationDecision, "allow",
		AnnotationUser, res.User.Name,
		AnnotationGroups, strings.Join(res.User.Groups, ","),
		AnnotationSource, res.Source,
	)
	extra := make(map[string]authenticationv1.ExtraValue, len(res.User.Extra))
	for k, v := range res.User.Extra {
		extra[k] = v
	}
	return authenticationv1.TokenReviewStatus{
		Authenticated: true,
		User: authenticationv1.UserInfo{
			Username: res.User.Name, UID: res.User.UID, Groups: res.User.Groups, Extra: extra,
		},
		Audiences: auds,
	}, nil
}

// decode reads a TokenReview of either version. Errors are API errors the
// caller can be answered with.
func decode(r *http.Request) (review, runtime.Object, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return review{}, nil, apierrors.NewBadRequest("reading the request body: " + err.Error())
	}
	if len(body) > MaxBodyBytes {
		return review{}, nil, apierrors.NewRequestEntityTooLargeError("a TokenReview is limited to 128 KiB")
	}
	obj, gvk, err := codecs.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		return review{}, nil, apierrors.NewBadRequest("the body is not a TokenReview (authentication.k8s.io/v1 or v1beta1): " + sanitize(err.Error()))
	}
	switch in := obj.(type) {
	case *authenticationv1.TokenReview:
		return review{token: in.Spec.Token, audiences: in.Spec.Audiences}, in, nil
	case *authenticationv1beta1.TokenReview:
		return review{token: in.Spec.Token, audiences: in.Spec.Audiences, v1beta1: true}, in, nil
	}
	return review{}, nil, apierrors.NewBadRequest("expected a TokenReview, got " + gvk.String())
}

// sanitize keeps a decoder message short: decoders may quote the input, and
// the input holds a token.
func sanitize(msg string) string {
	if i := strings.IndexAny(msg, "'\"{"); i >= 0 {
		msg = msg[:i]
	}
	return strings.TrimSpace(msg)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.Metrics.observeError()
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	s := status.Status()
	// API errors carry no type: set it, as the apiserver's codecs would, so
	// that clients (client-go) recognise the body as a Status.
	s.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	responsewriters.WriteRawJSON(int(s.Code), &s, w)
}
