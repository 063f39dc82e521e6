package main

// These tests run the real fairlead-controller binary against a real kube-apiserver and kill
// it, to prove what only a process can show: restarts and leader failover change no address.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

var (
	ctx        = context.Background()
	env        *controlplane.Env
	binary     string
	kubeconfig string
)

func TestMain(m *testing.M) {
	// The tests create some 300 Services; envtest's default /24 of ClusterIPs is too small.
	controlplane.Main(m, controlplane.Options{ServiceCIDRs: "10.96.0.0/16"}, func(cp *controlplane.ControlPlane) (err error) {
		env, kubeconfig = cp.Env, cp.Kubeconfig
		binary, err = kit.Build("./cmd/fairlead-controller", kit.BuildOptions{})
		return err
	})
}

type process struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
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

// startController runs the binary with short leader-election timings; it is SIGKILLed at the
// end of the test if still running.
func startController(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{}
	all := append([]string{"--kubeconfig", kubeconfig, "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--leader-lease-duration", "3s", "--leader-renew-deadline", "2s", "--leader-retry-period", "250ms"}, args...)
	p.cmd = exec.Command(binary, all...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("controller %d logs (tail):\n%s", p.cmd.Process.Pid, tail(p.logs(), 40))
		}
	})
	return p
}

func (p *process) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// leads matches client-go's leaderelection log line, case-insensitively because its wording has changed case before.
func (p *process) leads() bool {
	return strings.Contains(strings.ToLower(p.logs()), "successfully acquired lease")
}

// leading is leads as a condition for kit.Eventually.
func (p *process) leading(context.Context) error {
	if p.leads() {
		return nil
	}
	return fmt.Errorf("no %q in its logs", "successfully acquired lease")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func setup(t *testing.T, name, cidr string) string {
	t.Helper()
	ns := strings.ToLower(name)
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{cidr}, AllocateTo: &v1alpha1.AllocateTo{Namespaces: []string{ns}}}}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	return ns
}

func service(ns string, i int, class *string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("svc-%03d", i)},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:             class,
			AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports:                         []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
}

// create creates services [from, to) with 8 parallel creators.
func create(ns string, from, to int) error {
	var g errgroup.Group
	g.SetLimit(8)
	for i := from; i < to; i++ {
		g.Go(func() error { return env.Client.Create(ctx, service(ns, i, nil)) })
	}
	return g.Wait()
}

func createServices(t *testing.T, ns string, from, to int) {
	t.Helper()
	if err := create(ns, from, to); err != nil {
		t.Fatal(err)
	}
}

// addresses maps each Service of ns with an address to it, and fails on any address held twice.
func addresses(t *testing.T, ns string) map[string]string {
	t.Helper()
	var list corev1.ServiceList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	owner := map[string]string{}
	for _, s := range list.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			if prev, dup := owner[in.IP]; dup {
				t.Fatalf("address %s is held by both %s and %s", in.IP, prev, s.Name)
			}
			owner[in.IP] = s.Name
			out[s.Name] = in.IP
		}
	}
	return out
}

func waitAllocated(t *testing.T, ns string, n int, timeout time.Duration) map[string]string {
	t.Helper()
	var got map[string]string
	kit.Eventually(t, timeout, fmt.Sprintf("%d Services of %s to have an address", n, ns), func(context.Context) error {
		if got = addresses(t, ns); len(got) < n {
			return fmt.Errorf("only %d of %d Services have an address", len(got), n)
		}
		return nil
	})
	return got
}

// unchanged fails if a Service that had an address before now has another (or none).
func unchanged(t *testing.T, before, after map[string]string) {
	t.Helper()
	for name, ip := range before {
		if after[name] != ip {
			t.Errorf("%s had %s before, has %q after", name, ip, after[name])
		}
	}
}

func TestRestartMidChurnKeepsEveryAddress(t *testing.T) {
	ns := setup(t, "restart", "198.51.100.0/24")
	first := startController(t)

	// Create and delete Services while the controller works, and kill it in the middle.
	created := make(chan error, 1)
	go func() { created <- create(ns, 0, 200) }()
	waitAllocated(t, ns, 60, 30*time.Second)
	for i := 0; i < 20; i++ {
		_ = env.Client.Delete(ctx, service(ns, i, nil))
	}
	first.kill()
	before := addresses(t, ns)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the controller with %d Services allocated", len(before))

	startController(t)
	// The Services deleted before the kill are held by our finalizer until the new process
	// releases them; they must disappear.
	kit.Eventually(t, 60*time.Second, "the 20 deleted Services to be released", services(ns, 180))
	after := waitAllocated(t, ns, 180, 60*time.Second)
	for i := 0; i < 20; i++ {
		delete(before, fmt.Sprintf("svc-%03d", i))
	}
	unchanged(t, before, after)
}

func TestLeaderKilledStandbyTakesOver(t *testing.T) {
	ns := setup(t, "leader", "203.0.113.0/24")
	a := startController(t)
	kit.Eventually(t, 20*time.Second, "the first replica to lead", a.leading)
	b := startController(t)
	createServices(t, ns, 0, 30)
	before := waitAllocated(t, ns, 30, 30*time.Second)
	if b.leads() {
		t.Fatal("the standby took the lease while the leader was alive")
	}

	a.kill()
	kit.Eventually(t, 20*time.Second, "the standby to take over", b.leading)
	createServices(t, ns, 30, 60)
	after := waitAllocated(t, ns, 60, 30*time.Second)
	unchanged(t, before, after)
}

