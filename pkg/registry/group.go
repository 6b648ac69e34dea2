package registry

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/utils/clock"

	configv1alpha1 "portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
	"portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
	"portcullis.dev/portcullis/pkg/authn"
	"portcullis.dev/portcullis/pkg/store"
	"portcullis.dev/portcullis/pkg/token"
)

// Authenticator is pkg/authn's single authentication decision.
type Authenticator interface {
	Authenticate(ctx context.Context, cluster, raw string) (*authn.Result, error)
}

// Minter signs cluster tokens (pkg/token.Minter).
type Minter interface {
	Mint(ctx context.Context, c token.Claims) (string, token.Claims, error)
}

// Store is the part of pkg/store.Store the group uses.
type Store interface {
	GetSession(ctx context.Context, id string) (store.Session, error)
	ListSessions(ctx context.Context) ([]store.Session, error)
	AccessStore
}

// SessionEnder ends sessions (pkg/session.Manager): the Session API's delete
// ends a session exactly as logout does.
type SessionEnder interface {
	End(ctx context.Context, s store.Session, reason, by string) error
}

// Options are the group's dependencies.
type Options struct {
	Authn  Authenticator
	Minter Minter
	Store  Store
	// Sessions ends the sessions the Session API deletes.
	Sessions SessionEnder
	// Revoker, when set, serves tokenrevocations (revocation by jti).
	Revoker TokenRevoker
	// Config returns the live configuration (clusters, token lifetimes); it
	// is called on every request, so a reload takes effect at once.
	Config func() *configv1alpha1.PortcullisConfiguration
	// RateLimit bounds TokenCredentialRequests per client; the zero value
	// means DefaultRateLimit.
	RateLimit RateLimit
	// Notify, when set, is told of every access request and grant
	// transition (after it is stored and audited); it must not block.
	Notify func(AccessEvent)
	// Clock is clock.RealClock when nil.
	Clock clock.PassiveClock
}

func (o *Options) validate() error {
	var errs []error
	if o.Authn == nil {
		errs = append(errs, errors.New("registry: Options.Authn is required"))
	}
	if o.Minter == nil {
		errs = append(errs, errors.New("registry: Options.Minter is required"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("registry: Options.Store is required"))
	}
	if o.Sessions == nil {
		errs = append(errs, errors.New("registry: Options.Sessions is required"))
	}
	if o.Config == nil {
		errs = append(errs, errors.New("registry: Options.Config is required"))
	}
	return errors.Join(errs...)
}

// NewAPIGroupInfo returns the login.portcullis.dev group, ready for
// GenericAPIServer.InstallAPIGroup. The scheme must have the group installed
// (pkg/apis/login/install).
func NewAPIGroupInfo(scheme *runtime.Scheme, codecs serializer.CodecFactory, o Options) (*genericapiserver.APIGroupInfo, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	info := genericapiserver.NewDefaultAPIGroupInfo(v1alpha1.GroupName, scheme, runtime.NewParameterCodec(scheme), codecs)
	info.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"tokencredentialrequests": NewTokenCredentialRequestREST(o),
		"whoamirequests":          NewWhoAmIRequestREST(o.Clock),
		"sessions":                NewSessionREST(o.Store, o.Sessions, o.Clock),
		"accessrequests":          NewAccessRequestREST(o.Store, o.Config, o.Clock, o.Notify),
		"accessrequestdecisions":  NewAccessRequestDecisionREST(o.Store, o.Config, o.Clock, o.Notify),
		"accessgrants":            NewAccessGrantREST(o.Store, o.Config, o.Clock, o.Notify),
	}
	if o.Revoker != nil {
		info.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version]["tokenrevocations"] = NewTokenRevocationREST(o.Revoker)
	}
	return &info, nil
}
