package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
(--certificate-authority).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return d.writeKubeconfig(cmd, f)
		},
	}
	fs := cmd.Flags()
	f.addTarget(fs)
	fs.BoolVar(&f.device, "device", false, "Make the plugin log in with a code on another device (for machines without a browser).")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Kubeconfig file to write (default: the first of $KUBECONFIG, or ~/.kube/config).")
	fs.StringVar(&f.name, "name", "", "Name of the context, cluster and user entries (default: the cluster's name).")
	fs.StringVar(&f.apiServer, "api-server", "", "URL of the cluster's own API server (webhook mode).")
	fs.StringVar(&f.apiServerCA, "api-server-ca", "", "PEM file of the CA of --api-server (default: the system's roots).")
	fs.StringVar(&f.command, "command", "", "Command kubectl runs for the plugin (default: this portcullis binary's absolute path).")
	fs.StringVar(&f.namespace, "namespace", "", "Namespace of the context.")
	fs.BoolVar(&f.setCurrent, "set-current", false, "Make the new context the current one (it is anyway when there is none).")
	fs.BoolVar(&f.force, "force", false, "Replace entries of the same name even if portcullis did not write them.")
	return cmd
}

func (d *Deps) kubeconfigPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env := d.Getenv("KUBECONFIG"); env != "" {
		for _, p := range filepath.SplitList(env) {
			if p != "" {
				return p, nil
			}
		}
	}
	home, err := d.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding your home directory: %w; give --kubeconfig", err)
	}
	return filepath.Join(home, ".kube", "config"), nil
}

func (d *Deps) writeKubeconfig(cmd *cobra.Command, f *kubeconfigFlags) error {
	t, _, err := d.resolve(&f.targetFlags, false)
	if err != nil {
		return err
	}
	if t.cluster == "" {
		return errors.New("--cluster is required")
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

	path, err := d.kubeconfigPath(f.kubeconfig)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.LoadFromFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cfg = clientcmdapi.NewConfig()
	case err != nil:
		return fmt.Errorf("reading %s: %w (nothing was changed)", path, err)
	}
	if err := e.Apply(cfg, f.setCurrent, f.force); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	fmt.Fprintf(d.Stdout, "Added context %q to %s (cluster %s at %s, %s mode).\nTry: kubectl --context %s get namespaces\n", e.Name, path, t.cluster, t.server, ci.Mode, e.Name)
	return nil
}
