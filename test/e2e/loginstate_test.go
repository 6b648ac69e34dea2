package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/pkg/loginstate"
	"portcullis.dev/portcullis/pkg/loginstate/loginstatetest"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// The login-state conformance suite against a real kube-apiserver and etcd:
// the Kubernetes backend is what lets any replica serve any step of a login,
// so its single-use takes and optimistic updates are proven on the real API.
func TestLoginStateOnKubernetesPassesTheConformanceSuite(t *testing.T) {
	t.Parallel()
	api := framework.StartAPIServer(t, framework.APIServerOptions{})
	cs := api.Clientset()
	var n atomic.Int32
	loginstatetest.Run(t, func(t *testing.T, clk clock.PassiveClock) loginstate.Store {
		ns := fmt.Sprintf("loginstate-%d", n.Add(1))
		if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return loginstate.NewKubernetes(cs, ns, clk, nil)
	})
}
