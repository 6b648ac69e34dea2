package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	loginv1alpha1 "portcullis.dev/portcullis/pkg/apis/login/v1alpha1"
)

// whoamiResult is what `portcullis whoami` found; -o json|yaml prints it as
// it is. It never holds a token.
type whoamiResult struct {
	Server string `json:"server"`
	// Session is the cached session and what Portcullis says of it.
	Session whoamiSession `json:"session"`
	// Tokens are the cached cluster tokens (their expiry, not the tokens).
	Tokens []whoamiToken `json:"tokens,omitempty"`
	// Cluster is what the kubeconfig context's cluster says (a
	// SelfSubjectReview), when there is a context.
	Cluster *whoamiCluster `json:"cluster,omitempty"`
}

type whoamiSession struct {
	// State is "active" (Portcullis confirmed it), "ended" (Portcullis
	// says it is over), "unchecked" (Portcullis could not be asked), or
	// "none" (not logged in).
	State            string     `json:"state"`
	Username         string     `json:"username,omitempty"`
	Email            string     `json:"email,omitempty"`
	IdentityProvider string     `json:"identityProvider,omitempty"`
	Groups           []string   `json:"groups,omitempty"`
	EndsAt           *time.Time `json:"endsAt,omitempty"`
	// Clusters are those the session may use, as Portcullis says now.
	Clusters []string `json:"clusters,omitempty"`
	Message  string   `json:"message,omitempty"`
}

type whoamiToken struct {
	Cluster   string    `json:"cluster"`
	ExpiresAt time.Time `json:"expiresAt"`
	Expired   bool      `json:"expired"`
	// Exchanged marks a token got by exchanging an ID token (no session).
	Exchanged bool `json:"exchanged,omitempty"`
	// Username and Groups are what Portcullis says of an exchanged token.
	Username string   `json:"username,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	Message  string   `json:"message,omitempty"`
}

type whoamiCluster struct {
	Name     string   `json:"name"`
	Context  string   `json:"context"`
	Username string   `json:"username"`
	Groups   []string `json:"groups,omitempty"`
}

func newWhoamiCommand(d *Deps) *cobra.Command {
	f := &targetFlags{}
	var output string
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Say who Portcullis and the cluster think you are",
		Long: `Shows the session cached for a Portcullis server (user, groups, identity
provider, when it ends), checks it with Portcullis, and asks the cluster of the
kubeconfig context who it sees (a SelfSubjectReview).

It exits non-zero when you are not logged in or the session has ended (after
printing what it found), so scripts can test it. -o json or -o yaml prints the
same as a document; it never contains a token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "", "text", "json", "yaml":
			default:
				return fmt.Errorf("--output %q: give text, json or yaml", output)
			}
			t, kc, err := d.resolve(f, true)
			if err != nil {
				return err
			}
			res, whoErr := d.whoami(cmd.Context(), f, t, kc)
			if res != nil {
				if err := printWhoami(d.Stdout, output, res); err != nil {
					return err
				}
			}
			return whoErr
		},
	}
	f.addTarget(cmd.Flags())
	f.addKubeconfig(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "Output format: text, json or yaml.")
	return cmd
}

// whoami gathers what is known of the person at t. Its error (not logged
// in, session ended, cluster refused) comes with what was found.
func (d *Deps) whoami(ctx context.Context, f *targetFlags, t *target, kc *kubeContext) (*whoamiResult, error) {
	cache, err := d.openCache(f.cacheDir)
	if err != nil {
		return nil, err
	}
	unlock, err := cache.lock(ctx, t.server, nil)
	if err != nil {
		return nil, err
	}
	entry, err := cache.load(t.server)
	unlock()
	if err != nil {
		return nil, err
	}
	now := d.Clock.Now()
	res := &whoamiResult{Server: t.server}
	clusters := make([]string, 0, len(entry.Tokens))
	for c := range entry.Tokens {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)

	if entry.RefreshToken == "" {
		res.Session = whoamiSession{State: "none", Message: "run: " + loginCommand(t)}
		// Tokens got by exchanging an ID token have no session: ask
		// Portcullis about the token itself.
		for _, cluster := range clusters {
			tok := entry.Tokens[cluster]
			if !tok.Exchanged || (t.cluster != "" && cluster != t.cluster) {
				continue
			}
			wt := whoamiToken{Cluster: cluster, ExpiresAt: tok.ExpiresAt, Expired: !tok.usable(now), Exchanged: true}
			if wt.Expired {
				wt.Message = "exchanged again from the ID token file on next use"
			} else if ui, err := d.whoAmIRequest(ctx, t, tok.Token); err != nil {
				wt.Message = "could not check the token: " + err.Error()
			} else {
				wt.Username, wt.Groups = ui.Username, ui.Groups
			}
			res.Tokens = append(res.Tokens, wt)
		}
		if len(res.Tokens) == 0 {
			return res, fmt.Errorf("you are not logged in to %s; log in with:\n\n  %s", t.server, loginCommand(t))
		}
		return res, nil
	}

	s := entry.Session
	res.Session = whoamiSession{
		State: "unchecked", Username: s.Username, Email: s.Email,
		IdentityProvider: s.IdentityProvider, Groups: s.Groups,
	}
	if !s.ExpiresAt.IsZero() {
		ends := s.ExpiresAt
		res.Session.EndsAt = &ends
	}
	for _, cluster := range clusters {
		tok := entry.Tokens[cluster]
		res.Tokens = append(res.Tokens, whoamiToken{Cluster: cluster, ExpiresAt: tok.ExpiresAt, Expired: !tok.usable(now), Exchanged: tok.Exchanged})
	}
	client, err := d.newPortalClient(t)
	if err != nil {
		return nil, err
	}
	live, err := client.session(ctx, entry.RefreshToken)
	switch {
	case err != nil && sessionEnded(err):
		res.Session.State = "ended"
		res.Session.Message = err.Error()
		return res, fmt.Errorf("your session at %s has ended (%v); log in again with:\n\n  %s", t.server, err, loginCommand(t))
	case err != nil:
		res.Session.Message = "could not check the session: " + err.Error()
	default:
		res.Session.State = "active"
		res.Session.Clusters = live.Clusters
	}
	if kc == nil || kc.cluster == nil || t.cluster == "" {
		return res, nil
	}
	cred, err := d.getCredential(ctx, t, credentialOptions{cacheDir: f.cacheDir, interactive: d.StdinIsTerminal()})
	if err != nil {
		return res, err
	}
	ui, err := d.selfSubjectReview(ctx, kc, cred.token)
	if err != nil {
		return res, fmt.Errorf("asking cluster %s (context %s) who you are: %w", t.cluster, kc.name, err)
	}
	res.Cluster = &whoamiCluster{Name: t.cluster, Context: kc.name, Username: ui.Username, Groups: ui.Groups}
	return res, nil
}

