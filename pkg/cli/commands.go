package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
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
	browserCommand                       string
	listenAddresses                      []string
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
	f.addBrowser(fs)
}

// addBrowser adds the flags of the browser login, which `kubeconfig` also
// takes (and writes into the plugin's arguments).
func (f *targetFlags) addBrowser(fs *pflag.FlagSet) {
	fs.StringVar(&f.browserCommand, "browser-command", "", "Command that opens the login page, given its address as last argument (default $PORTCULLIS_BROWSER, $BROWSER, or the desktop's browser). With it, exec-credential also logs in when kubectl runs without a terminal (IDEs).")
	fs.StringArrayVar(&f.listenAddresses, "listen-address", nil, "Address the browser login's redirect comes back to, 127.0.0.1:PORT or [::1]:PORT, for a fixed port (firewalls, WSL); repeat it to try several in order (default 127.0.0.1 on a free port).")
}

func (f *targetFlags) addKubeconfig(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Kubeconfig file (default $KUBECONFIG, or ~/.kube/config).")
	fs.StringVar(&f.context, "context", "", "Kubeconfig context (default: the current one).")
}

// pathOptions choose the kubeconfig files as kubectl does: --kubeconfig,
// else $KUBECONFIG (a list of files), else ~/.kube/config.
func (d *Deps) pathOptions(explicit string) *clientcmd.PathOptions {
	po := clientcmd.NewDefaultPathOptions()
	if home, err := d.UserHomeDir(); err == nil {
		po.GlobalFile = filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)
	}
	po.LoadingRules.ExplicitPath = explicit
	po.LoadingRules.Precedence = po.GetLoadingPrecedence()
	return po
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

// kubeContext is a kubeconfig context that uses the portcullis plugin.
type kubeContext struct {
	name    string
	cluster *clientcmdapi.Cluster
	// args are the plugin's --name=value arguments (a flag alone is "true").
	args map[string][]string
}

func (kc *kubeContext) arg(name string) string {
	if v := kc.args[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// loadKubeContext returns the named (or current) context, if it runs the
// portcullis plugin. A context asked for by name (--context) that does not
// exist or does not run the plugin is an error.
func (d *Deps) loadKubeContext(f *targetFlags) (*kubeContext, error) {
	po := d.pathOptions(f.kubeconfig)
	files := strings.Join(po.GetLoadingPrecedence(), string(filepath.ListSeparator))
	cfg, err := po.GetStartingConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig %s: %w", files, err)
	}
	d.debugf(1, "kubeconfig: %s", files)
	name := f.context
	if name == "" {
		name = cfg.CurrentContext
	}
	ctx, ok := cfg.Contexts[name]
	if f.context != "" && !ok {
		names := make([]string, 0, len(cfg.Contexts))
		for n := range cfg.Contexts {
			names = append(names, n)
		}
		sort.Strings(names)
		has := "it has none"
		if len(names) > 0 {
			has = "it has: " + strings.Join(names, ", ")
		}
		return nil, fmt.Errorf("context %q does not exist in the kubeconfig %s (%s); check --context, or add it with `%s kubeconfig`", f.context, files, has, d.Name)
	}
	if name == "" || !ok {
		return nil, nil
	}
	user := cfg.AuthInfos[ctx.AuthInfo]
	if !kubeconfig.IsOurs(user) {
		if f.context != "" {
			return nil, fmt.Errorf("context %q does not log in with portcullis (its user %q runs no `portcullis exec-credential`): give --server, or add a context with `%s kubeconfig`", f.context, ctx.AuthInfo, d.Name)
		}
		d.debugf(1, "the current context %q does not use portcullis", name)
		return nil, nil
	}
	kc := &kubeContext{name: name, cluster: cfg.Clusters[ctx.Cluster], args: map[string][]string{}}
	for _, a := range user.Exec.Args {
		if k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			kc.args[k] = append(kc.args[k], v)
		} else if strings.HasPrefix(a, "--") {
			kc.args[strings.TrimPrefix(a, "--")] = append(kc.args[strings.TrimPrefix(a, "--")], "true")
		}
	}
	d.debugf(1, "context %q runs portcullis with %s", name, strings.Join(redactArgs(user.Exec.Args), " "))
	return kc, nil
}

