package framework

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/proxy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// NodeAgent plays the kubelet for a cluster without nodes: it registers a
// Node on 127.0.0.1 and serves the kubelet's streaming endpoints
// (/exec, /attach, /portForward, /containerLogs) for the pods bound to it,
// so kubectl exec, attach, port-forward and logs work against the real
// kube-apiserver. As the kubelet does, it hands each request to the
// Kubernetes streaming library (k8s.io/cri-streaming) through a one-time
// URL and apimachinery's upgrade-aware proxy: no protocol code here.
//
// Its "containers" run a few built-in commands instead of processes:
//
//	echo ARGS...   prints ARGS
//	cat            copies stdin to stdout until EOF
//	exit N         ends with exit code N
//	tty-size       prints "tty <rows>x<cols>" for the first terminal size (needs -t)
//	sleep          waits until stdin closes or the stream ends
//
// Attach prints "attached to <container>" and echoes stdin. Port-forward
// echoes what it receives on any port. Logs are the lines "log line 1",
// "log line 2", ...: three without follow; with follow, one more every
// 100 ms until the client goes away.
type NodeAgent struct {
	NodeName string
	Port     int

	api    *APIServer
	t      testing.TB
	stream streaming.Server
}

// StartNodeAgent registers a Node (named nodeName) with api and serves the
// kubelet's streaming endpoints for it over HTTPS on 127.0.0.1, with a
// certificate from the cluster CA (which kube-apiserver's
// --kubelet-certificate-authority trusts), requiring the client
// certificate kube-apiserver presents (signed by the client CA). It stops
// with the test.
func StartNodeAgent(t testing.TB, api *APIServer, nodeName string) *NodeAgent {
	t.Helper()
	n := &NodeAgent{NodeName: nodeName, api: api, t: t}

	// The streaming library's own server, on a loopback listener of its own:
	// the agent's handlers proxy to the one-time URLs it hands out.
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = sl.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: "http", Host: sl.Addr().String(), Path: "/"}
	n.stream, err = streaming.NewServer(cfg, agentRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	streamSrv := &http.Server{Handler: n.stream, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = streamSrv.Serve(sl) }()
	t.Cleanup(func() { _ = streamSrv.Close() })

	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", n.serveExec)
	mux.HandleFunc("/attach/{ns}/{pod}/{container}", n.serveAttach)
	mux.HandleFunc("/portForward/{ns}/{pod}", n.servePortForward)
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{container}", n.serveLogs)

	serving := api.PKI.IssueServing("127.0.0.1")
	cert, err := serving.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    CertPool(api.PKI.ClientCA),
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Port = l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	n.registerNode()
	return n
}

func (n *NodeAgent) registerNode() {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := n.api.Clientset().CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.NodeName}}, metav1.CreateOptions{})
	if err != nil {
		n.t.Fatalf("creating node %s: %v", n.NodeName, err)
	}
	now := metav1.Now()
	node.Status = corev1.NodeStatus{
		// Only an InternalIP: a Hostname address other than localhost makes
		// kube-apiserver resolve it.
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(n.Port)}},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
	}
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		n.t.Fatalf("setting the status of node %s: %v", n.NodeName, err)
	}
}

// CreatePod creates a running pod bound to the agent's node, with one
// container per name (default "main"), and waits until it reads back as
// Running. The namespace's default ServiceAccount is created if missing
// (there is no controller manager to do it).
func (n *NodeAgent) CreatePod(namespace, name string, containers ...string) *corev1.Pod {
	n.t.Helper()
	if len(containers) == 0 {
		containers = []string{"main"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := n.api.Clientset()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		n.t.Fatalf("creating namespace %s: %v", namespace, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		n.t.Fatalf("creating the default service account of %s: %v", namespace, err)
	}
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			NodeName:                     n.NodeName,
			AutomountServiceAccountToken: &no,
		},
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name: c, Image: "portcullis.dev/e2e-agent:none",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		})
	}
	pod, err := cs.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		n.t.Fatalf("creating pod %s/%s: %v", namespace, name, err)
	}
	now := metav1.Now()
	started := true
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "127.0.0.1",
		PodIP:     "127.0.0.1",
		StartTime: &now,
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: ct, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	for _, c := range containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, Ready: true, Started: &started,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			Image:       "portcullis.dev/e2e-agent:none",
			ImageID:     "portcullis.dev/e2e-agent@sha256:0000000000000000000000000000000000000000000000000000000000000000",
			ContainerID: "e2e-agent://" + namespace + "/" + name + "/" + c,
		})
	}
	pod, err = cs.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		n.t.Fatalf("setting the status of pod %s/%s: %v", namespace, name, err)
	}
	return pod
}

