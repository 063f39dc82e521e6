package main

// These tests run the real fairlead-ccm binary (the upstream cloud-controller-manager with
// Fairlead as its cloud provider) against a real kube-apiserver, and for AWS against moto (an
// emulator, not a real AWS account).

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

const cleanupFinalizer = "service.kubernetes.io/load-balancer-cleanup"

var (
	ctx        = context.Background()
	env        *controlplane.Env
	binary     string
	kubeconfig string
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; nothing to see
	controlplane.Main(m, controlplane.Options{}, func(cp *controlplane.ControlPlane) (err error) {
		env, kubeconfig = cp.Env, cp.Kubeconfig
		binary, err = kit.Build("./cmd/fairlead-ccm", kit.BuildOptions{})
		return err
	})
}

type process struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
	// done is closed when the process has exited, with its error in exitErr.
	done    chan struct{}
	exitErr error
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startCCM runs fairlead-ccm with the given cloud-config, as the chart does but without leader
// election or a serving port; it is killed when the test ends.
func startCCM(t *testing.T, cloudConfig string, args ...string) *process {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "cloud-config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cloudConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &process{done: make(chan struct{})}
	if len(args) == 0 {
		args = []string{"--leader-elect=false"}
	}
	p.cmd = exec.Command(binary, append([]string{"--kubeconfig", kubeconfig, "--cloud-provider=fairlead", "--controllers=service",
		"--cloud-config", cfgPath, "--secure-port=0", "--cluster-name=ccm-test", "--v=2"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	// Killed with the test binary if that dies first.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("fairlead-ccm logs (tail):\n%s", tail(p.logs(), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func namespace(t *testing.T, name string) {
	t.Helper()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

// createNode registers a Ready node, as a kubelet would.
func createNode(t *testing.T, name, providerID string, internalIP netip.Addr) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{ProviderID: providerID}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internalIP.String()}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, n) })
}

func lbService(ns, name string, class *string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: class,
			Ports:             []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			Selector:          map[string]string{"app": name},
		},
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	var svc corev1.Service
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
		t.Fatal(err)
	}
	return &svc
}

// settle is how long the tests wait for the service controller, generously: it and the
// apiserver share two busy cores with other tests.
const settle = 90 * time.Second

func waitIngress(t *testing.T, ns, name string) corev1.LoadBalancerIngress {
	t.Helper()
	var in corev1.LoadBalancerIngress
	kit.Eventually(t, settle, "ingress of "+ns+"/"+name, func(context.Context) error {
		svc := get(t, ns, name)
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("finalizers %v, status %+v", svc.Finalizers, svc.Status)
		}
		in = svc.Status.LoadBalancer.Ingress[0]
		return nil
	})
	return in
}

// deleteAndWait deletes the Service and waits until it is gone: the service controller removes
// its cleanup finalizer only once the load balancer is deleted.
func deleteAndWait(t *testing.T, ns, name string) {
	t.Helper()
	if err := env.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, settle, ns+"/"+name+" to be deleted", func(context.Context) error {
		var svc corev1.Service
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &svc)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("finalizers %v, err %v", svc.Finalizers, err)
	})
}

// deleteBehind kills ccm and deletes Service ns/name with its finalizer removed by hand: a
// Service deleted while no fairlead-ccm runs, what it held left behind for the next one.
func deleteBehind(t *testing.T, ccm *process, ns, name string) {
	t.Helper()
	if err := ccm.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ccm.done
	svc := get(t, ns, name)
	svc.Finalizers = nil
	if err := env.Client.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	deleteAndWait(t, ns, name)
}

func events(t *testing.T, ns, name string) string {
	t.Helper()
	var list corev1.EventList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			fmt.Fprintf(&b, "%s %s: %s\n", e.Type, e.Reason, e.Message)
		}
	}
	return b.String()
}

