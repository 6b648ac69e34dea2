package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Defaults. Cluster tokens are short-lived on purpose: a leaked token is
// useful for minutes, and a session refresh is cheap.
const (
	DefaultStoreType          = "bolt"
	DefaultStorePath          = "/var/lib/portcullis/state.db"
	DefaultTokenLifetime      = 15 * time.Minute
	DefaultTokenMaxLifetime   = 24 * time.Hour
	DefaultKeyRotationPeriod  = 24 * time.Hour
	DefaultTokenCacheSize     = 10000
	DefaultSessionIdleTimeout = 12 * time.Hour
	DefaultSessionMaxLifetime = 7 * 24 * time.Hour
	DefaultRefreshReuseGrace  = 30 * time.Second
	DefaultUserInfoGroups     = "groups"
	// DefaultJustInTimeMaxDuration is clusters[].justInTime.maxDuration's
	// default, MaxJustInTimeDuration its upper bound.
	DefaultJustInTimeMaxDuration = time.Hour
	MaxJustInTimeDuration        = 7 * 24 * time.Hour
)

// DefaultAPIAudiences is kube-apiserver's default API audience (its default
// --service-account-issuer in most distributions).
var DefaultAPIAudiences = []string{"https://kubernetes.default.svc"}

// DefaultScopes are requested at login when an IdP names none.
var DefaultScopes = []string{"openid", "email", "profile", "offline_access"}

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	scheme.AddTypeDefaultingFunc(&PortcullisConfiguration{}, func(obj interface{}) {
		SetDefaults(obj.(*PortcullisConfiguration))
	})
	return nil
}

func defaultDuration(d *metav1.Duration, v time.Duration) {
	if d.Duration == 0 {
		d.Duration = v
	}
}

// SetDefaults fills every unset field that has a default.
func SetDefaults(c *PortcullisConfiguration) {
	if c.Store.Type == "" {
		c.Store.Type = DefaultStoreType
	}
	if c.Store.Type == DefaultStoreType && c.Store.Path == "" {
		c.Store.Path = DefaultStorePath
	}
	defaultDuration(&c.Tokens.Lifetime, DefaultTokenLifetime)
	defaultDuration(&c.Tokens.MaxLifetime, DefaultTokenMaxLifetime)
	defaultDuration(&c.Tokens.KeyRotationPeriod, DefaultKeyRotationPeriod)
	if c.Tokens.CacheSize == 0 {
		c.Tokens.CacheSize = DefaultTokenCacheSize
	}
	for i := range c.IdentityProviders {
		idp := &c.IdentityProviders[i]
		if idp.DisplayName == "" {
			idp.DisplayName = idp.Name
		}
		if idp.LDAP != nil {
			SetLDAPDefaults(idp.LDAP)
			continue
		}
		if len(idp.Issuer.Audiences) == 0 && idp.ClientID != "" {
			idp.Issuer.Audiences = []string{idp.ClientID}
		}
		if len(idp.Scopes) == 0 {
			idp.Scopes = append([]string(nil), DefaultScopes...)
		}
		if idp.UserInfo != nil && idp.UserInfo.GroupsClaim == "" {
			idp.UserInfo.GroupsClaim = DefaultUserInfoGroups
		}
	}
	for i := range c.Clusters {
		if j := c.Clusters[i].JustInTime; j != nil {
			defaultDuration(&j.MaxDuration, DefaultJustInTimeMaxDuration)
			if j.ApprovalsRequired == 0 {
				j.ApprovalsRequired = 1
			}
		}
		if len(c.Clusters[i].APIAudiences) == 0 {
			c.Clusters[i].APIAudiences = append([]string(nil), DefaultAPIAudiences...)
		}
	}
	defaultDuration(&c.Portal.SessionIdleTimeout, DefaultSessionIdleTimeout)
	defaultDuration(&c.Portal.SessionMaxLifetime, DefaultSessionMaxLifetime)
	defaultDuration(&c.Portal.RefreshReuseGrace, DefaultRefreshReuseGrace)
}
