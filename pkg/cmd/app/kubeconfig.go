package app

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	cliflag "k8s.io/component-base/cli/flag"

	"portcullis.dev/portcullis/pkg/server"
	"portcullis.dev/portcullis/pkg/webhook"
)

type webhookKubeconfigOptions struct {
	configFile, cluster, server, caFile, certDir, clientCert, clientKey string
	embed                                                               bool
}

func newWebhookKubeconfigCommand(sections flagSections) *cobra.Command {
	o := &webhookKubeconfigOptions{certDir: "/var/lib/portcullis/certs", embed: true}
	cmd := &cobra.Command{
		Use:   "webhook-kubeconfig",
		Short: "Print the kubeconfig file kube-apiserver's --authentication-token-webhook-config-file needs",
		Long: `Prints, in kubeconfig format, how kube-apiserver reaches Portcullis's TokenReview
endpoint for one cluster: the URL (with the cluster in the path), the CA that
signed Portcullis's serving certificate, and the client certificate
kube-apiserver presents (signed by the CA in webhook.clientCAFile).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := o.run()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	var fss cliflag.NamedFlagSets
	f := fss.FlagSet("webhook-kubeconfig")
	f.StringVar(&o.configFile, "config", "", "Portcullis configuration file (for issuerURL and the cluster list). Required.")
	f.StringVar(&o.cluster, "cluster", "", "Cluster (clusters[].name) the kube-apiserver serves. Required when there are several.")
	f.StringVar(&o.server, "server", "", "Base URL kube-apiserver reaches Portcullis at. Default: issuerURL.")
	f.StringVar(&o.caFile, "certificate-authority", "", "CA of Portcullis's serving certificate. Default: the self-signed certificate in --cert-dir.")
	f.StringVar(&o.certDir, "cert-dir", o.certDir, "portcullis-server's --cert-dir, to find its self-signed certificate.")
	f.StringVar(&o.clientCert, "client-certificate", "", "Client certificate kube-apiserver presents. Required.")
	f.StringVar(&o.clientKey, "client-key", "", "Key of --client-certificate. Required.")
	f.BoolVar(&o.embed, "embed-certs", o.embed, "Embed certificates and key in the output instead of referring to their paths.")
	sections.add(cmd, fss)
	markRequired(cmd, "config", "client-certificate", "client-key")
	return cmd
}

func (o *webhookKubeconfigOptions) run() ([]byte, error) {
	if o.configFile == "" || o.clientCert == "" || o.clientKey == "" {
		return nil, fmt.Errorf("--config, --client-certificate and --client-key are required")
	}
	cfg, err := server.LoadConfigFile(o.configFile)
	if err != nil {
		return nil, err
	}
	cluster := o.cluster
	if cluster == "" {
		if len(cfg.Clusters) != 1 {
			return nil, fmt.Errorf("the configuration has %d clusters: name one with --cluster", len(cfg.Clusters))
		}
		cluster = cfg.Clusters[0].Name
	}
	found := false
	for _, c := range cfg.Clusters {
		found = found || c.Name == cluster
	}
	if !found {
		return nil, fmt.Errorf("cluster %q is not in %s (clusters[].name)", cluster, o.configFile)
	}
	base := o.server
	if base == "" {
		base = cfg.IssuerURL
	}
	caFile := o.caFile
	if caFile == "" {
		caFile = filepath.Join(o.certDir, "portcullis.crt")
	}
	kc := clientcmdapi.NewConfig()
	c := clientcmdapi.NewCluster()
	c.Server = base + webhook.PathPrefix + "/" + cluster
	u := clientcmdapi.NewAuthInfo()
	if o.embed {
		if c.CertificateAuthorityData, err = os.ReadFile(caFile); err != nil {
			return nil, fmt.Errorf("reading the serving CA: %w (give --certificate-authority or --cert-dir)", err)
		}
		if u.ClientCertificateData, err = os.ReadFile(o.clientCert); err != nil {
			return nil, fmt.Errorf("reading --client-certificate: %w", err)
		}
		if u.ClientKeyData, err = os.ReadFile(o.clientKey); err != nil {
			return nil, fmt.Errorf("reading --client-key: %w", err)
		}
	} else {
		c.CertificateAuthority, u.ClientCertificate, u.ClientKey = caFile, o.clientCert, o.clientKey
	}
	kc.Clusters["portcullis"] = c
	kc.AuthInfos["kube-apiserver"] = u
	ctx := clientcmdapi.NewContext()
	ctx.Cluster, ctx.AuthInfo = "portcullis", "kube-apiserver"
	kc.Contexts["webhook"] = ctx
	kc.CurrentContext = "webhook"
	return clientcmd.Write(*kc)
}
