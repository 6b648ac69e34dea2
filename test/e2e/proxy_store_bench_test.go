package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"portcullis.dev/portcullis/test/e2e/framework"
)

// BenchmarkProxyModeByStore compares the proxy on the embedded store with
// the proxy on the kubernetes store, side by side in one run: two
// portcullis-server processes in front of one kube-apiserver, the same small
// GET through each, alternating in slices (-get-duration, -get-slice). The
// kubernetes store keeps its state in a namespace of that same
// kube-apiserver, with exactly the shipped Role. The store's part of a
// proxied request is the revocation check and the grants, both from memory
// in either store; this checks nothing else creeps in.
//
//	go test ./test/e2e -run '^$' -bench ProxyModeByStore -timeout 20m
func BenchmarkProxyModeByStore(b *testing.B) {
	s := startProxyStack(b, proxyStackOptions{
		clusters: []string{"c1"},
		users:    map[string][]string{"alice@c1": {"--user", "alice", "--group", "devs"}},
	})
	if _, stderr, err := framework.Kubectl(b, s.admin["c1"], "create", "configmap", "small", "--from-literal=k=v"); err != nil {
		b.Fatalf("create configmap: %v: %s", err, stderr)
	}

	// The same configuration on the kubernetes store, at another port.
	sn := &storeNamespaces{api: s.c1}
	ns := sn.new(b)
	sn.mu.Lock()
	storeToken := sn.cfg[ns].BearerToken
	sn.mu.Unlock()
	boltCfg, err := os.ReadFile(s.portcullis.ConfigPath)
	if err != nil {
		b.Fatal(err)
	}
	port := framework.FreePort(b)
	cfg := regexp.MustCompile(`(?m)^store:\n  path: .*\n`).ReplaceAllString(string(boltCfg),
		fmt.Sprintf("store:\n  type: kubernetes\n  kubernetes:\n    namespace: %s\n    kubeconfig: %s\n", ns, s.c1.KubeconfigFor(storeToken)))
	cfg = regexp.MustCompile(`(?m)^issuerURL: .*$`).ReplaceAllString(cfg, fmt.Sprintf("issuerURL: https://127.0.0.1:%d", port))
	cfgPath := filepath.Join(framework.WorkDir(b), "kubernetes-store.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	k8s := framework.StartPortcullis(b, framework.PortcullisOptions{Name: "portcullis-kubernetes", ConfigYAML: cfg, Port: port})
	tok := proxyMint(b, cfgPath, "--user", "alice", "--group", "devs", "--cluster", "c1", "--ttl", "1h", "--reason", "proxy store benchmark")

	procs := map[string]int{"apiserver": s.c1.Process.Pid(), "bolt-portcullis": s.portcullis.Process.Pid(), "kubernetes-portcullis": k8s.Process.Pid()}
	targets := []getTarget{
		{name: "bolt", cl: newBenchClient(b, s.portcullis.URL+"/clusters/c1", s.portcullis.CACertFile(), s.tokens["alice@c1"])},
		{name: "kubernetes", cl: newBenchClient(b, k8s.URL+"/clusters/c1", k8s.CACertFile(), tok)},
	}
	b.Run("get", func(b *testing.B) {
		benchGetSideBySide(b, targets, "/api/v1/namespaces/default/configmaps/small", procs)
	})
}
