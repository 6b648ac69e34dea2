// Package kubeconfig writes the kubeconfig entries that make kubectl use the
// portcullis CLI as its exec credential plugin. The login portal (for its
// downloadable kubeconfig) and the CLI (`portcullis kubeconfig`) share it, so
// both write the same entries.
//
// It must never write a credential into a kubeconfig: the entries only say
// how to run the plugin, which keeps tokens in its own cache.
package kubeconfig

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// ExecAPIVersion is the ExecCredential version the plugin speaks.
	ExecAPIVersion = "client.authentication.k8s.io/v1"
	// ExtensionName is the cluster extension kubectl hands to exec plugins
	// (with provideClusterInfo) as spec.cluster.config.
	ExtensionName = "client.authentication.k8s.io/exec"
	// CommandName is the CLI's name.
	CommandName = "portcullis"
	// PluginCommandName is the CLI's name as a kubectl plugin
	// (`kubectl portcullis`).
	PluginCommandName = "kubectl-" + CommandName
)

// ClusterExtension is what Portcullis keeps in the cluster entry's exec
// extension: which Portcullis and which of its clusters the plugin logs in
// to, when its arguments do not say.
type ClusterExtension struct {
	Portcullis string `json:"portcullis"`
	Cluster    string `json:"cluster"`
}

// Entry describes one cluster for kubectl.
type Entry struct {
	// Name is the name of the context, cluster and user entries.
	Name string
	// Cluster is the cluster's name at Portcullis.
	Cluster string
	// Server is the URL kubectl sends requests to: the kube-apiserver in
	// webhook mode, <portcullis>/clusters/<name> in proxy mode.
	Server string
	// CAData is the PEM CA of Server (empty: the system's roots).
	CAData []byte
	// Namespace of the context (optional).
	Namespace string

	// Portcullis is the Portcullis server URL the plugin logs in to.
	Portcullis string
	// PortcullisCAFile or PortcullisCAData, when set, is how the plugin
	// trusts Portcullis (else the system's roots).
	PortcullisCAFile string
	PortcullisCAData []byte
	// Command runs the CLI; "portcullis" (from PATH) when empty.
	Command string
	// Device makes the plugin log in with the device flow.
	Device bool
	// IdentityProvider preselects the IdP (optional).
	IdentityProvider string
	// CacheDir is the plugin's --cache-dir (optional: its default).
	CacheDir string
	// BrowserCommand is the plugin's --browser-command (optional).
	BrowserCommand string
	// ListenAddresses are the plugin's --listen-address values (optional).
	ListenAddresses []string
}

// ExecArgs are the plugin's arguments for e.
func (e *Entry) ExecArgs() []string {
	args := []string{"exec-credential", "--server=" + e.Portcullis, "--cluster=" + e.Cluster}
	switch {
	case e.PortcullisCAFile != "":
		args = append(args, "--certificate-authority="+e.PortcullisCAFile)
	case len(e.PortcullisCAData) > 0:
		args = append(args, "--certificate-authority-data="+base64.StdEncoding.EncodeToString(e.PortcullisCAData))
	}
	if e.IdentityProvider != "" {
		args = append(args, "--idp="+e.IdentityProvider)
	}
	if e.Device {
		args = append(args, "--device")
	}
	if e.CacheDir != "" {
		args = append(args, "--cache-dir="+e.CacheDir)
	}
	if e.BrowserCommand != "" {
		args = append(args, "--browser-command="+e.BrowserCommand)
	}
	for _, a := range e.ListenAddresses {
		args = append(args, "--listen-address="+a)
	}
	return args
}

// IsOurs reports whether a user entry runs the portcullis plugin.
func IsOurs(ai *clientcmdapi.AuthInfo) bool {
	if ai == nil || ai.Exec == nil {
		return false
	}
	base := filepath.Base(ai.Exec.Command)
	return (strings.HasPrefix(base, CommandName) || strings.HasPrefix(base, PluginCommandName)) && slices.Contains(ai.Exec.Args, "exec-credential")
}

func clusterIsOurs(c *clientcmdapi.Cluster) bool {
	if c == nil {
		return false
	}
	_, ok := c.Extensions[ExtensionName]
	return ok
}

// Apply adds e's cluster, user and context entries to cfg. Entries of the
// same name that Portcullis wrote before are replaced; entries that someone
// else wrote are left alone and Apply fails (unless force), naming them.
// Every other entry is kept. With setCurrent (or when cfg has no current
// context), e's context becomes the current one.
func (e *Entry) Apply(cfg *clientcmdapi.Config, setCurrent, force bool) error {
	if e.Name == "" || e.Cluster == "" || e.Server == "" || e.Portcullis == "" {
		return fmt.Errorf("kubeconfig entry: name, cluster, server and Portcullis URL are required")
	}
	if !force {
		var clash []string
		if c, ok := cfg.Clusters[e.Name]; ok && !clusterIsOurs(c) {
			clash = append(clash, "cluster "+e.Name)
		}
		if u, ok := cfg.AuthInfos[e.Name]; ok && !IsOurs(u) {
			clash = append(clash, "user "+e.Name)
		}
		if c, ok := cfg.Contexts[e.Name]; ok && (c.Cluster != e.Name || c.AuthInfo != e.Name) {
			clash = append(clash, "context "+e.Name)
		}
		if len(clash) > 0 {
			return fmt.Errorf("the kubeconfig already has %s, not written by portcullis; choose another name (--name) or replace them (--force)", strings.Join(clash, ", "))
		}
	}
	ext, err := json.Marshal(ClusterExtension{Portcullis: e.Portcullis, Cluster: e.Cluster})
	if err != nil {
		return err
	}
	cluster := clientcmdapi.NewCluster()
	cluster.Server = e.Server
	cluster.CertificateAuthorityData = e.CAData
	cluster.Extensions[ExtensionName] = &runtime.Unknown{Raw: ext, ContentType: runtime.ContentTypeJSON}
	cmd := e.Command
	if cmd == "" {
		cmd = CommandName
	}
	user := clientcmdapi.NewAuthInfo()
	user.Exec = &clientcmdapi.ExecConfig{
		APIVersion:         ExecAPIVersion,
		Command:            cmd,
		Args:               e.ExecArgs(),
		InteractiveMode:    clientcmdapi.IfAvailableExecInteractiveMode,
		ProvideClusterInfo: true,
		InstallHint: `The portcullis CLI logs you in to this cluster. Install it (it is released with
Portcullis), put it on your PATH, and run: portcullis login --server ` + e.Portcullis,
	}
	ctx := clientcmdapi.NewContext()
	ctx.Cluster, ctx.AuthInfo, ctx.Namespace = e.Name, e.Name, e.Namespace
	cfg.Clusters[e.Name] = cluster
	cfg.AuthInfos[e.Name] = user
	cfg.Contexts[e.Name] = ctx
	if setCurrent || cfg.CurrentContext == "" {
		cfg.CurrentContext = e.Name
	}
	return nil
}

// ParseExtension reads a ClusterExtension from the raw spec.cluster.config
// of an ExecCredential.
func ParseExtension(raw []byte) (ClusterExtension, bool) {
	var ext ClusterExtension
	if len(raw) == 0 || json.Unmarshal(raw, &ext) != nil {
		return ClusterExtension{}, false
	}
	return ext, ext.Portcullis != "" || ext.Cluster != ""
}
