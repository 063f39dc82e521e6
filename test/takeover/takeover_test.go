// Package takeover proves the switch from MetalLB without renumbering, against MetalLB's own
// controller: MetalLB allocates, `fairleadctl migrate metallb --apply` converts its
// configuration, Fairlead takes over every address as it is, and a rollback to MetalLB keeps
// them too.
package takeover

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/config/metallb/migrate"
	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers"
	"github.com/fairlead-lb/fairlead/speaker/l2/plan"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	mlb "github.com/fairlead-lb/fairlead/test/metallb"
)

// crossIP is what the two Services of different namespaces share.
const crossIP = "198.51.100.250"

const (
	services = 200 // allocated by MetalLB, then taken over
	later    = 20  // created under Fairlead, then under MetalLB again
	mlbNS    = "metallb-system"
)

// MetalLB's configuration: a dual-stack pool for everyone, two pools with a serviceAllocation
// (one per namespace, one per Service label, in priority order) and one that only hands out
// what is asked for.
var metallbConfig = `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: shared, namespace: metallb-system}
spec: {addresses: [198.51.100.0/24, "2001:db8:5::/112"]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: team, namespace: metallb-system}
spec:
  addresses: [203.0.113.0/25]
  serviceAllocation: {priority: 1, namespaces: [team-1]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: web, namespace: metallb-system}
spec:
  addresses: [203.0.113.128/25]
  serviceAllocation: {priority: 2, serviceSelectors: [{matchLabels: {tier: web}}]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: manual, namespace: metallb-system}
spec: {addresses: [192.0.2.0/25], autoAssign: false}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: all, namespace: metallb-system}
`

// service i of the mix: which namespace, and what it asks for (by i % 10).
func service(i int) *corev1.Service {
	ns := fmt.Sprintf("team-%d", (i/10)%3+1)
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("svc-%d", i), Annotations: map[string]string{}, Labels: map[string]string{}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports: []corev1.ServicePort{{Name: "p", Port: 80}}},
	}
	switch i % 10 {
	case 0: // a requested address, current prefix
		s.Annotations["metallb.io/loadBalancerIPs"] = fmt.Sprintf("198.51.100.%d", 200+(i/10)%50)
	case 1: // a requested address of a pool without autoAssign, old prefix
		s.Annotations["metallb.universe.tf/loadBalancerIPs"] = fmt.Sprintf("192.0.2.%d", 64+(i/10)%60)
	case 2, 3: // two Services sharing one address (ports differ), one key under each prefix
		s.Annotations[map[int]string{2: "metallb.universe.tf/allow-shared-ip", 3: "metallb.io/allow-shared-ip"}[i%10]] = fmt.Sprintf("key-%d", i/10)
		s.Spec.Ports[0].Port = int32(80 + i%10)
	case 4:
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	case 5: // selected by the web pool's serviceSelectors
		s.Labels["tier"] = "web"
	case 6:
		s.Annotations["metallb.io/address-pool"] = "manual"
	case 7:
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	}
	return s
}

// expectedPool is where MetalLB's rules put service i: what both implementations must choose.
func expectedPool(i int) string {
	switch k := i % 10; {
	case k == 1 || k == 6:
		return "manual"
	case k == 0 || k == 4 || k == 7: // requested in shared; dual-stack only shared has
		return "shared"
	case (i/10)%3 == 0: // team-1: the team pool, priority 1, before web's 2
		return "team"
	case k == 5:
		return "web"
	}
	return "shared"
}

func families(s *corev1.Service) int {
	if s.Spec.IPFamilyPolicy != nil && *s.Spec.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack {
		return 2
	}
	return 1
}

