package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"portcullis.dev/portcullis/pkg/kubeconfig"
	"portcullis.dev/portcullis/pkg/portalapi"
)

type kubeconfigFlags struct {
	targetFlags
	name, apiServer, apiServerCA, command, namespace string
	setCurrent, force                                bool
	print                                            bool
	output                                           string
}

func newKubeconfigCommand(d *Deps) *cobra.Command {
	f := &kubeconfigFlags{}
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Add a cluster to your kubeconfig, with portcullis as its credential plugin",
		Long: `Adds a cluster, a user and a context to your kubeconfig (merged into the file:
other entries are left as they are), so that kubectl runs "portcullis
exec-credential" for its tokens.

For a cluster in webhook mode, kubectl talks to the cluster's own API server:
its URL and CA come from Portcullis when its configuration has them
(clusters[].apiServer), else give them (--api-server, --api-server-ca).
For a cluster behind the Portcullis proxy, kubectl talks to
<server>/clusters/<name>, trusting the CA of Portcullis
(--certificate-authority).

The file is chosen as kubectl chooses it: --kubeconfig, else $KUBECONFIG (with
several files, entries that exist are changed where they are and new ones go
to the first file that exists), else ~/.kube/config; it is locked while it is
changed, as kubectl config does. --print writes a kubeconfig holding only
the new entries to stdout instead, and -o FILE to a new file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return d.writeKubeconfig(cmd, f)
		},
	}
	fs := cmd.Flags()
	f.addTarget(fs)
	fs.BoolVar(&f.device, "device", false, "Make the plugin log in with a code on another device (for machines without a browser).")
	f.addBrowser(fs)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Kubeconfig file to change (default: as kubectl, $KUBECONFIG or ~/.kube/config).")
	fs.BoolVar(&f.print, "print", false, "Print a kubeconfig with only this cluster's entries to stdout instead of changing a file.")
	fs.StringVarP(&f.output, "output", "o", "", "Write a kubeconfig with only this cluster's entries to this new file instead of changing yours (\"-\": stdout, as --print). An existing file is replaced only with --force.")
	fs.StringVar(&f.name, "name", "", "Name of the context, cluster and user entries (default: the cluster's name).")
	fs.StringVar(&f.apiServer, "api-server", "", "URL of the cluster's own API server, https://host[:port] (webhook mode).")
	fs.StringVar(&f.apiServerCA, "api-server-ca", "", "PEM file of the CA of --api-server (default: the system's roots).")
	fs.StringVar(&f.command, "command", "", "Command kubectl runs for the plugin (default: this portcullis binary's absolute path).")
	fs.StringVar(&f.namespace, "namespace", "", "Namespace of the context.")
	fs.BoolVar(&f.setCurrent, "set-current", false, "Make the new context the current one (it is anyway when there is none).")
	fs.BoolVar(&f.force, "force", false, "Replace entries of the same name even if portcullis did not write them.")
	return cmd
}

// checkAPIServer checks --api-server: kubectl sends the cluster token to it,
// so it must be an https URL with a host.
func checkAPIServer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("--api-server %q is not the URL of an API server: give it as https://host[:port], e.g. https://kube.example.com:6443 (kubectl sends your token there, so only https)", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("--api-server %q: the port must be a number from 1 to 65535", s)
		}
	}
	return nil
}

func (d *Deps) writeKubeconfig(cmd *cobra.Command, f *kubeconfigFlags) error {
	t, _, err := d.resolve(&f.targetFlags, false)
	if err != nil {
		return err
	}
	if t.cluster == "" {
		return errors.New("--cluster is required")
	}
	if f.apiServer != "" {
		if err := checkAPIServer(f.apiServer); err != nil {
			return err
		}
	}
	if f.print && f.output != "" && f.output != "-" {
		return errors.New("give --print or -o FILE, not both")
	}
	client, err := d.newPortalClient(t)
	if err != nil {
		return err
	}
	info, err := client.clusters(cmd.Context())
	if err != nil {
		return err
	}
	var ci *portalapi.ClusterInfo
	var names []string
	for i := range info.Clusters {
		names = append(names, info.Clusters[i].Name)
		if info.Clusters[i].Name == t.cluster {
			ci = &info.Clusters[i]
		}
	}
	if ci == nil {
		return fmt.Errorf("%s has no cluster %q (it has: %v)", t.server, t.cluster, names)
	}
	e := &kubeconfig.Entry{
		Name:             f.name,
		Cluster:          t.cluster,
		Namespace:        f.namespace,
		Portcullis:       t.server,
		PortcullisCAFile: t.caFile,
		IdentityProvider: t.idp,
		Device:           t.device,
		Command:          f.command,
		CacheDir:         t.cacheDir,
		BrowserCommand:   f.browserCommand,
		ListenAddresses:  f.listenAddresses,
	}
	if e.Name == "" {
		e.Name = t.cluster
	}
	if t.caFile == "" {
		e.PortcullisCAData = t.caData
	}
	if e.Command == "" {
		if exe, err := d.Executable(); err == nil {
			e.Command = exe
		}
	}
	portcullisCA := t.caData
	if t.caFile != "" {
		if portcullisCA, err = os.ReadFile(t.caFile); err != nil {
			return fmt.Errorf("reading --certificate-authority: %w", err)
		}
	}
	switch {
	case f.apiServer != "":
		e.Server = f.apiServer
		if f.apiServerCA != "" {
			if e.CAData, err = os.ReadFile(f.apiServerCA); err != nil {
				return fmt.Errorf("reading --api-server-ca: %w", err)
			}
		}
	case ci.Mode == "proxy":
		e.Server, e.CAData = ci.Server, portcullisCA
	case ci.Server != "":
		// A webhook-mode cluster whose API server Portcullis's
		// configuration gives (clusters[].apiServer).
		e.Server, e.CAData = ci.Server, ci.CertificateAuthorityData
	default:
		return fmt.Errorf("cluster %q is in webhook mode: kubectl talks to its own API server, so give its URL with --api-server (and its CA with --api-server-ca)", t.cluster)
	}

	if f.print || f.output != "" {
		return d.writeStandaloneKubeconfig(f, e)
	}
	po := d.pathOptions(f.kubeconfig)
	cfg, err := po.GetStartingConfig()
	if err != nil {
		return fmt.Errorf("reading the kubeconfig %s: %w (nothing was changed)", strings.Join(po.GetLoadingPrecedence(), string(filepath.ListSeparator)), err)
	}
	// Where kubectl puts new entries: the file a context lands in.
	path := po.GetDefaultFilename()
	if err := e.Apply(cfg, f.setCurrent, f.force); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	d.debugf(1, "writing kubeconfig entries %q (files %s, new entries to %s)", e.Name, strings.Join(po.GetLoadingPrecedence(), string(filepath.ListSeparator)), path)
	// ModifyConfig writes each entry to the file it came from (new ones to
	// path), holding kubectl's lock files meanwhile.
	if err := clientcmd.ModifyConfig(po, *cfg, false); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	fmt.Fprintf(d.Stdout, "Added context %q to %s (cluster %s at %s, %s mode).\nTry: kubectl --context %s get namespaces\n", e.Name, path, t.cluster, t.server, ci.Mode, e.Name)
	return nil
}

// writeStandaloneKubeconfig writes a kubeconfig of e's entries alone to
// stdout (--print, -o -) or to a new file (-o FILE).
func (d *Deps) writeStandaloneKubeconfig(f *kubeconfigFlags, e *kubeconfig.Entry) error {
	cfg := clientcmdapi.NewConfig()
	if err := e.Apply(cfg, true, true); err != nil {
		return err
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if f.print || f.output == "-" {
		_, err = d.Stdout.Write(b)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if f.force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	if dir := filepath.Dir(f.output); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("writing %s: %w", f.output, err)
		}
	}
	out, err := os.OpenFile(f.output, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: -o writes a new file; replace it with --force, or merge into it with --kubeconfig %s", f.output, f.output)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.output, err)
	}
	if _, err := out.Write(b); err != nil {
		out.Close()
		return fmt.Errorf("writing %s: %w", f.output, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", f.output, err)
	}
	fmt.Fprintf(d.Stderr, "Wrote a kubeconfig for cluster %s to %s.\nTry: kubectl --kubeconfig %s get namespaces\n", e.Cluster, f.output, f.output)
	return nil
}
