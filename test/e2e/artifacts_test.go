package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/pkg/apis/config"
	"portcullis.dev/portcullis/test/e2e/framework"
)

// artifactModes are the overlays of artifacts/overlays.
var artifactModes = []string{"webhook", "proxy", "aggregated", "webhook-ha", "proxy-ha"}

// portcullisSA is the service account every overlay runs Portcullis as.
const portcullisSA = "system:serviceaccount:portcullis:portcullis"

// renderOverlay is `kubectl kustomize artifacts/overlays/<mode>`, as YAML.
func renderOverlay(t *testing.T, mode string) []byte {
	t.Helper()
	dir := filepath.Join(framework.RepoRoot(t), "artifacts", "overlays", mode)
	out, stderr, err := framework.Kubectl(t, "", "kustomize", dir)
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v: %s", dir, err, stderr)
	}
	return []byte(out)
}

// decodeObjects splits a multi-document YAML stream into objects.
func decodeObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decoding rendered YAML: %v", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

func encodeObjects(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes()
}

func findObject(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func fromUnstructured[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return &out
}

// builtinRoles are the rules of bootstrap roles the overlays bind, as
// kube-apiserver creates them.
var builtinRoles = map[string][]rbacv1.PolicyRule{
	"Role kube-system/extension-apiserver-authentication-reader": {{
		APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"},
		ResourceNames: []string{"extension-apiserver-authentication"},
	}},
}

// grants expands what the rendered RBAC grants each subject, as sorted
// "verb group/resource[/name] [in namespace]" lines.
func grants(t *testing.T, objs []*unstructured.Unstructured) map[string][]string {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{}
	for k, v := range builtinRoles {
		roles[k] = v
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			cr := fromUnstructured[rbacv1.ClusterRole](t, o)
			if cr.AggregationRule != nil {
				t.Errorf("ClusterRole %s aggregates other roles: its rights cannot be reviewed here", cr.Name)
			}
			roles["ClusterRole "+cr.Name] = cr.Rules
		case "Role":
			r := fromUnstructured[rbacv1.Role](t, o)
			roles["Role "+r.Namespace+"/"+r.Name] = r.Rules
		}
	}
	out := map[string][]string{}
	bind := func(kind, ns, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		key := ref.Kind + " " + ref.Name
		if ref.Kind == "Role" {
			key = "Role " + ns + "/" + ref.Name
		}
		rules, ok := roles[key]
		if !ok {
			t.Errorf("%s %s binds %s, which is neither rendered nor a known bootstrap role", kind, name, key)
			return
		}
		for _, s := range subjects {
			subject := s.Kind + ":" + s.Name
			if s.Kind == "ServiceAccount" {
				subject = "system:serviceaccount:" + s.Namespace + ":" + s.Name
			}
			for _, r := range rules {
				if len(r.NonResourceURLs) > 0 {
					for _, u := range r.NonResourceURLs {
						for _, v := range r.Verbs {
							out[subject] = append(out[subject], v+" "+u)
						}
					}
					continue
				}
				names := r.ResourceNames
				if len(names) == 0 {
					names = []string{""}
				}
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, n := range names {
							for _, v := range r.Verbs {
								line := v + " " + g + "/" + res
								if n != "" {
									line += "/" + n
								}
								if ns != "" {
									line += " in " + ns
								}
								out[subject] = append(out[subject], line)
							}
						}
					}
				}
			}
		}
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRoleBinding":
			b := fromUnstructured[rbacv1.ClusterRoleBinding](t, o)
			bind(o.GetKind(), "", b.Name, b.RoleRef, b.Subjects)
		case "RoleBinding":
			b := fromUnstructured[rbacv1.RoleBinding](t, o)
			bind(o.GetKind(), b.Namespace, b.Name, b.RoleRef, b.Subjects)
		}
	}
	for s := range out {
		sort.Strings(out[s])
		out[s] = slices.Compact(out[s])
	}
	return out
}

