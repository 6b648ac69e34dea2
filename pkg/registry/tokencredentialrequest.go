package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/validation"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/clientlimit"
	"portcullis.dev/portcullis/pkg/jwtpeek"
	"portcullis.dev/portcullis/pkg/token"
)

// Audit annotations of an exchange. The token itself never appears.
const (
	AnnotationCluster = "portcullis.dev/cluster"
	AnnotationUser    = "portcullis.dev/user"
	AnnotationSource  = "portcullis.dev/credential-source"
	AnnotationResult  = "portcullis.dev/exchange-result"
	AnnotationTokenID = "portcullis.dev/jti"
	AnnotationExpires = "portcullis.dev/expires"
)

// TokenCredentialRequestREST exchanges tokens for cluster tokens.
type TokenCredentialRequestREST struct {
	authn   Authenticator
	minter  Minter
	grants  Store
	config  func() *configv1alpha1.PortcullisConfiguration
	clock   clock.PassiveClock
	limiter *clientlimit.Limiter
	metrics *exchangeMetrics
}

var (
	_ rest.Creater              = (*TokenCredentialRequestREST)(nil)
	_ rest.Scoper               = (*TokenCredentialRequestREST)(nil)
	_ rest.SingularNameProvider = (*TokenCredentialRequestREST)(nil)
	_ rest.Storage              = (*TokenCredentialRequestREST)(nil)
	_ rest.TableConvertor       = (*TokenCredentialRequestREST)(nil)
)

// NewTokenCredentialRequestREST returns the storage of tokencredentialrequests.
func NewTokenCredentialRequestREST(o Options) *TokenCredentialRequestREST {
	clk := o.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &TokenCredentialRequestREST{
		authn:   o.Authn,
		minter:  o.Minter,
		grants:  o.Store,
		config:  o.Config,
		clock:   clk,
		limiter: newClientLimiter(o.RateLimit),
		metrics: defaultExchangeMetrics(),
	}
}

// New implements rest.Storage.
func (r *TokenCredentialRequestREST) New() runtime.Object { return &v1alpha1.TokenCredentialRequest{} }

// Destroy implements rest.Storage.
func (r *TokenCredentialRequestREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *TokenCredentialRequestREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *TokenCredentialRequestREST) GetSingularName() string { return "tokencredentialrequest" }

// ConvertToTable implements rest.TableConvertor (kubectl create without -o).
func (r *TokenCredentialRequestREST) ConvertToTable(ctx context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	return tokenCredentialRequestTable(obj)
}

// Create exchanges the request's token. Every outcome of the exchange itself
// is a 201 with the status filled in; only a malformed request (422), a
// client over its rate limit (429) or a wrong kind (400) is an error.
func (r *TokenCredentialRequestREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	start := r.clock.Now()
	in, ok := obj.(*v1alpha1.TokenCredentialRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected a TokenCredentialRequest, got %T", obj))
	}
	cfg := r.config()
	v1alpha1.DefaultTokenCredentialRequest(in, clusterNames(cfg))
	if errs := validation.ValidateTokenCredentialRequest(in); len(errs) > 0 {
		r.metrics.observe("invalid", 0)
		return nil, apierrors.NewInvalid(v1alpha1.Kind("TokenCredentialRequest"), in.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	if !r.limiter.Allow(clientKey(ctx), start) {
		r.metrics.observe("throttled", 0)
		audit.AddAuditAnnotation(ctx, AnnotationResult, "throttled")
		return nil, apierrors.NewTooManyRequests("too many TokenCredentialRequests from this client: slow down and retry", 1)
	}

	out := &v1alpha1.TokenCredentialRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:              in.Name,
			GenerateName:      in.GenerateName,
			Labels:            in.Labels,
			CreationTimestamp: metav1.NewTime(start),
		},
		// Never echo the token.
		Spec: v1alpha1.TokenCredentialRequestSpec{Cluster: in.Spec.Cluster},
	}
	if out.Name == "" && out.GenerateName != "" {
		out.Name = names.SimpleNameGenerator.GenerateName(out.GenerateName)
	}
	if options != nil && dryrun.IsDryRun(options.DryRun) {
		return out, nil
	}
	var result string
	out.Status, result = r.exchange(ctx, cfg, in.Spec.Cluster, in.Spec.Token, start)
	r.metrics.observe(result, r.clock.Now().Sub(start))
	audit.AddAuditAnnotation(ctx, AnnotationResult, result)
	return out, nil
}

