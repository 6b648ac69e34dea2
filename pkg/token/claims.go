package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"
)

// Claims are the contents of a cluster token.
//
// Times have JWT NumericDate semantics: whole seconds since the Unix epoch in
// the token; the zero time.Time means the claim is absent.
type Claims struct {
	// Issuer ("iss") is the issuer URL of the Portcullis instance that
	// minted the token. Minter sets it.
	Issuer string
	// Subject ("sub") is the user's stable subject.
	Subject string
	// Username ("username") is the Kubernetes username.
	Username string
	// UID ("uid") is the Kubernetes user UID.
	UID string
	// Groups ("groups") are the Kubernetes groups.
	Groups []string
	// Extra ("extra") is the Kubernetes user's extra information.
	Extra map[string][]string
	// Audience ("aud") names the clusters the token is for.
	Audience []string
	// SessionID ("sid") is the login session the token belongs to; empty for
	// offline mints.
	SessionID string
	// ID ("jti") is the token's own unique ID. Minter sets it.
	ID string
	// IdentityProvider ("idp") is the name of the upstream identity provider.
	IdentityProvider string
	// Email ("email") is the user's email address.
	Email string
	// IssuedAt ("iat"). Minter sets it.
	IssuedAt time.Time
	// NotBefore ("nbf"). Minter sets it to IssuedAt.
	NotBefore time.Time
	// Expiry ("exp").
	Expiry time.Time
	// Reason ("reason") says why a token was minted offline (break-glass
	// access and the like).
	Reason string
}

// Clone returns a deep copy of c.
func (c *Claims) Clone() *Claims {
	out := *c
	out.Groups = slices.Clone(c.Groups)
	out.Audience = slices.Clone(c.Audience)
	if c.Extra != nil {
		out.Extra = make(map[string][]string, len(c.Extra))
		for k, v := range c.Extra {
			out.Extra[k] = slices.Clone(v)
		}
	}
	return &out
}

// wireClaims is the JSON form of Claims in a token.
type wireClaims struct {
	Issuer           string              `json:"iss,omitempty"`
	Subject          string              `json:"sub,omitempty"`
	Audience         audience            `json:"aud,omitempty"`
	Expiry           *numericDate        `json:"exp,omitempty"`
	NotBefore        *numericDate        `json:"nbf,omitempty"`
	IssuedAt         *numericDate        `json:"iat,omitempty"`
	ID               string              `json:"jti,omitempty"`
	SessionID        string              `json:"sid,omitempty"`
	Username         string              `json:"username,omitempty"`
	UID              string              `json:"uid,omitempty"`
	Groups           []string            `json:"groups,omitempty"`
	Extra            map[string][]string `json:"extra,omitempty"`
	Email            string              `json:"email,omitempty"`
	IdentityProvider string              `json:"idp,omitempty"`
	Reason           string              `json:"reason,omitempty"`
}

func toWire(c *Claims) *wireClaims {
	return &wireClaims{
		Issuer:           c.Issuer,
		Subject:          c.Subject,
		Audience:         audience(c.Audience),
		Expiry:           newNumericDate(c.Expiry),
		NotBefore:        newNumericDate(c.NotBefore),
		IssuedAt:         newNumericDate(c.IssuedAt),
		ID:               c.ID,
		SessionID:        c.SessionID,
		Username:         c.Username,
		UID:              c.UID,
		Groups:           c.Groups,
		Extra:            c.Extra,
		Email:            c.Email,
		IdentityProvider: c.IdentityProvider,
		Reason:           c.Reason,
	}
}

func (w *wireClaims) claims() *Claims {
	return &Claims{
		Issuer:           w.Issuer,
		Subject:          w.Subject,
		Username:         w.Username,
		UID:              w.UID,
		Groups:           w.Groups,
		Extra:            w.Extra,
		Audience:         []string(w.Audience),
		SessionID:        w.SessionID,
		ID:               w.ID,
		IdentityProvider: w.IdentityProvider,
		Email:            w.Email,
		IssuedAt:         w.IssuedAt.time(),
		NotBefore:        w.NotBefore.time(),
		Expiry:           w.Expiry.time(),
		Reason:           w.Reason,
	}
}

// numericDate is a JWT NumericDate: seconds since the Unix epoch.
type numericDate int64

// maxNumericDate is the last second of year 9999; larger values are refused
// so that no time arithmetic on a decoded date can overflow.
const maxNumericDate = 253402300799

func newNumericDate(t time.Time) *numericDate {
	if t.IsZero() {
		return nil
	}
	d := numericDate(t.Unix())
	return &d
}

func (d *numericDate) time() time.Time {
	if d == nil {
		return time.Time{}
	}
	return time.Unix(int64(*d), 0)
}

func (d numericDate) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, int64(d), 10), nil
}

var errBadNumericDate = errors.New("a date claim is not a number of seconds in range")

// UnmarshalJSON accepts any JSON number (RFC 7519 allows fractions, which are
// dropped) within [0, year 9999].
func (d *numericDate) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return errBadNumericDate
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errBadNumericDate
	}
	if i, err := n.Int64(); err == nil {
		if i < 0 || i > maxNumericDate {
			return errBadNumericDate
		}
		*d = numericDate(i)
		return nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return errBadNumericDate
	}
	*d = numericDate(math.Floor(f))
	return nil
}

// audience is the "aud" claim: a single string or an array of strings in
// JSON (RFC 7519 §4.1.3). A single audience is written as a string.
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("the aud claim is neither a string nor an array of strings")
	}
	*a = audience(l)
	return nil
}