// TestArtifacts_RBACGrantsEachModeOnlyWhatItNeeds renders every overlay and
// compares what its RBAC grants, subject by subject, with an explicit
// allow-list: nothing more (least privilege), nothing less (the mode works).
func TestArtifacts_RBACGrantsEachModeOnlyWhatItNeeds(t *testing.T) {
	t.Parallel()
	proxy := []string{
		"create authorization.k8s.io/subjectaccessreviews",
		"impersonate /groups",
		"impersonate /users",
		// uids and userextras/<key> for every key: RBAC has no
		// "userextras/*" pattern, and with this verb in this group "*"
		// means exactly those (see artifacts/rbac/proxy-clusterrole.yaml).
		"impersonate authentication.k8s.io/*",
	}
	// The kubernetes store and the chores Lease, in Portcullis's namespace.
	var store []string
	for _, res := range []string{"/secrets", "/configmaps"} {
		for _, v := range []string{"create", "delete", "get", "list", "update", "watch"} {
			store = append(store, v+" "+res+" in portcullis")
		}
	}
	for _, v := range []string{"create", "get", "update"} {
		store = append(store, v+" coordination.k8s.io/leases in portcullis")
	}
	want := map[string]map[string][]string{
		"webhook-ha": {portcullisSA: store},
		"proxy-ha":   {portcullisSA: append(slices.Clone(proxy), store...)},
		// Portcullis only answers kube-apiserver's TokenReviews.
		"webhook": {},
		"proxy":   {portcullisSA: proxy},
		"aggregated": {
			portcullisSA: {
				"create authorization.k8s.io/subjectaccessreviews",
				"get /configmaps/extension-apiserver-authentication in kube-system",
				"list /configmaps/extension-apiserver-authentication in kube-system",
				"watch /configmaps/extension-apiserver-authentication in kube-system",
			},
			// Anyone may exchange a token; only the exchange is public.
			"Group:system:unauthenticated": {"create login.portcullis.dev/tokencredentialrequests"},
			// The access APIs are reachable by every authenticated user;
			// who may see or decide what is the justInTime policy's.
			"Group:system:authenticated": {
				"create login.portcullis.dev/tokencredentialrequests",
				"create login.portcullis.dev/whoamirequests",
				"create login.portcullis.dev/accessrequests",
				"get login.portcullis.dev/accessrequests",
				"list login.portcullis.dev/accessrequests",
				"create login.portcullis.dev/accessrequestdecisions",
				"create login.portcullis.dev/accessgrants",
				"get login.portcullis.dev/accessgrants",
				"list login.portcullis.dev/accessgrants",
				"delete login.portcullis.dev/accessgrants",
			},
		},
	}
	for _, mode := range artifactModes {
		t.Run(mode, func(t *testing.T) {
			objs := decodeObjects(t, renderOverlay(t, mode))
			got := grants(t, objs)
			for subject, lines := range got {
				wantLines := want[mode][subject]
				sort.Strings(wantLines)
				if !slices.Equal(lines, wantLines) {
					t.Errorf("%s is granted\n  %s\nwant exactly\n  %s", subject, strings.Join(lines, "\n  "), strings.Join(wantLines, "\n  "))
				}
			}
			for subject := range want[mode] {
				if _, ok := got[subject]; !ok {
					t.Errorf("%s is granted nothing, want %v", subject, want[mode][subject])
				}
			}
			for _, o := range objs {
				var rules []rbacv1.PolicyRule
				switch o.GetKind() {
				case "ClusterRole":
					rules = fromUnstructured[rbacv1.ClusterRole](t, o).Rules
				case "Role":
					rules = fromUnstructured[rbacv1.Role](t, o).Rules
				}
				for _, r := range rules {
					wildcard := slices.Contains(r.Verbs, "*") || slices.Contains(r.APIGroups, "*") || slices.Contains(r.NonResourceURLs, "*")
					// The one reviewed exception, above.
					if slices.Contains(r.Resources, "*") && !(slices.Equal(r.Verbs, []string{"impersonate"}) && slices.Equal(r.APIGroups, []string{"authentication.k8s.io"})) {
						wildcard = true
					}
					if wildcard {
						t.Errorf("%s %s has a wildcard rule: %+v", o.GetKind(), o.GetName(), r)
					}
				}
			}
			// The session and token-revocation roles are there for
			// administrators to bind, and touch those resources only.
			if mode == "aggregated" {
				for name, rule := range map[string][2]string{
					"portcullis:session-admin":  {"sessions", "get list delete"},
					"portcullis:session-viewer": {"sessions", "get list"},
					"portcullis:token-revoker":  {"tokenrevocations", "create"},
				} {
					resource, verbs := rule[0], rule[1]
					o := findObject(objs, "ClusterRole", name)
					if o == nil {
						t.Errorf("ClusterRole %s is missing", name)
						continue
					}
					cr := fromUnstructured[rbacv1.ClusterRole](t, o)
					if len(cr.Rules) != 1 || !slices.Equal(cr.Rules[0].APIGroups, []string{"login.portcullis.dev"}) ||
						!slices.Equal(cr.Rules[0].Resources, []string{resource}) || strings.Join(cr.Rules[0].Verbs, " ") != verbs {
						t.Errorf("ClusterRole %s rules = %+v, want %s on login.portcullis.dev %s", name, cr.Rules, verbs, resource)
					}
				}
			}
		})
	}
}

