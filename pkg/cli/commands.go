package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/pkg/kubeconfig"
)

// targetFlags are the flags that say which Portcullis and cluster.
type targetFlags struct {
	idTokenFile                          string
	server, cluster, caFile, caData, idp string
	device, noBrowser                    bool
	cacheDir                             string
	kubeconfig, context                  string
}

func (f *targetFlags) addTarget(fs *pflag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "URL of the Portcullis server (default $PORTCULLIS_SERVER, or the current kubeconfig context's).")
	fs.StringVar(&f.cluster, "cluster", "", "Name of the cluster at Portcullis.")
	fs.StringVar(&f.caFile, "certificate-authority", "", "PEM file of the CA that signed Portcullis's certificate (default: the system's roots).")
	fs.StringVar(&f.caData, "certificate-authority-data", "", "Base64 of the PEM CA that signed Portcullis's certificate.")
	fs.StringVar(&f.idp, "idp", "", "Identity provider to log in with (default: choose in the browser).")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "Token cache directory (default $PORTCULLIS_CACHE_DIR, or portcullis/ in your cache directory).")
}

func (f *targetFlags) addLogin(fs *pflag.FlagSet) {
	fs.BoolVar(&f.device, "device", false, "Log in with a code on another device (for SSH sessions and machines without a browser).")
	fs.BoolVar(&f.noBrowser, "no-browser", false, "Print the login address instead of opening a browser.")
}

func (f *targetFlags) addKubeconfig(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Kubeconfig file (default $KUBECONFIG, or ~/.kube/config).")
	fs.StringVar(&f.context, "context", "", "Kubeconfig context (default: the current one).")
}

func normalizeServer(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("--server %q is not a server URL such as https://portcullis.example.com", s)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("--server %q must be https: tokens are never sent in clear", s)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// kubeconfigRules are the loading rules for --kubeconfig / $KUBECONFIG / ~/.kube/config.
func (d *Deps) kubeconfigRules(flag string) *clientcmd.ClientConfigLoadingRules {
	rules := &clientcmd.ClientConfigLoadingRules{}
	switch {
	case flag != "":
		rules.ExplicitPath = flag
	case d.Getenv("KUBECONFIG") != "":
		rules.Precedence = filepath.SplitList(d.Getenv("KUBECONFIG"))
	default:
		if home, err := d.UserHomeDir(); err == nil {
			rules.Precedence = []string{filepath.Join(home, ".kube", "config")}
		}
	}
	return rules
}

// kubeContext is a kubeconfig context that uses the portcullis plugin.
type kubeContext struct {
	name    string
	cluster *clientcmdapi.Cluster
	args    map[string]string
}

// loadKubeContext returns the named (or current) context, if it runs the
// portcullis plugin.
func (d *Deps) loadKubeContext(f *targetFlags) (*kubeContext, error) {
	cfg, err := d.kubeconfigRules(f.kubeconfig).Load()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	name := f.context
	if name == "" {
		name = cfg.CurrentContext
	}
	ctx, ok := cfg.Contexts[name]
	if name == "" || !ok {
		return nil, nil
	}
	user := cfg.AuthInfos[ctx.AuthInfo]
	if !kubeconfig.IsOurs(user) {
		return nil, nil
	}
	kc := &kubeContext{name: name, cluster: cfg.Clusters[ctx.Cluster], args: map[string]string{}}
	for _, a := range user.Exec.Args {
		if k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			kc.args[k] = v
		} else if strings.HasPrefix(a, "--") {
			kc.args[strings.TrimPrefix(a, "--")] = "true"
		}
	}
	return kc, nil
}