func ips(s *corev1.Service) string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return strings.Join(out, ",")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitAll polls the Services svc-from..svc-to-1 until ok holds for each.
func waitAll(t *testing.T, c client.Client, from, to int, what string, ok func(i int, s *corev1.Service) error) map[int]*corev1.Service {
	t.Helper()
	var got map[int]*corev1.Service
	kit.Eventually(t, 3*time.Minute, what, func(ctx context.Context) error {
		var list corev1.ServiceList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		byName := map[string]*corev1.Service{}
		for i := range list.Items {
			byName[list.Items[i].Namespace+"/"+list.Items[i].Name] = &list.Items[i]
		}
		got = map[int]*corev1.Service{}
		for i := from; i < to; i++ {
			want := service(i)
			s := byName[want.Namespace+"/"+want.Name]
			if s == nil {
				return fmt.Errorf("%s/%s missing", want.Namespace, want.Name)
			}
			if err := ok(i, s); err != nil {
				return fmt.Errorf("%s/%s: %w", s.Namespace, s.Name, err)
			}
			got[i] = s
		}
		return nil
	})
	return got
}

// startMetalLB runs MetalLB's controller; the returned func stops it (SIGTERM) and waits.
func startMetalLB(t *testing.T, bin, kubeconfig, logPath string) func() {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(t, err)
	cmd := exec.Command(bin, mlb.ControllerArgs(kubeconfig, mlbNS, "")...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// Killed: MetalLB's controller takes 10 s to heed SIGTERM, and how it stops does
			// not matter here; that it writes nothing afterwards does.
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// startFairlead runs Fairlead's controllers as fairlead-controller does; the returned func
// stops them and waits.
func startFairlead(t *testing.T, env *controlplane.Env) func() {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	must(t, err)
	must(t, controllers.Setup(mgr, controllers.Options{DefaultClass: true, MetalLBPoolAnnotation: true}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// watchAddresses fails the test on any change of the addresses of a Service in want, from
// now until the returned func is called; anyOrder forgives a change of their order only.
func watchAddresses(t *testing.T, c client.WithWatch, want map[string]string, anyOrder bool) (stop func(), seen func() int) {
	t.Helper()
	var list corev1.ServiceList
	must(t, c.List(context.Background(), &list))
	w, err := c.Watch(context.Background(), &corev1.ServiceList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	must(t, err)
	var mu sync.Mutex
	events := 0
	stopping := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok {
				mu.Lock()
				expected := stopping // a stopped watch may end with an error event
				mu.Unlock()
				if ev.Type == watch.Error && !expected {
					t.Errorf("watch error: %v", ev.Object)
				}
				continue
			}
			key := s.Namespace + "/" + s.Name
			mu.Lock()
			events++
			mu.Unlock()
			now := ips(s)
			if old, held := want[key]; held && anyOrder && sameSet(now, old) {
				now = old
			}
			if old, held := want[key]; held && (ev.Type == watch.Deleted || now != old) {
				t.Errorf("%s %s: addresses %q, had %q", ev.Type, key, ips(s), old)
			}
		}
	}()
	stop = func() {
		mu.Lock()
		stopping = true
		mu.Unlock()
		w.Stop()
		<-done
	}
	return stop, func() int { mu.Lock(); defer mu.Unlock(); return events }
}

func TestTakeOverFromMetalLBAndBack(t *testing.T) {
	kit.Heavy(t, "MetalLB's controller built from its module and a kube-apiserver")
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	begin := time.Now()
	defer func() { t.Logf("the whole test: %s", time.Since(begin).Round(time.Millisecond)) }()
	bin, err := mlb.Controller()
	must(t, err)
	crds, err := mlb.CRDDir()
	must(t, err)
	env := controlplane.StartForTest(t, controlplane.Options{ServiceCIDRs: "10.96.0.0/16,fd00:10:96::/108", CRDDirs: []string{crds}})
	t.Logf("apiserver up after %s", time.Since(begin).Round(time.Millisecond))
	ctx := context.Background()
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	must(t, err)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(t, env.Kubeconfig(kubeconfig))
	logPath := filepath.Join(dir, "metallb.log")
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("MetalLB's log (tail):\n%s", tail(string(b), 40))
		}
	}()
	for _, ns := range []string{mlbNS, "fairlead-system", "team-1", "team-2", "team-3"} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	for _, doc := range strings.Split(metallbConfig, "---\n") {
		u := &unstructured.Unstructured{}
		must(t, yamlToObject(doc, u))
		must(t, c.Create(ctx, u))
	}

	// 1. MetalLB allocates.
	start := time.Now()
	stopMetalLB := startMetalLB(t, bin, kubeconfig, logPath)
	for i := 0; i < services; i++ {
		must(t, c.Create(ctx, service(i)))
	}
	allocated := func(i int, s *corev1.Service) error {
		if n := len(s.Status.LoadBalancer.Ingress); n != families(s) {
			return fmt.Errorf("%d addresses, want %d", n, families(s))
		}
		return nil
	}
	// Two Services of different namespaces sharing one address by key: MetalLB allows it.
	for _, x := range []struct {
		ns, name string
		port     int32
	}{{"team-2", "cross-a", 443}, {"team-3", "cross-b", 444}} {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: x.ns, Name: x.name, Annotations: map[string]string{
			"metallb.io/allow-shared-ip": "cross", "metallb.io/loadBalancerIPs": crossIP}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
				Ports: []corev1.ServicePort{{Name: "p", Port: x.port}}}}
		must(t, c.Create(ctx, s))
	}
	byMetalLB := waitAll(t, c, 0, services, "MetalLB allocating", allocated)
	waitCross(t, c, "MetalLB giving both "+crossIP, func(s *corev1.Service) error {
		if ips(s) != crossIP {
			return fmt.Errorf("addresses %q, want %s", ips(s), crossIP)
		}
		return nil
	})
	t.Logf("MetalLB allocated %d Services in %s", services, time.Since(start).Round(time.Millisecond))
	t0 := time.Now()
	stopMetalLB()
	t.Logf("MetalLB stopped in %s", time.Since(t0).Round(time.Millisecond))
	held := map[string]string{"team-2/cross-a": crossIP, "team-3/cross-b": crossIP}
	for i, s := range byMetalLB {
		held[s.Namespace+"/"+s.Name] = ips(s)
		if p := s.Annotations[v1alpha1.MetalLBAnnotationAllocatedFromPool]; p != expectedPool(i) {
			t.Errorf("MetalLB put %s/%s (%s) in pool %q, the test expects %q", s.Namespace, s.Name, ips(s), p, expectedPool(i))
		}
	}
	sharing := 0
	for i := 2; i < services; i += 10 {
		if held[service(i).Namespace+"/"+service(i).Name] == held[service(i+1).Namespace+"/"+service(i+1).Name] {
			sharing++
		}
	}
	if sharing != services/10 {
		t.Errorf("MetalLB shared %d addresses, want %d", sharing, services/10)
	}

	// 2. fairleadctl migrate metallb --apply, then Fairlead; every address stays.
	stopWatch, events := watchAddresses(t, c, held, false)
	var out, report bytes.Buffer
	must(t, migrate.Run(ctx, c, migrate.Options{Apply: true, Namespace: mlbNS, Secrets: "fairlead-system"}, nil, &out, &report))
	// One line: the cross-namespace sharers, and their pool's opt-in.
	if lines := strings.Split(strings.TrimSpace(report.String()), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], "Services team-2/cross-a, team-3/cross-b: share "+crossIP+" across namespaces") ||
		!strings.Contains(lines[0], "IPPool shared is written with shareAcrossNamespaces: true") {
		t.Errorf("migration report:\n%s", report.String())
	}
	checkAnnounced(t, c, held)
	start = time.Now()
	stopFairlead := startFairlead(t, env)
	waitAll(t, c, 0, services, "Fairlead taking over", func(i int, s *corev1.Service) error {
		cond := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != "Allocated" || !controllerutil.ContainsFinalizer(s, v1alpha1.ServiceFinalizer) {
			return fmt.Errorf("not taken over yet: %+v", cond)
		}
		// MetalLB's pool annotation is Fairlead's now, with the value MetalLB wrote.
		if p, q := s.Annotations[v1alpha1.AnnotationAllocatedFromPool], s.Annotations[v1alpha1.MetalLBAnnotationAllocatedFromPool]; p != expectedPool(i) || q != p {
			return fmt.Errorf("pool annotations %q (Fairlead's) and %q (MetalLB's), want %q", p, q, expectedPool(i))
		}
		return nil
	})
	waitCross(t, c, "Fairlead taking both over with "+crossIP, func(s *corev1.Service) error {
		if !controllerutil.ContainsFinalizer(s, v1alpha1.ServiceFinalizer) || ips(s) != crossIP {
			return fmt.Errorf("not taken over with %s: %q", crossIP, ips(s))
		}
		return nil
	})
	t.Logf("Fairlead took over %d Services in %s", services+2, time.Since(start).Round(time.Millisecond))

	t.Logf("at %s: new Services", time.Since(begin).Round(time.Millisecond))
	// New Services get free addresses, from the pool MetalLB would have chosen.
	for i := services; i < services+later; i++ {
		must(t, c.Create(ctx, service(i)))
	}
	fresh := waitAll(t, c, services, services+later, "Fairlead allocating new Services", func(i int, s *corev1.Service) error {
		if err := allocated(i, s); err != nil {
			return err
		}
		if p := s.Annotations[v1alpha1.MetalLBAnnotationAllocatedFromPool]; p != expectedPool(i) {
			return fmt.Errorf("pool %q, want %q", p, expectedPool(i))
		}
		return nil
	})
	checkDistinct(t, c, held, fresh)
	t0 = time.Now()
	stopFairlead()
	t.Logf("Fairlead stopped in %s", time.Since(t0).Round(time.Millisecond))

	// 3. Rollback: Fairlead off, its finalizer and annotations removed (README, "Coming from
	// MetalLB"), MetalLB back on. MetalLB's annotation is removed too, only so that the test
	// sees MetalLB write it again on every Service: proof it has taken each one back.
	for _, s := range fresh {
		held[s.Namespace+"/"+s.Name] = ips(s)
	}
	stopWatch()
	if events() == 0 {
		t.Error("the take-over's watch saw no event at all: it cannot have checked anything")
	}
	// MetalLB writes IPv4 first whatever a Service's primary family: it reorders (only) the
	// IPv6-primary dual-stack Services Fairlead created.
	stopWatch, events = watchAddresses(t, c, held, true)
	defer stopWatch()
	var list corev1.ServiceList
	must(t, c.List(ctx, &list))
	for i := range list.Items {
		s := &list.Items[i]
		if !controllerutil.ContainsFinalizer(s, v1alpha1.ServiceFinalizer) {
			continue
		}
		base := s.DeepCopy()
		controllerutil.RemoveFinalizer(s, v1alpha1.ServiceFinalizer)
		delete(s.Annotations, v1alpha1.AnnotationAllocatedFromPool)
		delete(s.Annotations, v1alpha1.MetalLBAnnotationAllocatedFromPool)
		must(t, c.Patch(ctx, s, client.MergeFrom(base)))
	}
	start = time.Now()
	stopMetalLB = startMetalLB(t, bin, kubeconfig, logPath)
	defer stopMetalLB() // before the apiserver stops: it waits for the open watches
	waitAll(t, c, 0, services+later, "MetalLB taking back", func(i int, s *corev1.Service) error {
		if p := s.Annotations[v1alpha1.MetalLBAnnotationAllocatedFromPool]; p != expectedPool(i) {
			return fmt.Errorf("MetalLB's pool annotation %q, want %q", p, expectedPool(i))
		}
		return nil
	})
	t.Logf("MetalLB took back %d Services in %s", services+later, time.Since(start).Round(time.Millisecond))
	t.Logf("at %s: new Services for MetalLB", time.Since(begin).Round(time.Millisecond))
	// And MetalLB goes on handing out only free addresses.
	for i := services + later; i < services+2*later; i++ {
		must(t, c.Create(ctx, service(i)))
	}
	again := waitAll(t, c, services+later, services+2*later, "MetalLB allocating after the rollback", allocated)
	checkDistinct(t, c, held, again)
	t.Logf("at %s: done", time.Since(begin).Round(time.Millisecond))
	if events() == 0 {
		t.Error("the watch saw no event at all: it cannot have checked anything")
	}
}