// TestPools: with the pools backend, the upstream service controller gives an unclassed Service
// an address from an IPPool, keeps the addresses Services held before it started, releases an
// address when its Service is deleted, reports bad input in an Event, and leaves a Service of
// another class alone.
func TestPools(t *testing.T) {
	const ns = "ccm-pools"
	namespace(t, ns)
	create(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "ccm-pools"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.8-198.51.100.11"}, AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{ns}}}})
	createNode(t, "pools-node", "", netip.MustParseAddr("10.0.0.1"))

	// A Service that already held .8 before this fairlead-ccm started (a restart, or a new leader).
	old := lbService(ns, "old", nil)
	old.Finalizers = []string{cleanupFinalizer}
	create(t, old)
	old.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.8", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if err := env.Client.Status().Update(ctx, old); err != nil {
		t.Fatal(err)
	}
	// Another implementation's Service: the upstream controller must never touch it.
	create(t, lbService(ns, "classed", ptr.To("example.com/other")))

	startCCM(t, "provider: pools\n")

	create(t, lbService(ns, "web", nil))
	in := waitIngress(t, ns, "web")
	if in.IP != "198.51.100.9" || in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
		t.Fatalf("web got %+v; want 198.51.100.9 (the lowest free address: .8 is old's) with ipMode VIP", in)
	}
	if svc := get(t, ns, "web"); !slices.Contains(svc.Finalizers, cleanupFinalizer) {
		t.Fatalf("web has finalizers %v, want %s", svc.Finalizers, cleanupFinalizer)
	}
	if got := get(t, ns, "old").Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != "198.51.100.8" {
		t.Fatalf("old's ingress changed to %+v; a restart must keep addresses", got)
	}

	// Bad input: an Event says what is wrong, nothing is allocated.
	bad := lbService(ns, "bad", nil)
	bad.Annotations = map[string]string{v1alpha1.AnnotationIPs: "not-an-ip"}
	create(t, bad)
	kit.Eventually(t, settle, "an Event about bad's annotation", func(context.Context) error {
		ev := events(t, ns, "bad")
		if strings.Contains(ev, "SyncLoadBalancerFailed") && strings.Contains(ev, "InvalidRequest") && strings.Contains(ev, `"not-an-ip" is not an IP address`) {
			return nil
		}
		return fmt.Errorf("events:\n%s", ev)
	})
	if st := get(t, ns, "bad").Status.LoadBalancer; len(st.Ingress) != 0 {
		t.Fatalf("bad got %+v", st)
	}

	// Deleting web releases .9: the next Service gets it.
	deleteAndWait(t, ns, "web")
	create(t, lbService(ns, "next", nil))
	if in := waitIngress(t, ns, "next"); in.IP != "198.51.100.9" {
		t.Fatalf("next got %s; want 198.51.100.9, released by web's deletion", in.IP)
	}

	// By now the controller has handled every Service; the classed one was not among them.
	classed := get(t, ns, "classed")
	if len(classed.Status.LoadBalancer.Ingress) != 0 || len(classed.Finalizers) != 0 {
		t.Fatalf("the classed Service was touched: finalizers %v, status %+v", classed.Finalizers, classed.Status)
	}
	if ev := events(t, ns, "classed"); ev != "" {
		t.Fatalf("the classed Service has Events:\n%s", ev)
	}
	deleteAndWait(t, ns, "next")
	deleteAndWait(t, ns, "old")
}

// TestBadCloudConfig: a cloud-config the provider cannot use stops fairlead-ccm at start with a
// message naming the problem, before it touches any Service.
func TestBadCloudConfig(t *testing.T) {
	for cfg, want := range map[string]string{
		"provider: gce\n":                          `provider "gce" is not one of pools, aws-nlb, aws-eip`,
		"provider: aws-nlb\naws: {vpcID: vpc-1}\n": "provider aws-nlb needs aws.clusterName",
		"provider: pools\npool: x\n":               `unknown field "pool"`,
	} {
		p := startCCM(t, cfg)
		select {
		case <-p.done:
			if p.exitErr == nil {
				t.Errorf("cloud-config %q: fairlead-ccm exited 0", cfg)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("cloud-config %q: fairlead-ccm still runs after a minute", cfg)
		}
		if !strings.Contains(p.logs(), want) {
			t.Errorf("cloud-config %q: output does not say %q:\n%s", cfg, want, tail(p.logs(), 10))
		}
	}
}
