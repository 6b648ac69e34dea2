package webhook

import (
	"context"
	"encoding/json"
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/klog/v2"
	kjson "sigs.k8s.io/json"

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

// review is what the handler needs of a TokenReview request.
type review struct {
	name      string
	uid       types.UID
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
	rv, err := decode(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}

	oc, err := h.review(r.Context(), cluster, rv, apiAuds)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	apiVersion := apiVersionV1
	if rv.v1beta1 {
		apiVersion = apiVersionV1beta1
	}
	h.Metrics.observe(authenticationv1.TokenReviewStatus{Authenticated: oc.user != nil}, time.Since(start))
	body := appendAnswer(make([]byte, 0, 512), apiVersion, rv.name, rv.uid, time.Now(), oc)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// writeJSON answers with v as compact JSON. (The apiserver's
// responsewriters.WriteRawJSON indents, which costs a second pass and a
// larger body; kube-apiserver does not care.)
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// outcome is a review's answer, in no particular TokenReview version.
type outcome struct {
	// user is who the token authenticates; nil if it does not.
	user      *user.DefaultInfo
	audiences []string
	// reason is why the token does not authenticate.
	reason string
}

// review authenticates the token and decides the answer. Every outcome is
// annotated on the request's audit event (in one call: one lock of the
// event); the token never is.
//
// The error is an API error, returned only when Portcullis could not decide
// (its own fault): kube-apiserver caches authenticated: false answers for
// its --authentication-token-webhook-cache-ttl, but retries errors and never
// caches them, so an outage must not be reported as a bad token.
func (h *Handler) review(ctx context.Context, cluster string, rv review, apiAuds []string) (outcome, error) {
	deny := func(reason string) (outcome, error) {
		audit.AddAuditAnnotations(ctx, AnnotationCluster, cluster, AnnotationDecision, "deny", AnnotationReason, reason)
		return outcome{reason: reason}, nil
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
			audit.AddAuditAnnotations(ctx, AnnotationCluster, cluster, AnnotationDecision, "error", AnnotationReason, ae.Reason)
			if ae.Unavailable {
				return outcome{}, unavailable(ae.Reason)
			}
			return outcome{}, apierrors.NewInternalError(errors.New(ae.Reason))
		}
		reason := err.Error()
		if res != nil && res.User != nil {
			// A valid token the policy refused: say who was refused.
			audit.AddAuditAnnotations(ctx,
				AnnotationCluster, cluster,
				AnnotationDecision, "deny",
				AnnotationReason, reason,
				AnnotationUser, res.User.Name,
				AnnotationGroups, strings.Join(res.User.Groups, ","),
				AnnotationSource, res.Source,
			)
			return outcome{reason: reason}, nil
		}
		return deny(reason)
	}
	audit.AddAuditAnnotations(ctx,
		AnnotationCluster, cluster,
		AnnotationDecision, "allow",
		AnnotationUser, res.User.Name,
		AnnotationGroups, strings.Join(res.User.Groups, ","),
		AnnotationSource, res.Source,
	)
	return outcome{user: res.User, audiences: auds}, nil
}

// unavailable is the answer when the token cannot be checked now because
// something Portcullis depends on (an identity provider) cannot be reached:
// a 503 whose Status suggests a retry in a second, which kube-apiserver's
// webhook client takes as an error to retry with its backoff (as it does a
// 500) and never caches. No Retry-After header: client-go would then also
// retry inside each attempt, multiplying the wait.
func unavailable(reason string) error {
	err := apierrors.NewServiceUnavailable("Portcullis cannot check the token now: " + reason)
	err.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
	return err
}

const (
	apiVersionV1      = "authentication.k8s.io/v1"
	apiVersionV1beta1 = "authentication.k8s.io/v1beta1"
)

// decode reads a TokenReview of either version. Errors are API errors the
// caller can be answered with.
func decode(r *http.Request) (review, error) {
	body, err := readBody(r)
	if err != nil {
		return review{}, apierrors.NewBadRequest("reading the request body: " + err.Error())
	}
	if len(body) > MaxBodyBytes {
		return review{}, apierrors.NewRequestEntityTooLargeError("a TokenReview is limited to 128 KiB")
	}
	return decodeBody(body)
}

// decodeBody decodes a TokenReview: kube-apiserver's JSON on a fast path, and
// anything else as the universal deserializer does, refusing what is
// ambiguous (strictCheck: a key given twice, no spec).
func decodeBody(body []byte) (review, error) {
	if rv, ok := scanReview(body); ok {
		return rv, nil
	}
	rv, obj, err := decodeOther(body)
	if err != nil {
		return review{}, err
	}
	if err := strictCheck(body, obj); err != nil {
		return review{}, err
	}
	return rv, nil
}

// decodeOther is decodeBody's reading of the bodies scanReview leaves: the
// JSON fast path, else the universal deserializer. obj is the decoded object
// when the universal deserializer decoded it.
func decodeOther(body []byte) (review, runtime.Object, error) {
	if rv, ok := decodeJSON(body); ok {
		return rv, nil, nil
	}
	return decodeUniversalObject(body)
}

// decodeUniversalObject decodes a TokenReview in any format apimachinery
// reads (JSON, YAML, protobuf), without decodeBody's strictness.
func decodeUniversalObject(body []byte) (review, runtime.Object, error) {
	obj, gvk, err := codecs.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		return review{}, nil, apierrors.NewBadRequest("the body is not a TokenReview (authentication.k8s.io/v1 or v1beta1): " + sanitize(err.Error()))
	}
	switch in := obj.(type) {
	case *authenticationv1.TokenReview:
		in.SetGroupVersionKind(*gvk)
		return review{name: in.Name, uid: in.UID, token: in.Spec.Token, audiences: in.Spec.Audiences}, in, nil
	case *authenticationv1beta1.TokenReview:
		in.SetGroupVersionKind(*gvk)
		return review{name: in.Name, uid: in.UID, token: in.Spec.Token, audiences: in.Spec.Audiences, v1beta1: true}, in, nil
	}
	return review{}, nil, apierrors.NewBadRequest("expected a TokenReview, got " + gvk.String())
}