// resolve makes the target from the flags, then $PORTCULLIS_SERVER, then
// (if fromKubeconfig) the kubeconfig context's plugin arguments.
func (d *Deps) resolve(f *targetFlags, fromKubeconfig bool) (*target, *kubeContext, error) {
	var kc *kubeContext
	if fromKubeconfig && (f.server == "" || f.context != "" || f.kubeconfig != "") {
		var err error
		if kc, err = d.loadKubeContext(f); err != nil {
			return nil, nil, err
		}
		if kc != nil && f.server == "" {
			f.server = kc.args["server"]
			if f.cluster == "" {
				f.cluster = kc.args["cluster"]
			}
			if f.caFile == "" && f.caData == "" {
				f.caFile, f.caData = kc.args["certificate-authority"], kc.args["certificate-authority-data"]
			}
			if f.idp == "" {
				f.idp = kc.args["idp"]
			}
			f.device = f.device || kc.args["device"] == "true"
		}
	}
	if f.server == "" {
		f.server = d.Getenv("PORTCULLIS_SERVER")
	}
	if f.server == "" {
		return nil, nil, errors.New("which Portcullis? Give --server (or set PORTCULLIS_SERVER, or use a kubeconfig context written by `portcullis kubeconfig`)")
	}
	server, err := normalizeServer(f.server)
	if err != nil {
		return nil, nil, err
	}
	caData, err := decodeCAData(f.caData)
	if err != nil {
		return nil, nil, err
	}
	caFile := f.caFile
	if caFile != "" {
		if abs, err := filepath.Abs(caFile); err == nil {
			caFile = abs
		}
	}
	return &target{server: server, cluster: f.cluster, caFile: caFile, caData: caData, idp: f.idp, device: f.device}, kc, nil
}

func newLoginCommand(d *Deps) *cobra.Command {
	f := &targetFlags{}
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in to Portcullis (in a browser, or with a code on another device)",
		Long: `Logs you in to Portcullis at your identity provider and caches your session,
so that kubectl gets cluster tokens without asking again until the session ends.

By default a browser opens on this computer. On a machine without a browser
(an SSH session, a jump host) use --device: you get an address and a code to
enter in a browser on any other device.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, _, err := d.resolve(f, true)
			if err != nil {
				return err
			}
			if src := d.idTokenSource(f.idTokenFile); src != "" {
				return d.loginWithIDToken(cmd.Context(), f, t, src)
			}
			cred, err := d.getCredential(cmd.Context(), t, credentialOptions{
				cacheDir: f.cacheDir, interactive: true, noBrowser: f.noBrowser, forceLogin: true,
			})
			if err != nil {
				return err
			}
			s := cred.session
			fmt.Fprintf(d.Stdout, "Logged in to %s as %s", t.server, s.Username)
			if len(s.Groups) > 0 {
				fmt.Fprintf(d.Stdout, " (groups: %s)", strings.Join(s.Groups, ", "))
			}
			fmt.Fprintln(d.Stdout, ".")
			if len(s.Clusters) > 0 {
				fmt.Fprintf(d.Stdout, "Clusters you may use: %s.\n", strings.Join(s.Clusters, ", "))
			}
			if !s.ExpiresAt.IsZero() {
				fmt.Fprintf(d.Stdout, "The session lasts until %s at the latest.\n", s.ExpiresAt.Local().Format(time.RFC1123))
			}
			return nil
		},
	}
	f.addTarget(cmd.Flags())
	f.addLogin(cmd.Flags())
	f.addKubeconfig(cmd.Flags())
	cmd.Flags().StringVar(&f.idTokenFile, "id-token-file", "", "Exchange the identity provider ID token in this file (\"-\": stdin) for a cluster token, without a browser (for CI; default $"+idTokenFileEnv+"). The file is read again when the token expires.")
	return cmd
}

func newExecCredentialCommand(d *Deps) *cobra.Command {
	f := &targetFlags{}
	cmd := &cobra.Command{
		Use:   "exec-credential",
		Short: "Print a cluster token for kubectl (client.authentication.k8s.io exec credential plugin)",
		Long: `kubectl runs this command (see "portcullis kubeconfig") to get a token for a
cluster. It prints an ExecCredential with the token and its expiry.

The token comes from the cache, or is refreshed silently shortly before it
expires. When a new login is needed, it happens only if kubectl runs
interactively (a terminal); otherwise the command fails and says what to run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			apiVersion := kubeconfig.ExecAPIVersion
			interactive := d.StdinIsTerminal()
			if raw := d.Getenv("KUBERNETES_EXEC_INFO"); raw != "" {
				var info clientauthv1.ExecCredential
				if err := json.Unmarshal([]byte(raw), &info); err != nil {
					return fmt.Errorf("reading KUBERNETES_EXEC_INFO: %w", err)
				}
				if info.APIVersion != "" {
					apiVersion = info.APIVersion
				}
				interactive = info.Spec.Interactive
				if c := info.Spec.Cluster; c != nil {
					if ext, ok := kubeconfig.ParseExtension(c.Config.Raw); ok {
						if f.server == "" {
							f.server = ext.Portcullis
						}
						if f.cluster == "" {
							f.cluster = ext.Cluster
						}
					}
				}
			}
			t, _, err := d.resolve(f, false)
			if err != nil {
				return err
			}
			if t.cluster == "" {
				return errors.New("--cluster is required: which cluster at Portcullis is this token for?")
			}
			cred, err := d.getCredential(cmd.Context(), t, credentialOptions{cacheDir: f.cacheDir, interactive: interactive, noBrowser: f.noBrowser})
			if err != nil {
				return err
			}
			exp := metav1.NewTime(cred.expiresAt)
			out := clientauthv1.ExecCredential{
				TypeMeta: metav1.TypeMeta{Kind: "ExecCredential", APIVersion: apiVersion},
				Status:   &clientauthv1.ExecCredentialStatus{Token: cred.token, ExpirationTimestamp: &exp},
			}
			b, err := json.Marshal(out)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(d.Stdout, string(b))
			return err
		},
	}
	f.addTarget(cmd.Flags())
	f.addLogin(cmd.Flags())
	return cmd
}

