package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/session"
	"portcullis.dev/portcullis/pkg/store"
)

// Logins in progress live in a loginstate.Store (Deps.Logins), as JSON, so
// that with several replicas any replica serves any step: a browser login
// started on one completes on another, a device code issued by one is
// approved on a second and polled on a third. The records below are their
// wire form; they hold secrets (PKCE verifiers, nonces, an IdP's refresh
// token, minted tokens waiting for their CLI), which is why the shared
// backend keeps them in Secrets.

type attemptRecord struct {
	IdP      string     `json:"idp"`
	Nonce    string     `json:"nonce"`
	Verifier string     `json:"verifier"`
	Binding  []byte     `json:"binding"`
	Flow     string     `json:"flow"`
	Cluster  string     `json:"cluster,omitempty"`
	CLI      *cliRecord `json:"cli,omitempty"`
	Device   string     `json:"device,omitempty"`
}

type cliRecord struct {
	Redirect  string `json:"redirect"`
	Challenge string `json:"challenge"`
	State     string `json:"state"`
}

type resultRecord struct {
	User                 session.User `json:"user"`
	UpstreamRefreshToken string       `json:"upstreamRefreshToken,omitempty"`
}

type codeRecord struct {
	Result          *resultRecord `json:"result,omitempty"`
	Challenge       string        `json:"challenge"`
	Redirect        string        `json:"redirect"`
	Cluster         string        `json:"cluster,omitempty"`
	Claimed         bool          `json:"claimed,omitempty"`
	RedeemedSession string        `json:"redeemedSession,omitempty"`
}

type deviceRecord struct {
	UserCode string        `json:"userCode"`
	Cluster  string        `json:"cluster,omitempty"`
	Expires  time.Time     `json:"expires"`
	Interval time.Duration `json:"interval"`
	LastPoll time.Time     `json:"lastPoll,omitzero"`
	// Entries counts the logins the user code started (maxUserCodeEntries).
	Entries int           `json:"entries,omitempty"`
	Status  deviceStatus  `json:"status"`
	Reason  string        `json:"reason,omitempty"`
	Result  *resultRecord `json:"result,omitempty"`
}

func recordOf(res *loginResult) *resultRecord {
	if res == nil {
		return nil
	}
	return &resultRecord{User: res.id, UpstreamRefreshToken: res.upstreamRefreshToken}
}

func (r *resultRecord) result() *loginResult {
	if r == nil {
		return nil
	}
	return &loginResult{id: r.User, upstreamRefreshToken: r.UpstreamRefreshToken}
}

func (a *attempt) record() attemptRecord {
	r := attemptRecord{IdP: a.idp, Nonce: a.nonce, Verifier: a.verifier, Binding: a.binding, Flow: a.flow, Cluster: a.cluster, Device: a.device}
	if a.cli != nil {
		r.CLI = &cliRecord{Redirect: a.cli.redirect.String(), Challenge: a.cli.challenge, State: a.cli.state}
	}
	return r
}

func (r attemptRecord) attempt() (*attempt, error) {
	a := &attempt{idp: r.IdP, nonce: r.Nonce, verifier: r.Verifier, binding: r.Binding, flow: r.Flow, cluster: r.Cluster, device: r.Device}
	if r.CLI != nil {
		u, err := url.Parse(r.CLI.Redirect)
		if err != nil {
			return nil, err
		}
		a.cli = &cliParams{redirect: u, challenge: r.CLI.Challenge, state: r.CLI.State}
	}
	return a, nil
}

// createRecord stores v under kind/key until expires.
func (p *Portal) createRecord(ctx context.Context, kind loginstate.Kind, key string, v any, expires time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return p.d.Logins.Create(ctx, kind, key, b, expires)
}

// takeRecord removes kind/key and returns it (once).
func takeRecord[T any](ctx context.Context, st loginstate.Store, kind loginstate.Kind, key string) (*T, error) {
	b, err := st.Take(ctx, kind, key)
	return decodeRecord[T](kind, b, err)
}

// decodeRecord decodes what the store returned, unless it failed.
func decodeRecord[T any](kind loginstate.Kind, b []byte, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("portal: a stored %s does not decode: %w", kind, err)
	}
	return v, nil
}

// updateRecord calls f on kind/key; f changes the record and says whether
// to keep it. f may run more than once (optimistic concurrency), each time on
// a fresh copy. It returns the record as f last left it.
func updateRecord[T any](ctx context.Context, st loginstate.Store, kind loginstate.Kind, key string, f func(*T) (keep bool)) (*T, error) {
	var last *T
	_, err := st.Update(ctx, kind, key, func(b []byte) ([]byte, bool, error) {
		v, err := decodeRecord[T](kind, b, nil)
		if err != nil {
			return nil, false, err
		}
		keep := f(v)
		last = v
		if !keep {
			return nil, true, nil
		}
		out, err := json.Marshal(v)
		return out, false, err
	})
	if err != nil {
		return nil, err
	}
	return last, nil
}

// stateFailure is how a failure of the login-state store is answered: never
// as the client's mistake.
func stateFailure(err error) *failure {
	switch {
	case errors.Is(err, loginstate.ErrFull):
		return fail(http.StatusServiceUnavailable, outcomeUnavailable, "temporarily_unavailable", "Too many logins in progress",
			"Portcullis is handling too many logins at once. Try again in a minute.")
	case errors.Is(err, store.ErrUnavailable):
		klog.ErrorS(err, "The state store is unreachable: logins cannot proceed")
		return fail(http.StatusServiceUnavailable, outcomeUnavailable, "temporarily_unavailable", "The state store is unreachable",
			"The state store is unreachable: Portcullis cannot reach the Kubernetes API it keeps logins in. Try again in a minute; if it keeps failing, tell your administrator.")
	}
	klog.ErrorS(err, "Keeping the state of a login failed")
	return fail(http.StatusInternalServerError, outcomeUnavailable, "server_error", "Portcullis could not keep track of this login",
		"Try again; if it keeps failing, tell your administrator.")
}