// exchange authenticates raw for cluster and mints a token. It returns the
// status and a short result for metrics and audit.
func (r *TokenCredentialRequestREST) exchange(ctx context.Context, cfg *configv1alpha1.PortcullisConfiguration, cluster, raw string, now time.Time) (v1alpha1.TokenCredentialRequestStatus, string) {
	audit.AddAuditAnnotation(ctx, AnnotationCluster, cluster)
	cl := findCluster(cfg, cluster)
	if cl == nil {
		return failed(v1alpha1.ReasonUnknownCluster, fmt.Sprintf("no cluster %q is configured in Portcullis (known: %s)", cluster, strings.Join(clusterNames(cfg), ", ")))
	}
	res, err := r.authn.Authenticate(ctx, cluster, raw)
	if err != nil {
		var ae *authn.Error
		switch {
		case errors.As(err, &ae) && ae.Denied:
			if res != nil && res.User != nil {
				audit.AddAuditAnnotation(ctx, AnnotationUser, res.User.Name)
			}
			return failed(v1alpha1.ReasonPolicyDenied, "access denied: "+ae.Reason)
		case errors.As(err, &ae) && ae.Internal:
			return failed(v1alpha1.ReasonInternalError, "Portcullis could not check the token ("+ae.Reason+"); retry later")
		case errors.As(err, &ae):
			return failed(v1alpha1.ReasonAuthenticationFailed, "authentication failed: "+ae.Reason)
		default:
			klog.ErrorS(err, "Authenticating a token for a credential exchange failed", "cluster", cluster)
			return failed(v1alpha1.ReasonInternalError, "Portcullis could not check the token; retry later")
		}
	}
	u := res.User
	audit.AddAuditAnnotations(ctx, AnnotationUser, u.Name, AnnotationSource, res.Source)

	lifetime := cfg.Tokens.Lifetime.Duration
	if cl.TokenLifetime != nil && cl.TokenLifetime.Duration > 0 {
		lifetime = cl.TokenLifetime.Duration
	}
	exp := now.Add(lifetime)
	// The new token never outlives what it was exchanged for, nor a
	// time-bound grant that may have given the user access or groups (its
	// groups are in the token; Portcullis re-evaluates grants at every
	// verification, but a group baked into a token stays until it expires).
	sourceExp := res.Expiry
	payload := verifiedPayload(raw)
	if sourceExp.IsZero() && payload.Exp > 0 {
		sourceExp = time.Unix(payload.Exp, 0)
	}
	if !sourceExp.IsZero() && sourceExp.Before(exp) {
		exp = sourceExp
	}
	grantExp, err := r.earliestGrantExpiry(ctx, u.Name, cluster, now)
	if err != nil {
		klog.ErrorS(err, "Listing time-bound grants for a credential exchange failed", "cluster", cluster, "user", u.Name)
		return failed(v1alpha1.ReasonInternalError, "Portcullis could not check time-bound grants; retry later")
	}
	if !grantExp.IsZero() && grantExp.Before(exp) {
		exp = grantExp
	}
	if exp.Sub(now) < time.Second {
		return failed(v1alpha1.ReasonAuthenticationFailed, "authentication failed: the token expires in less than a second")
	}

	claims := token.Claims{
		Subject:          payload.Sub,
		Username:         u.Name,
		UID:              u.UID,
		Groups:           slices.Clone(u.Groups),
		Extra:            userExtra(u.Extra),
		Audience:         []string{cluster},
		SessionID:        first(u.Extra[authn.ExtraSessionID]),
		IdentityProvider: first(u.Extra[authn.ExtraIdentityProvider]),
		Email:            res.Email,
		Expiry:           exp,
	}
	if claims.Subject == "" {
		claims.Subject = cmp.Or(u.UID, u.Name)
	}
	signed, minted, err := r.minter.Mint(ctx, claims)
	if err != nil {
		klog.ErrorS(err, "Minting a cluster token for a credential exchange failed", "cluster", cluster, "user", u.Name)
		return failed(v1alpha1.ReasonInternalError, "Portcullis could not sign a token; retry later")
	}
	audit.AddAuditAnnotations(ctx, AnnotationTokenID, minted.ID, AnnotationExpires, minted.Expiry.UTC().Format(time.RFC3339))
	klog.V(2).InfoS("Exchanged a credential for a cluster token", "cluster", cluster, "user", u.Name, "source", res.Source, "jti", minted.ID, "expires", minted.Expiry)
	expires := metav1.NewTime(minted.Expiry)
	return v1alpha1.TokenCredentialRequestStatus{Token: signed, ExpirationTimestamp: &expires}, "success"
}

