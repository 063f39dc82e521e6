package chart

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

const valuesV1 = `
ipPools:
  - name: lan
    spec: {addresses: ["198.51.100.0/28"], avoidBuggyIPs: true}
l2Advertisements:
  - name: lan
    spec: {ipPools: [lan]}
`

// v2 changes the controller's settings and adds a pool with a higher priority, so that new
// Services go there while the old ones must stay where they are.
const valuesV2 = `
controller: {workers: 4, logLevel: debug}
ipPools:
  - name: lan
    spec: {addresses: ["198.51.100.0/28"], avoidBuggyIPs: true}
  - name: extra
    spec: {addresses: ["203.0.113.0/29"], priority: 1}
l2Advertisements:
  - name: lan
    spec: {ipPools: [lan, extra]}
`

// helm runs Helm's own install, upgrade and uninstall actions (what the helm CLI runs) against
// the test's apiserver, with releases stored as Secrets as the CLI does.
type helm struct {
	t   *testing.T
	cfg *action.Configuration
}

func newHelm(t *testing.T, env *controlplane.Env) *helm {
	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := env.Kubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = ptr.To(kubeconfig)
	flags.Namespace = ptr.To(namespace)
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		t.Fatal(err)
	}
	return &helm{t: t, cfg: cfg}
}

func values(t *testing.T, s string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (h *helm) install(vals string) {
	h.t.Helper()
	in := action.NewInstall(h.cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = release, namespace, true
	in.WaitStrategy = kube.HookOnlyStrategy
	if _, err := in.Run(load(h.t), values(h.t, vals)); err != nil {
		h.t.Fatalf("helm install: %v", err)
	}
}

// TestUpgradeAndUninstallKeepAddresses installs the chart with Helm's library, lets the
// controller (as the chart's ServiceAccount, with the Deployment's args) allocate addresses,
// upgrades to a new appVersion with changed values and restarts the controller as the new
// Deployment says, and shows that no Service changed or lost its address at any moment. Then it
// uninstalls: the CRDs, the pools and the Services' addresses stay, and a reinstall adopts the
// pools and carries on without renumbering anything.
func TestUpgradeAndUninstallKeepAddresses(t *testing.T) {
	// Each test has its own apiserver; most of their time is spent waiting (leases, sessions).
	t.Parallel()
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx := context.Background()
	c := env.Client
	h := newHelm(t, env)

	h.install(valuesV1)
	ctrl := startController(t, env, deployment(t, c))

	// Five Services, then a watch on all of them for the rest of the test: any status without
	// the address a Service had is a failure, however briefly it lasted.
	want := map[string]string{}
	for i := range 5 {
		name := fmt.Sprintf("svc-%d", i)
		if err := c.Create(ctx, lbService(name)); err != nil {
			t.Fatal(err)
		}
	}
	kit.Eventually(t, 60*time.Second, "five Services to get addresses", func(context.Context) error {
		for i := range 5 {
			name := fmt.Sprintf("svc-%d", i)
			ip, err := ingress(c, name)
			if err != nil {
				return err
			}
			want[name] = ip
		}
		return nil
	})
	if want["svc-0"] == want["svc-1"] || !strings.HasPrefix(want["svc-0"], "198.51.100.") {
		t.Fatalf("allocated %v", want)
	}
	w := watchAddresses(t, env, want)

	memberlistKey := func() string {
		t.Helper()
		var sec corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release + "-memberlist"}, &sec); err != nil {
			t.Fatalf("the member list key's Secret: %v", err)
		}
		if len(sec.Data["key"]) != 32 {
			t.Fatalf("the member list key is %d bytes, want 32", len(sec.Data["key"]))
		}
		return string(sec.Data["key"])
	}
	key := memberlistKey()

	// Upgrade: a new appVersion and changed values, applied by Helm's upgrade action.
	ch := load(t)
	ch.Metadata.Version, ch.Metadata.AppVersion = "0.2.0", "0.2.0"
	up := action.NewUpgrade(h.cfg)
	up.Namespace = namespace
	up.WaitStrategy = kube.HookOnlyStrategy
	if _, err := up.Run(release, ch, values(t, valuesV2)); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	dep := deployment(t, c)
	args := dep.Spec.Template.Spec.Containers[0].Args
	if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":0.2.0") || !slices.Contains(args, "--workers=4") {
		t.Fatalf("after the upgrade the Deployment runs %s with %v, want the new appVersion and --workers=4", img, args)
	}
	if memberlistKey() != key {
		t.Fatal("the upgrade changed the speakers' member list key: old and new speakers could not talk during the rollout")
	}
	// The rollout: the old controller goes, the new one starts from what the API holds.
	// A Service created while no controller runs: the new one must read back every address
	// before it allocates.
	ctrl.stop()
	if err := c.Create(ctx, lbService("after-upgrade")); err != nil {
		t.Fatal(err)
	}
	ctrl = startController(t, env, dep)
	kit.Eventually(t, 60*time.Second, "a new Service to get an address from the new pool", func(context.Context) error {
		ip, err := ingress(c, "after-upgrade")
		if err == nil && !strings.HasPrefix(ip, "203.0.113.") {
			return fmt.Errorf("got %s, want one from the pool the upgrade added", ip)
		}
		return err
	})
	w.check(t, "the upgrade")
	kit.Eventually(t, 30*time.Second, "the restarted controller to count the old addresses", func(context.Context) error {
		var p v1alpha1.IPPool
		if err := c.Get(ctx, client.ObjectKey{Name: "lan"}, &p); err != nil {
			return err
		}
		if p.Status.IPv4 == nil || p.Status.IPv4.Used != 5 {
			return fmt.Errorf("pool lan status %+v", p.Status.IPv4)
		}
		return nil
	})

	// Uninstall: Helm deletes the workloads and RBAC; it keeps CRDs (crds/ is never deleted)
	// and the pools and advertisements (resource-policy keep).
	un := action.NewUninstall(h.cfg)
	un.WaitStrategy, un.DeletionPropagation = kube.HookOnlyStrategy, "background"
	if _, err := un.Run(release); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: release + "-controller"}},
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: release + "-speaker"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: release + "-controller"}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s after uninstall: err %v, want NotFound", o, o.GetName(), err)
		}
	}
	for _, o := range []client.Object{
		crd("ippools.fairlead.dev"),
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}},
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "extra"}},
		&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil || o.GetDeletionTimestamp() != nil {
			t.Errorf("%T %s after uninstall: err %v, deleting %v; want it kept", o, o.GetName(), err, o.GetDeletionTimestamp())
		}
	}
	// The controller's Pods go with the Deployment (no kubelet here stops them for us).
	ctrl.stop()
	w.check(t, "the uninstall")

	// Reinstall: Helm adopts the kept pools (and the kept key), and the controller carries on
	// with every address.
	h.install(valuesV2)
	if memberlistKey() != key {
		t.Error("the reinstall replaced the kept member list key")
	}
	startController(t, env, deployment(t, c))
	if err := c.Create(ctx, lbService("after-reinstall")); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 60*time.Second, "a Service created after the reinstall to get an address", func(context.Context) error {
		ip, err := ingress(c, "after-reinstall")
		if err == nil && slices.Contains(w.addresses(), ip) {
			return fmt.Errorf("got %s, which another Service holds", ip)
		}
		return err
	})
	w.check(t, "the reinstall")
}