// TestArtifacts_DeploymentIsHardenedAndConfigured checks what the brief of
// every overlay promises: a non-root, read-only, unprivileged container with
// probes and requests, mounting a configuration that Portcullis accepts.
func TestArtifacts_DeploymentIsHardenedAndConfigured(t *testing.T) {
	t.Parallel()
	for _, mode := range artifactModes {
		t.Run(mode, func(t *testing.T) {
			objs := decodeObjects(t, renderOverlay(t, mode))
			for _, kind := range []string{"Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "PersistentVolumeClaim"} {
				if o := findObject(objs, kind, "portcullis"); o == nil && kind != "PersistentVolumeClaim" {
					t.Errorf("no %s portcullis", kind)
				}
			}
			if dep := findObject(objs, "Deployment", "portcullis"); dep != nil {
				containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
				image, _, _ := unstructured.NestedString(containers[0].(map[string]any), "image")
				if !strings.HasPrefix(image, "ghcr.io/portcullis-dev/portcullis-server:v") {
					t.Errorf("the default image is %q, want a release of ghcr.io/portcullis-dev/portcullis-server", image)
				}
			}
			if mode == "aggregated" && findObject(objs, "APIService", "v1alpha1.login.portcullis.dev") == nil {
				t.Errorf("no APIService v1alpha1.login.portcullis.dev")
			}
			d := findObject(objs, "Deployment", "portcullis")
			if d == nil {
				t.Fatal("no Deployment")
			}
			spec, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
			pod, _, _ := unstructured.NestedMap(spec, "securityContext")
			if pod["runAsNonRoot"] != true {
				t.Errorf("pod securityContext = %v, want runAsNonRoot", pod)
			}
			containers, _, _ := unstructured.NestedSlice(spec, "containers")
			if len(containers) != 1 {
				t.Fatalf("%d containers, want 1", len(containers))
			}
			c := containers[0].(map[string]any)
			sc, _, _ := unstructured.NestedMap(c, "securityContext")
			drop, _, _ := unstructured.NestedStringSlice(c, "securityContext", "capabilities", "drop")
			if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false || !slices.Equal(drop, []string{"ALL"}) {
				t.Errorf("container securityContext = %v, want a read-only root, no privilege escalation, no capabilities", sc)
			}
			for probe, path := range map[string]string{"livenessProbe": "/livez", "readinessProbe": "/readyz"} {
				if got, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); got != path {
					t.Errorf("%s path = %q, want %s", probe, got, path)
				}
			}
			if req, _, _ := unstructured.NestedStringMap(c, "resources", "requests"); req["cpu"] == "" || req["memory"] == "" {
				t.Errorf("resource requests = %v, want cpu and memory", req)
			}
			automount, _, _ := unstructured.NestedBool(spec, "automountServiceAccountToken")
			if automount != (mode == "aggregated") {
				t.Errorf("automountServiceAccountToken = %v: only the aggregated mode needs the default service-account token", automount)
			}

			cm := findObject(objs, "ConfigMap", "portcullis-config")
			if cm == nil {
				t.Fatal("no ConfigMap portcullis-config")
			}
			data, _, _ := unstructured.NestedString(cm.Object, "data", "portcullis.yaml")
			if _, err := config.Decode(mode+"/portcullis.yaml", []byte(data)); err != nil {
				// The files it names are mounted in the pod, not here: those
				// are the only problems allowed.
				var problems, missing []string
				for _, line := range strings.Split(err.Error(), "\n") {
					switch line = strings.TrimSpace(line); {
					case !strings.HasPrefix(line, "- "):
					case strings.Contains(line, "cannot be read (no such file or directory)"):
						missing = append(missing, line)
					default:
						problems = append(problems, line)
					}
				}
				if len(problems) > 0 || len(missing) == 0 {
					t.Errorf("Portcullis rejects the overlay's configuration:\n%s", err)
				}
			}
			if findObject(objs, "ConfigMap", "portcullis-audit-policy") == nil {
				t.Errorf("no ConfigMap portcullis-audit-policy")
			}
		})
	}
}