// checkAnnounced runs the speakers' layer 2 plan on what the cluster holds right after the
// migration (before Fairlead's controller has touched a Service) for two ready nodes: every
// address taken over must have a node answering for it.
func checkAnnounced(t *testing.T, c client.Client, held map[string]string) {
	t.Helper()
	ctx := context.Background()
	var svcs corev1.ServiceList
	var pools v1alpha1.IPPoolList
	var ads v1alpha1.L2AdvertisementList
	must(t, c.List(ctx, &svcs))
	must(t, c.List(ctx, &pools))
	must(t, c.List(ctx, &ads))
	in := snapshot.Input{DefaultClass: true}
	for i := range svcs.Items {
		in.Services = append(in.Services, &svcs.Items[i])
	}
	for i := range pools.Items {
		in.Pools = append(in.Pools, &pools.Items[i])
	}
	for i := range ads.Items {
		in.L2Advertisements = append(in.L2Advertisements, &ads.Items[i])
	}
	for _, n := range []string{"node1", "node2"} {
		in.Nodes = append(in.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
	}
	as, problems := plan.Compute(plan.Input{Snapshot: snapshot.Build(in)})
	if len(problems) > 0 {
		t.Errorf("the speakers' plan has problems: %v", problems)
	}
	owner := map[string]string{}
	for _, a := range as {
		owner[a.IP.String()] = a.Owner
	}
	missing := 0
	for key, v := range held {
		for _, a := range strings.Split(v, ",") {
			if owner[a] == "" {
				missing++
				if missing <= 5 {
					t.Errorf("%s: %s would not be announced", key, a)
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d taken-over addresses would not be announced", missing)
	}
}

// checkDistinct: the new Services' addresses are held by no other Service, except a sharing
// partner (svc-2 and svc-3 of a decade).
func checkDistinct(t *testing.T, c client.Client, held map[string]string, fresh map[int]*corev1.Service) {
	t.Helper()
	owner := map[string]string{}
	for key, v := range held {
		for _, a := range strings.Split(v, ",") {
			owner[a] = key
		}
	}
	var keys []int
	for i := range fresh {
		keys = append(keys, i)
	}
	slices.Sort(keys)
	for _, i := range keys {
		s := fresh[i]
		for _, a := range strings.Split(ips(s), ",") {
			partner := ""
			if i%10 == 3 {
				p := service(i - 1)
				partner = p.Namespace + "/" + p.Name
			}
			if o, taken := owner[a]; taken && o != partner {
				t.Errorf("%s/%s got %s, which %s holds", s.Namespace, s.Name, a, o)
			}
			owner[a] = s.Namespace + "/" + s.Name
		}
	}
}

func sameSet(a, b string) bool {
	x, y := strings.Split(a, ","), strings.Split(b, ",")
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// waitCross waits until ok holds for both cross-namespace sharers.
func waitCross(t *testing.T, c client.Client, what string, ok func(*corev1.Service) error) {
	t.Helper()
	kit.Eventually(t, time.Minute, "the cross-namespace sharers: "+what, func(ctx context.Context) error {
		for _, k := range []client.ObjectKey{{Namespace: "team-2", Name: "cross-a"}, {Namespace: "team-3", Name: "cross-b"}} {
			var s corev1.Service
			if err := c.Get(ctx, k, &s); err != nil {
				return err
			}
			if err := ok(&s); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func yamlToObject(doc string, u *unstructured.Unstructured) error {
	return yaml.Unmarshal([]byte(doc), &u.Object)
}
