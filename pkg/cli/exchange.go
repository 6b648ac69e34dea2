package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// Token exchange, for CI systems that hold an identity provider's ID token
// and have no browser: the ID token is exchanged for a cluster token through
// a TokenCredentialRequest. The cache records where the ID token came from
// (a file path), never the ID token itself, so that exec-credential can
// exchange again when the cluster token expires.

// idTokenFileEnv names the ID token file when --id-token-file is not given.
const idTokenFileEnv = "PORTCULLIS_ID_TOKEN_FILE"

const loginAPIPath = "/apis/" + loginv1alpha1.GroupName + "/v1alpha1"

// readIDToken reads the ID token from path ("-" is stdin). Errors never
// include the file's content.
func (d *Deps) readIDToken(path string) (string, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(d.Stdin, 1<<20))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("reading the ID token file %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("the ID token file %s is empty", path)
	}
	return tok, nil
}

// errExchangeFailed is a TokenCredentialRequest that gave no token.
type errExchangeFailed struct {
	reason  loginv1alpha1.TokenCredentialRequestReason
	message string
}

func (e *errExchangeFailed) Error() string {
	msg := e.message
	if msg == "" {
		msg = "no reason given"
	}
	if e.reason != "" {
		return fmt.Sprintf("the exchange was refused: %s (%s)", msg, e.reason)
	}
	return "the exchange was refused: " + msg
}

// postJSON posts in as JSON to path, with bearer (if any), and decodes a
// 200/201 answer into out. Other answers become errors with the server's
// Status message.
func (c *portalClient) postJSON(ctx context.Context, path, bearer string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.t.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, raw, err := c.send(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		var st metav1.Status
		if json.Unmarshal(raw, &st) == nil && st.Message != "" {
			return fmt.Errorf("%s answered %s: %s", c.t.server, resp.Status, st.Message)
		}
		return fmt.Errorf("%s answered %s to %s: is it a Portcullis server (check --server)?", c.t.server, resp.Status, path)
	}
	return c.decodeAnswer(raw, path, out)
}

// exchangeToken exchanges idToken for a token for cluster.
func (c *portalClient) exchangeToken(ctx context.Context, idToken, cluster string) (*loginv1alpha1.TokenCredentialRequestStatus, error) {
	in := loginv1alpha1.TokenCredentialRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: loginv1alpha1.SchemeGroupVersion.String(), Kind: "TokenCredentialRequest"},
		Spec:     loginv1alpha1.TokenCredentialRequestSpec{Token: idToken, Cluster: cluster},
	}
	var out loginv1alpha1.TokenCredentialRequest
	if err := c.postJSON(ctx, loginAPIPath+"/tokencredentialrequests", "", &in, &out); err != nil {
		return nil, fmt.Errorf("exchanging the ID token at %s: %w", c.t.server, err)
	}
	st := out.Status
	if st.Token == "" || st.Reason != "" {
		return nil, &errExchangeFailed{reason: st.Reason, message: st.Message}
	}
	if st.ExpirationTimestamp == nil {
		return nil, fmt.Errorf("%s returned a token without an expiry: is it a Portcullis server?", c.t.server)
	}
	return &st, nil
}

// whoAmI asks Portcullis who the bearer of token is.
func (c *portalClient) whoAmI(ctx context.Context, token string) (*loginv1alpha1.UserInfo, error) {
	in := loginv1alpha1.WhoAmIRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: loginv1alpha1.SchemeGroupVersion.String(), Kind: "WhoAmIRequest"},
	}
	var out loginv1alpha1.WhoAmIRequest
	if err := c.postJSON(ctx, loginAPIPath+"/whoamirequests", token, &in, &out); err != nil {
		return nil, err
	}
	return &out.Status.UserInfo, nil
}

// idTokenSource returns the ID token file to use: the flag, else the
// environment. It is "" when neither is set.
func (d *Deps) idTokenSource(flag string) string {
	if flag != "" {
		return flag
	}
	return d.Getenv(idTokenFileEnv)
}

// exchangeAndCache exchanges the ID token read from path and caches the
// cluster token, recording path (made absolute; not for stdin) for later
// exchanges. Call it holding the cache lock.
func (d *Deps) exchangeAndCache(ctx context.Context, cache *tokenCache, entry *cacheEntry, t *target, path string) (*credential, error) {
	idToken, err := d.readIDToken(path)
	if err != nil {
		return nil, err
	}
	client, err := d.newPortalClient(t)
	if err != nil {
		return nil, err
	}
	now := d.Clock.Now()
	st, err := client.exchangeToken(ctx, idToken, t.cluster)
	if err != nil {
		return nil, err
	}
	recorded := ""
	if path != "-" {
		recorded = path
		if abs, err := filepath.Abs(path); err == nil {
			recorded = abs
		}
	}
	if entry.Tokens == nil {
		entry.Tokens = map[string]cachedToken{}
	}
	tok := cachedToken{Token: st.Token, IssuedAt: now, ExpiresAt: st.ExpirationTimestamp.Time, Exchanged: true, IDTokenFile: recorded}
	entry.Tokens[t.cluster] = tok
	if err := cache.save(entry); err != nil {
		return nil, err
	}
	return &credential{token: tok.Token, expiresAt: tok.ExpiresAt, session: entry.Session}, nil
}

// reExchange renews an exchanged token from its recorded ID token file, or
// the one in the environment. Call it holding the cache lock.
func (d *Deps) reExchange(ctx context.Context, cache *tokenCache, entry *cacheEntry, t *target, tok cachedToken) (*credential, error) {
	var candidates []string
	if tok.IDTokenFile != "" {
		candidates = append(candidates, tok.IDTokenFile)
	}
	if env := d.Getenv(idTokenFileEnv); env != "" && env != "-" && env != tok.IDTokenFile {
		candidates = append(candidates, env)
	}
	for _, path := range candidates {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		return d.exchangeAndCache(ctx, cache, entry, t, path)
	}
	if tok.usable(d.Clock.Now()) {
		return &credential{token: tok.Token, expiresAt: tok.ExpiresAt, session: entry.Session}, nil
	}
	where := "it was read from stdin"
	if tok.IDTokenFile != "" {
		where = tok.IDTokenFile + " is no longer readable"
	}
	return nil, fmt.Errorf("the token for cluster %q obtained by exchanging an ID token has expired, and it cannot be exchanged again (%s, and %s is not set to a readable file).\nExchange a fresh ID token with:\n\n  %s --id-token-file=FILE\n\nor set %s=FILE for this command", t.cluster, where, idTokenFileEnv, loginCommand(t), idTokenFileEnv)
}

// loginWithIDToken is `portcullis login --id-token-file`.
func (d *Deps) loginWithIDToken(ctx context.Context, f *targetFlags, t *target, path string) error {
	if t.cluster == "" {
		return errors.New("--cluster is required with --id-token-file: which cluster is the token for?")
	}
	cache, err := d.openCache(f.cacheDir)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	unlock, err := cache.lock(lctx, t.server, nil)
	if err != nil {
		return err
	}
	defer unlock()
	entry, err := cache.load(t.server)
	if err != nil {
		return err
	}
	cred, err := d.exchangeAndCache(ctx, cache, entry, t, path)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.Stdout, "Exchanged the ID token at %s for a token for cluster %s, valid until %s.\n", t.server, t.cluster, cred.expiresAt.Local().Format(time.RFC1123))
	if path == "-" {
		fmt.Fprintf(d.Stdout, "The ID token came from stdin: when the token expires, run this command again (or set %s).\n", idTokenFileEnv)
	}
	return nil
}