func newWhoamiCommand(d *Deps) *cobra.Command {
	f := &targetFlags{}
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Say who Portcullis and the cluster think you are",
		Long: `Shows the session cached for a Portcullis server (user, groups, identity
provider, when it ends), checks it with Portcullis, and asks the cluster of the
kubeconfig context who it sees (a SelfSubjectReview).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, kc, err := d.resolve(f, true)
			if err != nil {
				return err
			}
			return d.whoami(cmd.Context(), f, t, kc)
		},
	}
	f.addTarget(cmd.Flags())
	f.addKubeconfig(cmd.Flags())
	return cmd
}

func (d *Deps) whoami(ctx context.Context, f *targetFlags, t *target, kc *kubeContext) error {
	cache, err := d.openCache(f.cacheDir)
	if err != nil {
		return err
	}
	unlock, err := cache.lock(ctx, t.server, nil)
	if err != nil {
		return err
	}
	entry, err := cache.load(t.server)
	unlock()
	if err != nil {
		return err
	}
	w := d.Stdout
	fmt.Fprintf(w, "Portcullis:         %s\n", t.server)
	if entry.RefreshToken == "" {
		fmt.Fprintf(w, "Session:            none (run: %s)\n", loginCommand(t))
		// Tokens got by exchanging an ID token have no session: ask
		// Portcullis about the token itself.
		for cluster, tok := range entry.Tokens {
			if !tok.Exchanged || (t.cluster != "" && cluster != t.cluster) {
				continue
			}
			state := "valid until " + tok.ExpiresAt.Local().Format(time.RFC1123)
			if !tok.usable(d.Clock.Now()) {
				fmt.Fprintf(w, "Token for %-9s expired (exchanged again from the ID token file on next use)\n", cluster+":")
				continue
			}
			fmt.Fprintf(w, "Token for %-9s %s (exchanged from an ID token)\n", cluster+":", state)
			d.whoAmIRequestLine(ctx, w, t, tok.Token)
		}
		return nil
	}
	s := entry.Session
	fmt.Fprintf(w, "User:               %s\n", s.Username)
	if s.Email != "" {
		fmt.Fprintf(w, "Email:              %s\n", s.Email)
	}
	fmt.Fprintf(w, "Identity provider:  %s\n", s.IdentityProvider)
	fmt.Fprintf(w, "Groups:             %s\n", strings.Join(s.Groups, ", "))
	if !s.ExpiresAt.IsZero() {
		fmt.Fprintf(w, "Session ends:       %s at the latest\n", s.ExpiresAt.Local().Format(time.RFC1123))
	}
	for cluster, tok := range entry.Tokens {
		state := "valid until " + tok.ExpiresAt.Local().Format(time.RFC1123)
		if !tok.usable(d.Clock.Now()) {
			state = "expired (refreshed on next use)"
		}
		fmt.Fprintf(w, "Token for %-9s %s\n", cluster+":", state)
	}
	client, err := d.newPortalClient(t)
	if err != nil {
		return err
	}
	if live, err := client.session(ctx, entry.RefreshToken); err != nil {
		if sessionEnded(err) {
			fmt.Fprintf(w, "Portcullis says:    the session has ended (%v); run: %s\n", err, loginCommand(t))
			return nil
		}
		fmt.Fprintf(w, "Portcullis says:    could not check the session: %v\n", err)
	} else {
		fmt.Fprintf(w, "Portcullis says:    session active; clusters you may use: %s\n", strings.Join(live.Clusters, ", "))
	}
	if kc == nil || kc.cluster == nil || t.cluster == "" {
		fmt.Fprintln(w, "Cluster says:       (no kubeconfig context for this server: use --context to ask a cluster)")
		return nil
	}
	cred, err := d.getCredential(ctx, t, credentialOptions{cacheDir: f.cacheDir, interactive: d.StdinIsTerminal()})
	if err != nil {
		return err
	}
	rc := &rest.Config{
		Host:            kc.cluster.Server,
		BearerToken:     cred.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: kc.cluster.CertificateAuthorityData, CAFile: kc.cluster.CertificateAuthority, ServerName: kc.cluster.TLSServerName, Insecure: kc.cluster.InsecureSkipTLSVerify},
		Timeout:         30 * time.Second,
	}
	if d.Transport != nil {
		rc.Transport = d.Transport
		rc.TLSClientConfig = rest.TLSClientConfig{}
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("asking cluster %s (context %s) who you are: %w", t.cluster, kc.name, err)
	}
	ui := review.Status.UserInfo
	fmt.Fprintf(w, "Cluster %s says:  %s, groups %s\n", t.cluster, ui.Username, strings.Join(ui.Groups, ", "))
	return nil
}

func newLogoutCommand(d *Deps) *cobra.Command {
	f := &targetFlags{}
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "End your Portcullis session",
		Long: `Ends the session cached for a Portcullis server: Portcullis revokes it, so its
cluster tokens stop working within seconds, and the cache is emptied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, _, err := d.resolve(f, true)
			if err != nil {
				return err
			}
			cache, err := d.openCache(f.cacheDir)
			if err != nil {
				return err
			}
			unlock, err := cache.lock(cmd.Context(), t.server, nil)
			if err != nil {
				return err
			}
			defer unlock()
			entry, err := cache.load(t.server)
			if err != nil {
				return err
			}
			if entry.RefreshToken == "" {
				fmt.Fprintf(d.Stdout, "You are not logged in to %s.\n", t.server)
				return cache.remove(t.server)
			}
			client, err := d.newPortalClient(t)
			if err != nil {
				return err
			}
			if _, err := client.logout(cmd.Context(), entry.RefreshToken); err != nil {
				return fmt.Errorf("ending the session at %s: %w (the local cache is kept; try again)", t.server, err)
			}
			if err := cache.remove(t.server); err != nil {
				return err
			}
			fmt.Fprintf(d.Stdout, "Logged out of %s: the session of %s has ended and its cluster tokens no longer work.\n", t.server, entry.Session.Username)
			return nil
		},
	}
	f.addTarget(cmd.Flags())
	f.addKubeconfig(cmd.Flags())
	return cmd
}