// TestArtifacts_HAOverlaysKeepTwoReplicasServing checks the promises of the
// -ha overlays: three replicas spread across nodes, rolled one at a time
// with none down before its successor is ready, a budget that keeps two,
// and no state on the pod.
func TestArtifacts_HAOverlaysKeepTwoReplicasServing(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"webhook-ha", "proxy-ha"} {
		t.Run(mode, func(t *testing.T) {
			objs := decodeObjects(t, renderOverlay(t, mode))
			d := findObject(objs, "Deployment", "portcullis")
			if d == nil {
				t.Fatal("no Deployment")
			}
			if n, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); number(n) != 3 {
				t.Errorf("replicas = %d, want 3", n)
			}
			strategy, _, _ := unstructured.NestedMap(d.Object, "spec", "strategy")
			if strategy["type"] != "RollingUpdate" {
				t.Errorf("strategy = %v, want RollingUpdate", strategy)
			}
			if mu, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "strategy", "rollingUpdate", "maxUnavailable"); mu == nil || number(mu) != 0 {
				t.Errorf("maxUnavailable = %v, want 0", mu)
			}
			spread, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "topologySpreadConstraints")
			if len(spread) == 0 || spread[0].(map[string]any)["topologyKey"] != "kubernetes.io/hostname" {
				t.Errorf("topologySpreadConstraints = %v, want a spread across nodes", spread)
			}
			if findObject(objs, "PersistentVolumeClaim", "portcullis-state") != nil {
				t.Error("a state volume claim is rendered: replicas keep nothing on the pod")
			}
			pdb := findObject(objs, "PodDisruptionBudget", "portcullis")
			if pdb == nil {
				t.Fatal("no PodDisruptionBudget")
			}
			if ma, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "minAvailable"); number(ma) != 2 {
				t.Errorf("PodDisruptionBudget minAvailable = %v, want 2", ma)
			}
			if _, found, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "maxUnavailable"); found {
				t.Error("PodDisruptionBudget sets both minAvailable and maxUnavailable")
			}
			cm := findObject(objs, "ConfigMap", "portcullis-config")
			data, _, _ := unstructured.NestedString(cm.Object, "data", "portcullis.yaml")
			if !strings.Contains(data, "type: kubernetes") {
				t.Errorf("the configuration does not use the kubernetes store:\n%s", data)
			}
		})
	}
}

// number reads a decoded YAML number, whichever Go type the decoder chose.
func number(v any) float64 {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return -1
}

// TestArtifacts_KubeAPIServerAcceptsEveryOverlay applies each overlay with
// `kubectl apply --dry-run=server` against the real kube-apiserver, which
// runs every object through defaulting, validation and admission.
func TestArtifacts_KubeAPIServerAcceptsEveryOverlay(t *testing.T) {
	t.Parallel()
	api := framework.StartAPIServer(t, framework.APIServerOptions{})
	admin := api.AdminKubeconfig()
	// A server-side dry run cannot create the namespace its other objects
	// go into, so it must exist already (docs/install.md says so too).
	if _, stderr, err := framework.Kubectl(t, admin, "create", "namespace", "portcullis"); err != nil {
		t.Fatalf("create namespace: %v: %s", err, stderr)
	}
	for _, mode := range artifactModes {
		t.Run(mode, func(t *testing.T) {
			dir := filepath.Join(framework.RepoRoot(t), "artifacts", "overlays", mode)
			out, stderr, err := framework.Kubectl(t, admin, "apply", "--dry-run=server", "-k", dir)
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server -k %s: %v\n%s%s", dir, err, out, stderr)
			}
			for _, want := range []string{"deployment.apps/portcullis", "service/portcullis", "networkpolicy.networking.k8s.io/portcullis", "poddisruptionbudget.policy/portcullis"} {
				if !strings.Contains(out, want+" ") {
					t.Errorf("the dry run did not cover %s:\n%s", want, out)
				}
			}
			if !strings.Contains(out, "(server dry run)") {
				t.Errorf("kubectl did not do a server-side dry run:\n%s", out)
			}
		})
	}
	// make manifests: one install YAML per mode, with the release's image,
	// which the API server accepts as well.
	t.Run("make manifests", func(t *testing.T) {
		out := t.TempDir()
		cmd := exec.Command(filepath.Join(framework.RepoRoot(t), "hack", "manifests.sh"))
		cmd.Env = append(os.Environ(), "OUT="+out, "VERSION=v9.8.7+dirty", "IMAGE=registry.example/portcullis-server")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/manifests.sh: %v\n%s", err, b)
		}
		for _, mode := range artifactModes {
			file := filepath.Join(out, "portcullis-"+mode+".yaml")
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("no install YAML for mode %s: %v", mode, err)
			}
			dep := findObject(decodeObjects(t, b), "Deployment", "portcullis")
			if dep == nil {
				t.Fatalf("%s has no Deployment", file)
			}
			containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
			image, _, _ := unstructured.NestedString(containers[0].(map[string]any), "image")
			if image != "registry.example/portcullis-server:v9.8.7-dirty" {
				t.Errorf("%s runs image %q, want registry.example/portcullis-server:v9.8.7-dirty", file, image)
			}
			out, stderr, err := framework.Kubectl(t, admin, "apply", "--dry-run=server", "-f", file)
			if err != nil || !strings.Contains(out, "deployment.apps/portcullis created (server dry run)") {
				t.Errorf("kubectl apply --dry-run=server -f %s: %v\n%s%s", file, err, out, stderr)
			}
		}
	})
	// Nothing was created.
	if out, _, err := framework.Kubectl(t, admin, "get", "deployments,services,configmaps", "-n", "portcullis", "-o", "name"); err != nil || strings.Contains(out, "portcullis") {
		t.Errorf("after dry runs the namespace holds %q (%v), want nothing of Portcullis", out, err)
	}
}