// earliestGrantExpiry is the end of the earliest-ending time-bound grant
// active for user on cluster at now (zero if none).
func (r *TokenCredentialRequestREST) earliestGrantExpiry(ctx context.Context, username, cluster string, now time.Time) (time.Time, error) {
	grants, err := r.grants.ListGrants(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var earliest time.Time
	for _, g := range grants {
		if g.Username != username || g.Cluster != cluster || now.Before(g.NotBefore) || !now.Before(g.ExpiresAt) {
			continue
		}
		if earliest.IsZero() || g.ExpiresAt.Before(earliest) {
			earliest = g.ExpiresAt
		}
	}
	return earliest, nil
}

func failed(reason v1alpha1.TokenCredentialRequestReason, msg string) (v1alpha1.TokenCredentialRequestStatus, string) {
	return v1alpha1.TokenCredentialRequestStatus{Reason: reason, Message: msg}, string(reason)
}

// tokenPayload is what the exchange reads from a token that pkg/authn has
// just verified (so its payload is trustworthy).
type tokenPayload struct {
	Sub string `json:"sub"`
	Exp int64  `json:"exp"`
}

func verifiedPayload(raw string) tokenPayload {
	var p tokenPayload
	b, ok := jwtpeek.Payload(raw)
	if !ok {
		return p
	}
	// A malformed claim leaves its field empty: the caller falls back.
	var loose struct {
		Sub json.RawMessage `json:"sub"`
		Exp json.RawMessage `json:"exp"`
	}
	if json.Unmarshal(b, &loose) != nil {
		return p
	}
	_ = json.Unmarshal(loose.Sub, &p.Sub)
	var exp float64
	if json.Unmarshal(loose.Exp, &exp) == nil && exp > 0 {
		p.Exp = int64(exp)
	}
	return p
}

// userExtra is the extra information to carry into the new token:
// Portcullis's own keys (cluster, idp, sid, jti) are claims of their own
// and are set again at each verification.
func userExtra(extra map[string][]string) map[string][]string {
	var out map[string][]string
	for k, v := range extra {
		if strings.HasPrefix(k, "portcullis.dev/") {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		out[k] = slices.Clone(v)
	}
	return out
}

func findCluster(cfg *configv1alpha1.PortcullisConfiguration, name string) *configv1alpha1.Cluster {
	for i := range cfg.Clusters {
		if cfg.Clusters[i].Name == name {
			return &cfg.Clusters[i]
		}
	}
	return nil
}

func clusterNames(cfg *configv1alpha1.PortcullisConfiguration) []string {
	out := make([]string, 0, len(cfg.Clusters))
	for _, c := range cfg.Clusters {
		out = append(out, c.Name)
	}
	return out
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