// crd is a CRD's metadata: enough to see whether it exists, without its Go type in the scheme.
func crd(name string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name}}
	m.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	return m
}

func lbService(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports: []corev1.ServicePort{{Port: 80}}}}
}

func deployment(t *testing.T, c client.Client) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: release + "-controller"}, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// ingress returns the Service's one address, or an error while it has none.
func ingress(c client.Client, name string) (string, error) {
	var s corev1.Service
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, &s); err != nil {
		return "", err
	}
	if len(s.Status.LoadBalancer.Ingress) != 1 {
		return "", fmt.Errorf("service %s has ingress %v", name, s.Status.LoadBalancer.Ingress)
	}
	return s.Status.LoadBalancer.Ingress[0].IP, nil
}

// addressWatch sees every version of the watched Services the apiserver stores.
type addressWatch struct {
	want map[string]string
	mu   sync.Mutex
	bad  []string
	seen int
}

func watchAddresses(t *testing.T, env *controlplane.Env, want map[string]string) *addressWatch {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	wi, err := wc.Watch(context.Background(), &corev1.ServiceList{}, client.InNamespace("default"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wi.Stop)
	w := &addressWatch{want: want}
	go func() {
		for ev := range wi.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			had, watched := w.want[s.Name]
			if !watched {
				continue
			}
			var got []string
			for _, in := range s.Status.LoadBalancer.Ingress {
				got = append(got, in.IP)
			}
			w.mu.Lock()
			w.seen++
			if ev.Type == watch.Deleted || len(got) != 1 || got[0] != had {
				w.bad = append(w.bad, fmt.Sprintf("%s %s: ingress %v, had %s", ev.Type, s.Name, got, had))
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *addressWatch) check(t *testing.T, during string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		t.Fatalf("during %s a Service lost or changed its address: %v", during, w.bad)
	}
	// The watch starts by listing every watched Service: seeing none means it is not working.
	if w.seen < len(w.want) {
		t.Fatalf("the watch saw %d versions of %d Services", w.seen, len(w.want))
	}
}

func (w *addressWatch) addresses() []string {
	var out []string
	for _, ip := range w.want {
		out = append(out, ip)
	}
	return out
}