// redactArgs hides the values of arguments that may carry a secret (none
// should, but a kubeconfig is written by anyone).
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		k, _, ok := strings.Cut(a, "=")
		if ok && (strings.Contains(k, "token") || strings.Contains(k, "secret") || strings.Contains(k, "password")) {
			a = k + "=REDACTED"
		}
		out[i] = a
	}
	return out
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
			f.server = kc.arg("server")
			if f.cluster == "" {
				f.cluster = kc.arg("cluster")
			}
			if f.caFile == "" && f.caData == "" {
				f.caFile, f.caData = kc.arg("certificate-authority"), kc.arg("certificate-authority-data")
			}
			if f.idp == "" {
				f.idp = kc.arg("idp")
			}
			f.device = f.device || kc.arg("device") == "true"
		}
		// The context's cache and browser settings, so that logging in
		// for a context fills the cache its plugin reads.
		if kc != nil {
			if f.cacheDir == "" {
				f.cacheDir = kc.arg("cache-dir")
			}
			if f.browserCommand == "" {
				f.browserCommand = kc.arg("browser-command")
			}
			if len(f.listenAddresses) == 0 {
				f.listenAddresses = kc.args["listen-address"]
			}
		}
	}
	if err := checkListenAddresses(f.listenAddresses); err != nil {
		return nil, nil, err
	}
	if f.server == "" {
		f.server = d.Getenv("PORTCULLIS_SERVER")
	}
	if f.server == "" {
		return nil, nil, fmt.Errorf("which Portcullis? Give --server (or set PORTCULLIS_SERVER, or use a kubeconfig context written by `%s kubeconfig`)", d.Name)
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
	cacheDir := f.cacheDir
	if cacheDir != "" {
		if abs, err := filepath.Abs(cacheDir); err == nil {
			cacheDir = abs
		}
	}
	return &target{server: server, cluster: f.cluster, caFile: caFile, caData: caData, idp: f.idp, device: f.device, name: d.Name, cacheDir: cacheDir}, kc, nil
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
				browserCommand: f.browserCommand, listenAddresses: f.listenAddresses,
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
interactively (its standard input is a terminal) or --browser-command is
given; otherwise the command fails at once and says what to run.`,
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
			// Without a terminal nobody may be there to finish a login:
			// fail at once, unless a browser command was configured, which
			// says a browser is there for a person (an IDE running kubectl).
			canLogin := interactive || (f.browserCommand != "" && !f.device && !f.noBrowser)
			d.debugf(1, "exec-credential for cluster %s: interactive=%v, may log in=%v", t.cluster, interactive, canLogin)
			cred, err := d.getCredential(cmd.Context(), t, credentialOptions{
				cacheDir: f.cacheDir, interactive: canLogin, noBrowser: f.noBrowser,
				browserCommand: f.browserCommand, listenAddresses: f.listenAddresses,
			})
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
			revoked, err := client.logout(cmd.Context(), entry.RefreshToken)
			if err != nil {
				return fmt.Errorf("ending the session at %s: %w (the local cache is kept; try again)", t.server, err)
			}
			if err := cache.remove(t.server); err != nil {
				return err
			}
			if !revoked {
				// Portcullis knew no live session for it: it had ended
				// (expired, revoked, or another logout), so this logout
				// revoked nothing and must not claim it did.
				fmt.Fprintf(d.Stdout, "Logged out of %s: the session of %s had already ended at Portcullis; the local cache is cleared.\n", t.server, entry.Session.Username)
				return nil
			}
			fmt.Fprintf(d.Stdout, "Logged out of %s: the session of %s has ended and its cluster tokens no longer work.\n", t.server, entry.Session.Username)
			return nil
		},
	}
	f.addTarget(cmd.Flags())
	f.addKubeconfig(cmd.Flags())
	return cmd
}