// whoAmIRequest asks Portcullis who the bearer of token is.
func (d *Deps) whoAmIRequest(ctx context.Context, t *target, token string) (*loginv1alpha1.UserInfo, error) {
	client, err := d.newPortalClient(t)
	if err != nil {
		return nil, err
	}
	return client.whoAmI(ctx, token)
}

// selfSubjectReview asks the context's cluster who the bearer of token is.
func (d *Deps) selfSubjectReview(ctx context.Context, kc *kubeContext, token string) (*authnv1.UserInfo, error) {
	rc := &rest.Config{
		Host:            kc.cluster.Server,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: kc.cluster.CertificateAuthorityData, CAFile: kc.cluster.CertificateAuthority, ServerName: kc.cluster.TLSServerName, Insecure: kc.cluster.InsecureSkipTLSVerify},
		Timeout:         30 * time.Second,
	}
	if d.Transport != nil {
		rc.Transport = d.Transport
		rc.TLSClientConfig = rest.TLSClientConfig{}
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &review.Status.UserInfo, nil
}

func printWhoami(w io.Writer, format string, res *whoamiResult) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "yaml":
		b, err := yaml.Marshal(res)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "", "text":
	default:
		return errors.New("unknown output format " + format)
	}
	s := res.Session
	fmt.Fprintf(w, "Portcullis:         %s\n", res.Server)
	if s.State == "none" {
		fmt.Fprintf(w, "Session:            none (%s)\n", s.Message)
		for _, tok := range res.Tokens {
			if tok.Expired {
				fmt.Fprintf(w, "Token for %-9s expired (%s)\n", tok.Cluster+":", tok.Message)
				continue
			}
			fmt.Fprintf(w, "Token for %-9s valid until %s (exchanged from an ID token)\n", tok.Cluster+":", tok.ExpiresAt.Local().Format(time.RFC1123))
			if tok.Message != "" {
				fmt.Fprintf(w, "Portcullis says:    %s\n", tok.Message)
			} else {
				fmt.Fprintf(w, "Portcullis says:    %s, groups %s\n", tok.Username, strings.Join(tok.Groups, ", "))
			}
		}
		return nil
	}
	fmt.Fprintf(w, "User:               %s\n", s.Username)
	if s.Email != "" {
		fmt.Fprintf(w, "Email:              %s\n", s.Email)
	}
	fmt.Fprintf(w, "Identity provider:  %s\n", s.IdentityProvider)
	fmt.Fprintf(w, "Groups:             %s\n", strings.Join(s.Groups, ", "))
	if s.EndsAt != nil {
		fmt.Fprintf(w, "Session ends:       %s at the latest\n", s.EndsAt.Local().Format(time.RFC1123))
	}
	for _, tok := range res.Tokens {
		state := "valid until " + tok.ExpiresAt.Local().Format(time.RFC1123)
		if tok.Expired {
			state = "expired (refreshed on next use)"
		}
		fmt.Fprintf(w, "Token for %-9s %s\n", tok.Cluster+":", state)
	}
	switch s.State {
	case "ended":
		fmt.Fprintf(w, "Portcullis says:    the session has ended (%s)\n", s.Message)
		return nil
	case "active":
		fmt.Fprintf(w, "Portcullis says:    session active; clusters you may use: %s\n", strings.Join(s.Clusters, ", "))
	default:
		fmt.Fprintf(w, "Portcullis says:    %s\n", s.Message)
	}
	if res.Cluster == nil {
		fmt.Fprintln(w, "Cluster says:       (no kubeconfig context for this server: use --context to ask a cluster)")
		return nil
	}
	fmt.Fprintf(w, "Cluster %s says:  %s, groups %s\n", res.Cluster.Name, res.Cluster.Username, strings.Join(res.Cluster.Groups, ", "))
	return nil
}