// readBody reads up to MaxBodyBytes+1 bytes of the body, sized by
// Content-Length when there is one (io.ReadAll would grow its buffer from
// 512 bytes).
func readBody(r *http.Request) ([]byte, error) {
	size := 512
	if n := r.ContentLength; n > 0 && n <= MaxBodyBytes {
		size = int(n) + 1 // room to read EOF without growing
	}
	buf := make([]byte, 0, size)
	lr := io.LimitReader(r.Body, MaxBodyBytes+1)
	for {
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

// decodeJSON is the fast path for what kube-apiserver sends: a JSON v1 or
// v1beta1 TokenReview. It decodes the body once, as the universal
// deserializer's JSON decoder does (case-sensitive keys, into the same Go
// type: v1 and v1beta1 TokenReviews have the same fields and JSON names), and
// skips the deserializer's own passes (recognising the format, then reading
// apiVersion and kind with a case-insensitive decoder before decoding the
// object).
//
// It reports false for anything that is not plainly such a review, and the
// caller then takes the universal deserializer's path, so every body is
// accepted or refused (with the same message) as before:
//   - a body that does not start with '{' (YAML, protobuf, a byte-order mark,
//     not JSON at all);
//   - JSON that does not decode into a TokenReview (the deserializer's error
//     messages are kept);
//   - any key that is not a TokenReview field (a "Kind" or "APIVERSION" that
//     the deserializer's case-insensitive apiVersion and kind lookup would
//     have read, a misspelling) and any key given twice: the deserializer
//     ignores unknown keys and keeps the last of duplicates, and taking its
//     path for those keeps its exact reading of apiVersion and kind;
//   - an apiVersion or kind other than a v1 or v1beta1 TokenReview.
func decodeJSON(body []byte) (review, bool) {
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	if i == len(body) || body[i] != '{' {
		return review{}, false
	}
	var in authenticationv1.TokenReview
	strictErrs, err := kjson.UnmarshalStrict(body, &in)
	if err != nil || len(strictErrs) > 0 {
		return review{}, false
	}
	return typed(review{name: in.Name, uid: in.UID, token: in.Spec.Token, audiences: in.Spec.Audiences}, in.Kind, in.APIVersion)
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
	writeJSON(w, int(s.Code), &s)
}