func TestDefaultClassOff(t *testing.T) {
	ns := setup(t, "classoff", "192.0.2.0/28")
	startController(t, "--default-class=false")
	ours := service(ns, 1, ptr.To(v1alpha1.LoadBalancerClass))
	unclassed := service(ns, 2, nil)
	for _, s := range []*corev1.Service{ours, unclassed} {
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	waitAllocated(t, ns, 1, 30*time.Second)
	time.Sleep(time.Second)
	got := addresses(t, ns)
	if _, ok := got[ours.Name]; !ok || len(got) != 1 {
		t.Fatalf("with --default-class=false, want only %s allocated, got %v", ours.Name, got)
	}
}

// services is a condition for kit.Eventually: ns has n Services left.
func services(ns string, n int) func(context.Context) error {
	return func(ctx context.Context) error {
		var list corev1.ServiceList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(list.Items) != n {
			return fmt.Errorf("%d Services in %s, want %d", len(list.Items), ns, n)
		}
		return nil
	}
}

// holdersWatch follows every write to the Services of ns, in the apiserver's order, and records
// each moment at which one address was held by two Services.
type holdersWatch struct {
	mu         sync.Mutex
	violations []string
	writes     int
}

func watchHolders(t *testing.T, ns string) *holdersWatch {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	w, err := cs.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	h := &holdersWatch{}
	go func() {
		held := map[string][]string{} // Service → addresses
		for ev := range w.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(held, svc.Name)
			} else {
				var ips []string
				for _, in := range svc.Status.LoadBalancer.Ingress {
					ips = append(ips, in.IP)
				}
				held[svc.Name] = ips
			}
			owner := map[string]string{}
			h.mu.Lock()
			h.writes++
			for name, ips := range held {
				for _, ip := range ips {
					if other, dup := owner[ip]; dup {
						h.violations = append(h.violations, fmt.Sprintf("at resourceVersion %s: %s held by %s and %s", svc.ResourceVersion, ip, other, name))
					}
					owner[ip] = name
				}
			}
			h.mu.Unlock()
		}
	}()
	return h
}

func (h *holdersWatch) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.violations) > 0 {
		t.Fatalf("%d moments with an address held twice (of %d writes), first: %s", len(h.violations), h.writes, h.violations[0])
	}
}

// A leader paused past its Lease resumes with a stale view of who holds what. Until it notices
// that it lost the Lease, it must not write: the new leader has handed out addresses since.
func TestPausedLeaderWritesNothingAfterItsLease(t *testing.T) {
	ns := setup(t, "paused", "192.0.2.64/26") // apart from the other tests' pools, which stay
	holders := watchHolders(t, ns)
	a := startController(t)
	kit.Eventually(t, 20*time.Second, "the first replica to lead", a.leading)
	b := startController(t)
	createServices(t, ns, 0, 20)
	waitAllocated(t, ns, 20, 30*time.Second)

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
	kit.Eventually(t, 30*time.Second, "the standby to take over from the paused leader", b.leading)
	// While the old leader sleeps, the new one frees ten addresses and hands out twenty: in the
	// old leader's view the freed ones are still held and the new Services hold nothing.
	for i := 0; i < 10; i++ {
		if err := env.Client.Delete(ctx, service(ns, i, nil)); err != nil {
			t.Fatal(err)
		}
	}
	kit.Eventually(t, 30*time.Second, "the new leader to release the deleted Services", services(ns, 10))
	createServices(t, ns, 20, 40)
	before := waitAllocated(t, ns, 30, 30*time.Second)

	exited := make(chan error, 1)
	go func() { exited <- a.cmd.Wait() }()
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited: // it notices the lost Lease and stops
	case <-time.After(30 * time.Second):
		t.Fatal("the old leader still runs 30 s after it lost its Lease")
	}
	// The old leader did try: its reconcilers ran on the stale view, and the fence refused them.
	if !strings.Contains(a.logs(), "not provably held") {
		t.Fatalf("the resumed leader never attempted a write, so this run proves nothing; its logs:\n%s", tail(a.logs(), 30))
	}
	createServices(t, ns, 40, 45)
	after := waitAllocated(t, ns, 35, 30*time.Second)
	unchanged(t, before, after)
	holders.check(t)
}

// The controller's metrics as a scraper meets them: the apiserver reviews the token
// (controller-runtime's filter); health probes stay plain, on their own port.
func TestMetricsNeedAGrantedToken(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(env.Config)
	if err := scrape.Grant(ctx, cs, "metrics-reader", scrape.MetricsReader, "default", "prometheus"); err != nil {
		t.Fatal(err)
	}
	granted, err := scrape.Token(ctx, cs, "default", "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	denied, err := scrape.Token(ctx, cs, "default", "nosy")
	if err != nil {
		t.Fatal(err)
	}
	metrics, health := freeAddr(t), freeAddr(t)
	startController(t, "--leader-elect=false", "--metrics-bind-address", metrics, "--health-probe-bind-address", health)
	body := scrape.CheckAuth(t, ctx, nil, metrics, granted, denied)
	if !strings.Contains(string(body), "fairlead_fenced_writes_total") {
		t.Errorf("granted scrape lacks fairlead_fenced_writes_total")
	}
	if code, body, err := scrape.GetPlain(ctx, nil, health, "/healthz"); err != nil || code != 200 {
		t.Errorf("GET http://%s/healthz: %d %q %v", health, code, body, err)
	}
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