func (n *NodeAgent) serveExec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	resp, err := n.stream.GetExec(&runtimeapi.ExecRequest{
		ContainerId: containerID(r),
		Cmd:         q["command"],
		Tty:         flag(q, "tty"),
		Stdin:       flag(q, "input"),
		Stdout:      flag(q, "output"),
		Stderr:      flag(q, "error"),
	})
	n.proxyTo(w, r, resp.GetUrl(), err)
}

func (n *NodeAgent) serveAttach(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	resp, err := n.stream.GetAttach(&runtimeapi.AttachRequest{
		ContainerId: containerID(r),
		Tty:         flag(q, "tty"),
		Stdin:       flag(q, "input"),
		Stdout:      flag(q, "output"),
		Stderr:      flag(q, "error"),
	})
	n.proxyTo(w, r, resp.GetUrl(), err)
}

func (n *NodeAgent) servePortForward(w http.ResponseWriter, r *http.Request) {
	resp, err := n.stream.GetPortForward(&runtimeapi.PortForwardRequest{
		PodSandboxId: r.PathValue("ns") + "/" + r.PathValue("pod"),
	})
	n.proxyTo(w, r, resp.GetUrl(), err)
}

// proxyTo hands the request to the streaming server's one-time URL, as the
// kubelet does.
func (n *NodeAgent) proxyTo(w http.ResponseWriter, r *http.Request, target string, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := proxy.NewUpgradeAwareHandler(u, nil, false, true, agentResponder{})
	h.ServeHTTP(w, r)
}

type agentResponder struct{}

func (agentResponder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func (n *NodeAgent) serveLogs(w http.ResponseWriter, r *http.Request) {
	follow := flag(r.URL.Query(), "follow")
	w.Header().Set("Content-Type", "text/plain")
	fl, _ := w.(http.Flusher)
	for i := 1; ; i++ {
		if _, err := fmt.Fprintf(w, "log line %d\n", i); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		if !follow && i == 3 {
			return
		}
		if follow {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func containerID(r *http.Request) string {
	return r.PathValue("ns") + "/" + r.PathValue("pod") + "/" + r.PathValue("container")
}

func flag(q url.Values, name string) bool {
	v := q.Get(name)
	return v == "1" || v == "true"
}

// agentRuntime implements the streaming library's Runtime with built-in
// commands (see NodeAgent).
type agentRuntime struct{}

func (agentRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	if out == nil {
		out = nopWriteCloser{io.Discard}
	}
	switch cmd[0] {
	case "echo":
		_, err := fmt.Fprintln(out, strings.Join(cmd[1:], " "))
		return err
	case "cat":
		if in == nil {
			return nil
		}
		_, err := io.Copy(out, in)
		return err
	case "exit":
		code := 1
		if len(cmd) > 1 {
			code, _ = strconv.Atoi(cmd[1])
		}
		if code == 0 {
			return nil
		}
		return utilexec.CodeExitError{Err: fmt.Errorf("command %q exited with %d", strings.Join(cmd, " "), code), Code: code}
	case "tty-size":
		if !tty || resize == nil {
			return utilexec.CodeExitError{Err: errors.New("not a terminal"), Code: 2}
		}
		select {
		case size := <-resize:
			_, err := fmt.Fprintf(out, "tty %dx%d\r\n", size.Height, size.Width)
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return utilexec.CodeExitError{Err: errors.New("no terminal size received"), Code: 3}
		}
	case "sleep":
		if in != nil {
			_, _ = io.Copy(io.Discard, in)
			return nil
		}
		<-ctx.Done()
		return nil
	}
	w := errw
	if w == nil {
		w = out
	}
	fmt.Fprintf(w, "%s: command not found\n", cmd[0])
	return utilexec.CodeExitError{Err: fmt.Errorf("%s: command not found", cmd[0]), Code: 127}
}

func (agentRuntime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if out == nil {
		out = nopWriteCloser{io.Discard}
	}
	if _, err := fmt.Fprintf(out, "attached to %s\n", containerID); err != nil {
		return err
	}
	if in == nil {
		<-ctx.Done()
		return nil
	}
	// Echo line by line, so each line comes back as soon as it is complete.
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if _, err := fmt.Fprintln(out, sc.Text()); err != nil {
			return err
		}
	}
	return nil
}

func (agentRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	var once sync.Once
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(stream, stream)
		once.Do(func() { close(done) })
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
