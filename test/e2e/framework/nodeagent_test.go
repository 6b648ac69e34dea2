package framework

import (
	"strings"
	"testing"
	"time"
)

// The node agent against kube-apiserver directly (admin token): the same
// requests the proxy tests make through Portcullis.
func TestNodeAgent_ServesExecAttachLogsDirectly(t *testing.T) {
	t.Parallel()
	api := StartAPIServer(t, APIServerOptions{})
	agent := StartNodeAgent(t, api, "agent-node")
	agent.CreatePod("default", "p")
	kc := api.AdminKubeconfig()

	for _, env := range [][]string{nil, {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}} {
		out, stderr, err := KubectlWith(t, KubectlOptions{Kubeconfig: kc, Env: env, Stdin: strings.NewReader("from stdin\n")},
			"exec", "-i", "p", "--", "cat")
		if err != nil || out != "from stdin\n" {
			t.Fatalf("exec cat (env %v): %q, %v; stderr: %s", env, out, err, stderr)
		}
		_, stderr, err = KubectlWith(t, KubectlOptions{Kubeconfig: kc, Env: env}, "exec", "p", "--", "exit", "7")
		if err == nil || !strings.Contains(stderr, "exit code 7") {
			t.Fatalf("exec exit 7 (env %v): %v; stderr: %s", env, err, stderr)
		}
	}
	for _, env := range [][]string{nil, {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}} {
		out, err := KubectlTTY(t, KubectlOptions{Kubeconfig: kc, Env: env}, 33, 101, "exec", "-it", "p", "--", "tty-size")
		if err != nil || !strings.Contains(out, "tty 33x101") {
			t.Fatalf("exec -it tty-size (env %v): %q, %v", env, out, err)
		}
	}
	out, stderr, err := Kubectl(t, kc, "logs", "p")
	if err != nil || out != "log line 1\nlog line 2\nlog line 3\n" {
		t.Fatalf("logs: %q, %v; stderr: %s", out, err, stderr)
	}
	logs := StartKubectl(t, KubectlOptions{Kubeconfig: kc}, "logs", "-f", "p")
	logs.WaitLine(t, 5*time.Second, func(l string) bool { return l == "log line 3" })
	logs.Stop()
}
