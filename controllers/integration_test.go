package controllers_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
)

var (
	ctx     = context.Background()
	k8s     client.Client
	restCfg *rest.Config // for what the typed client cannot ask, such as kubectl's tables
)

// One real kube-apiserver + etcd (dual-stack Service CIDRs) and one controller manager, as
// fairlead-controller runs it, serve every test in this package.
func TestMain(m *testing.M) {
	out := io.Discard
	if os.Getenv("FAIRLEAD_TEST_LOG") != "" {
		out = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(out), zap.UseDevMode(true)))
	controlplane.Main(m, controlplane.Options{ServiceCIDRs: "10.96.0.0/16,fd00:10:96::/108"}, func(cp *controlplane.ControlPlane) error {
		k8s, restCfg = cp.Client, cp.Config
		mgr, err := ctrl.NewManager(cp.Config, ctrl.Options{
			Scheme:                 cp.Scheme,
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
		})
		if err != nil {
			return err
		}
		if err := controllers.Setup(mgr, controllers.Options{DefaultClass: true, PoolStatusInterval: 100 * time.Millisecond}); err != nil {
			return err
		}
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(mctx); err != nil {
				fmt.Fprintln(os.Stderr, "manager:", err)
			}
		}()
		cp.Cleanup(func() { cancel(); <-done })
		return nil
	})
}

func TestAllocatesLowestAddressAndReportsIt(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "alloc", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/29"}})
	create(t, lbService(ns, "web"))
	s := waitIPs(t, ns, "web", "198.51.100.0")

	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v, want VIP", m)
	}
	if !slices.Contains(s.Finalizers, v1alpha1.ServiceFinalizer) {
		t.Errorf("finalizers %v lack %s", s.Finalizers, v1alpha1.ServiceFinalizer)
	}
	c := findCond(s.Status.Conditions, v1alpha1.ConditionIPAllocated)
	if c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("condition %+v, want True", c)
	}
	if note := waitEvent(t, ns, "web", "IPAllocated"); !strings.Contains(note, "198.51.100.0") {
		t.Errorf("event note %q does not name the address", note)
	}
	create(t, lbService(ns, "api"))
	waitIPs(t, ns, "api", "198.51.100.1")

	kit.Eventually(t, 10*time.Second, "the pool's IPv4 counts", func(context.Context) error {
		p := getPool(t, "alloc")
		if p.Status.IPv4 == nil || p.Status.IPv4.Used != 2 || p.Status.IPv4.Total != "8" || p.Status.IPv4.Free != "6" || p.Status.IPv6 != nil {
			return fmt.Errorf("pool status %+v %+v", p.Status.IPv4, p.Status.IPv6)
		}
		return nil
	})
	kit.Eventually(t, 5*time.Second, "the pool gauge", func(context.Context) error {
		if v := gauge("fairlead_pool_addresses", "alloc", "ipv4", "used"); v != 2 {
			return fmt.Errorf("fairlead_pool_addresses{pool=alloc,used} = %v, want 2", v)
		}
		return nil
	})
}

func TestSpecificAddresses(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "specific", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.16/28"}})

	s := lbService(ns, "by-spec")
	s.Spec.LoadBalancerIP = "198.51.100.20"
	create(t, s)
	waitIPs(t, ns, "by-spec", "198.51.100.20")

	create(t, lbService(ns, "by-annotation", withAnnotations(v1alpha1.AnnotationIPs, "198.51.100.21")))
	waitIPs(t, ns, "by-annotation", "198.51.100.21")

	create(t, lbService(ns, "by-metallb", withAnnotations("metallb.universe.tf/loadBalancerIPs", "198.51.100.22")))
	waitIPs(t, ns, "by-metallb", "198.51.100.22")

	// Taken, outside every pool, garbage: refused with a reason, nothing else changes.
	create(t, lbService(ns, "taken", withAnnotations(v1alpha1.AnnotationIPs, "198.51.100.20")))
	if msg := waitFailure(t, ns, "taken", "IPUnavailable"); !strings.Contains(msg, "by-spec") {
		t.Errorf("message %q does not say who holds the address", msg)
	}
	waitEvent(t, ns, "taken", "AllocationFailed")
	create(t, lbService(ns, "outside", withAnnotations(v1alpha1.AnnotationIPs, "192.0.2.200")))
	if msg := waitFailure(t, ns, "outside", "IPUnavailable"); !strings.Contains(msg, "not in any valid IPPool") {
		t.Errorf("message %q", msg)
	}
	create(t, lbService(ns, "garbage", withAnnotations(v1alpha1.AnnotationIPs, "198.51.100.300")))
	if msg := waitFailure(t, ns, "garbage", "InvalidRequest"); !strings.Contains(msg, "198.51.100.300") {
		t.Errorf("message %q", msg)
	}
	waitIPs(t, ns, "by-spec", "198.51.100.20")

	// Moving a Service to another requested address frees the old one.
	patchSvc(t, ns, "by-annotation", func(s *corev1.Service) { s.Annotations[v1alpha1.AnnotationIPs] = "198.51.100.25" })
	waitIPs(t, ns, "by-annotation", "198.51.100.25")
	create(t, lbService(ns, "reuse", withAnnotations(v1alpha1.AnnotationIPs, "198.51.100.21")))
	waitIPs(t, ns, "reuse", "198.51.100.21")
}

func TestPoolChoice(t *testing.T) {
	ns := newNamespace(t, map[string]string{"team": "blue"})
	other := newNamespace(t, nil)
	poolFor(t, ns, "choice-low", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.32/30"}, Priority: ptr.To[int32](20)})
	poolFor(t, ns, "choice-high", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.36/30"}, Priority: ptr.To[int32](10)})
	poolFor(t, ns, "choice-manual", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.40/30"}, AutoAssign: ptr.To(false)})
	poolFor(t, "", "choice-by-label", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.44/30"},
		AllocateTo: &v1alpha1.AllocateTo{
			NamespaceSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"team": "blue"}}},
			ServiceSelectors:   []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}},
		}, Priority: ptr.To[int32](1)})
	// Pools reach the allocator through their own watch: a Service created before they are
	// loaded takes the best pool it knows, and keeps that address.
	for _, p := range []string{"choice-low", "choice-high", "choice-manual", "choice-by-label"} {
		waitPoolReady(t, p, metav1.ConditionTrue, "Valid")
	}

	create(t, lbService(ns, "prio"))
	waitIPs(t, ns, "prio", "198.51.100.36") // priority 10 beats 20; the label pool needs tier=edge
	create(t, lbService(ns, "named", withAnnotations(v1alpha1.AnnotationPool, "choice-manual")))
	waitIPs(t, ns, "named", "198.51.100.40") // autoAssign off, but named
	create(t, lbService(ns, "metallb-named", withAnnotations("metallb.universe.tf/address-pool", "choice-low")))
	waitIPs(t, ns, "metallb-named", "198.51.100.32")
	edge := lbService(ns, "edge")
	edge.Labels["tier"] = "edge"
	create(t, edge)
	waitIPs(t, ns, "edge", "198.51.100.44") // namespace and service selectors match, priority 1

	// Another namespace is served by none of these pools.
	create(t, lbService(other, "stranger"))
	if msg := waitFailure(t, other, "stranger", "NoEligiblePool"); !strings.Contains(msg, other) {
		t.Errorf("message %q does not name the namespace", msg)
	}
	create(t, lbService(other, "stranger-named", withAnnotations(v1alpha1.AnnotationPool, "choice-high")))
	if msg := waitFailure(t, other, "stranger-named", "NoEligiblePool"); !strings.Contains(msg, "does not allocate to namespace") {
		t.Errorf("message %q", msg)
	}
	create(t, lbService(ns, "no-such-pool", withAnnotations(v1alpha1.AnnotationPool, "nope")))
	waitFailure(t, ns, "no-such-pool", "NoEligiblePool")
}

func TestSharing(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "share", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.48/30"}})
	create(t, lbService(ns, "dns-tcp", withPorts(53), withAnnotations(v1alpha1.AnnotationSharingKey, "dns")))
	ip := waitAnyIP(t, ns, "dns-tcp")
	create(t, lbService(ns, "dns-web", withPorts(443), withAnnotations("metallb.universe.tf/allow-shared-ip", "dns")))
	waitIPs(t, ns, "dns-web", ip) // same key, other port: shared

	// Same key but a colliding port: a new address, never the shared one.
	create(t, lbService(ns, "dns-clash", withPorts(53), withAnnotations(v1alpha1.AnnotationSharingKey, "dns")))
	if got := waitAnyIP(t, ns, "dns-clash"); got == ip {
		t.Fatalf("dns-clash got the shared address %s despite port 53 colliding", got)
	}
	// Asking for the shared address with a colliding port, or without the key: refused.
	create(t, lbService(ns, "clash-specific", withPorts(443), withAnnotations(v1alpha1.AnnotationSharingKey, "dns", v1alpha1.AnnotationIPs, ip)))
	if msg := waitFailure(t, ns, "clash-specific", "IPUnavailable"); !strings.Contains(msg, "TCP/443") {
		t.Errorf("message %q does not name the port", msg)
	}
	create(t, lbService(ns, "no-key", withPorts(8443), withAnnotations(v1alpha1.AnnotationIPs, ip)))
	waitFailure(t, ns, "no-key", "IPUnavailable")
	// externalTrafficPolicy Local: sharers must select the same pods.
	local := lbService(ns, "local", withPorts(8080), withAnnotations(v1alpha1.AnnotationSharingKey, "dns", v1alpha1.AnnotationIPs, ip))
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	create(t, local)
	waitFailure(t, ns, "local", "IPUnavailable")

	// The address stays until its last sharer goes, then the refused Service gets it.
	deleteSvc(t, ns, "local") // it would compete with no-key for the freed address
	// So would clash-specific, once dns-web no longer uses port 443 on it.
	deleteSvc(t, ns, "clash-specific")
	deleteSvc(t, ns, "dns-tcp")
	waitIPs(t, ns, "dns-web", ip)
	deleteSvc(t, ns, "dns-web")
	waitIPs(t, ns, "no-key", ip)
}

func TestDualStack(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "dual", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.52/30", "2001:db8:ff::/64"}})
	poolFor(t, ns, "dual-v4only", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.56/30"}, Priority: ptr.To[int32](0)})

	create(t, lbService(ns, "both", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)))
	waitIPs(t, ns, "both", "198.51.100.52", "2001:db8:ff::") // v4-only pool has priority but lacks IPv6

	create(t, lbService(ns, "v6-first", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol)))
	waitIPs(t, ns, "v6-first", "2001:db8:ff::1", "198.51.100.53")

	create(t, lbService(ns, "v6", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)))
	waitIPs(t, ns, "v6", "2001:db8:ff::2")

	create(t, lbService(ns, "prefer", withFamilies(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol),
		withAnnotations(v1alpha1.AnnotationPool, "dual-v4only")))
	waitIPs(t, ns, "prefer", "198.51.100.56") // PreferDualStack: the primary family alone will do

	create(t, lbService(ns, "require", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol),
		withAnnotations(v1alpha1.AnnotationPool, "dual-v4only")))
	waitFailure(t, ns, "require", "NoEligiblePool")

	create(t, lbService(ns, "pair", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol),
		withAnnotations(v1alpha1.AnnotationIPs, "2001:db8:ff::99, 198.51.100.55")))
	waitIPs(t, ns, "pair", "198.51.100.55", "2001:db8:ff::99")

	kit.Eventually(t, 10*time.Second, "the pool's IPv6 counts", func(context.Context) error {
		p := getPool(t, "dual")
		if p.Status.IPv6 == nil || p.Status.IPv6.Used != 4 || p.Status.IPv6.Total != "18446744073709551616" {
			return fmt.Errorf("IPv6 status %+v", p.Status.IPv6)
		}
		return nil
	})
}

func TestClassFiltering(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "class", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.60/30"}})
	create(t, lbService(ns, "other", withClass("example.com/other-lb")))
	create(t, lbService(ns, "ours", withClass(v1alpha1.LoadBalancerClass)))
	create(t, lbService(ns, "unclassed"))
	waitAnyIP(t, ns, "ours")
	waitAnyIP(t, ns, "unclassed")
	kit.Consistently(t, time.Second, "the Service of another class untouched", func(context.Context) error {
		s := getSvc(t, ns, "other")
		if len(s.Status.LoadBalancer.Ingress) > 0 || len(s.Finalizers) > 0 || len(s.Status.Conditions) > 0 {
			return fmt.Errorf("service of another class was touched: %+v %v", s.Status, s.Finalizers)
		}
		return nil
	})
}

func TestReleasePaths(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "release", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.64/31"}})
	create(t, lbService(ns, "a"))
	create(t, lbService(ns, "b"))
	waitIPs(t, ns, "a", "198.51.100.64")
	waitIPs(t, ns, "b", "198.51.100.65")

	// Delete: the finalizer goes, the address is free again.
	deleteSvc(t, ns, "a")
	waitEvent(t, ns, "a", "IPReleased")
	create(t, lbService(ns, "c"))
	waitIPs(t, ns, "c", "198.51.100.64")

	// Type change away from LoadBalancer: status cleared, finalizer dropped, address freed.
	patchSvc(t, ns, "b", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
	kit.Eventually(t, 10*time.Second, "b to be released", func(context.Context) error {
		s := getSvc(t, ns, "b")
		if len(s.Status.LoadBalancer.Ingress) > 0 || slices.Contains(s.Finalizers, v1alpha1.ServiceFinalizer) {
			return fmt.Errorf("b still holds %v, finalizers %v", ingressIPs(s), s.Finalizers)
		}
		return nil
	})
	create(t, lbService(ns, "d"))
	waitIPs(t, ns, "d", "198.51.100.65")

	// Class change (type away and back with another class, since the class is immutable): ours no more.
	patchSvc(t, ns, "d", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
	kit.Eventually(t, 10*time.Second, "d to lose our finalizer", func(context.Context) error {
		if s := getSvc(t, ns, "d"); slices.Contains(s.Finalizers, v1alpha1.ServiceFinalizer) {
			return fmt.Errorf("d still has our finalizer")
		}
		return nil
	})
	patchSvc(t, ns, "d", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.LoadBalancerClass = ptr.To("example.com/other-lb")
	})
	create(t, lbService(ns, "e"))
	waitIPs(t, ns, "e", "198.51.100.65")
	if s := getSvc(t, ns, "d"); len(s.Status.LoadBalancer.Ingress) > 0 {
		t.Errorf("d (other class) has ingress %v", ingressIPs(s))
	}
}

func TestExhaustionThenRecovery(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "small", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.68-198.51.100.69"}})
	create(t, lbService(ns, "one"))
	create(t, lbService(ns, "two"))
	waitAnyIP(t, ns, "one")
	waitAnyIP(t, ns, "two")
	create(t, lbService(ns, "three"))
	if msg := waitFailure(t, ns, "three", "PoolExhausted"); !strings.Contains(msg, `"small"`) {
		t.Errorf("message %q does not name the pool", msg)
	}
	waitEvent(t, ns, "three", "AllocationFailed")
	kit.Eventually(t, 5*time.Second, "the PoolExhausted failure to be counted", func(context.Context) error {
		if counter("fairlead_allocation_failures_total", "PoolExhausted") < 1 {
			return fmt.Errorf("no PoolExhausted failure counted")
		}
		return nil
	})

	// Growing the pool serves the pending Service without touching it.
	patchPool(t, "small", func(p *v1alpha1.IPPool) { p.Spec.Addresses = []string{"198.51.100.68-198.51.100.70"} })
	waitIPs(t, ns, "three", "198.51.100.70")

	// Exhausted again; a release serves the next one.
	create(t, lbService(ns, "four"))
	waitFailure(t, ns, "four", "PoolExhausted")
	ipOne := waitAnyIP(t, ns, "one")
	deleteSvc(t, ns, "one")
	waitIPs(t, ns, "four", ipOne)
}

func TestInvalidPoolsNeverBreakGoodOnes(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "good", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.72/29"}})

	// The apiserver rejects what CEL can see.
	bad := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "garbage"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"not-an-ip"}}}
	if err := k8s.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "must be a CIDR") {
		t.Fatalf("creating a pool with garbage: err = %v, want a validation error", err)
	}
	// What only Go can see becomes a condition and an Event.
	poolFor(t, ns, "reversed", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.90-198.51.100.80"}})
	p := waitPoolReady(t, "reversed", metav1.ConditionFalse, "Invalid")
	if c := findCond(p.Status.Conditions, v1alpha1.ConditionReady); !strings.Contains(c.Message, "reversed") {
		t.Errorf("message %q", c.Message)
	}
	waitEvent(t, "default", "reversed", "Invalid")
	poolFor(t, ns, "hostbits", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.97/29"}})
	waitPoolReady(t, "hostbits", metav1.ConditionFalse, "Invalid")
	poolFor(t, ns, "overlap", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.76-198.51.100.78"}})
	p = waitPoolReady(t, "overlap", metav1.ConditionFalse, "Overlap")
	if c := findCond(p.Status.Conditions, v1alpha1.ConditionReady); !strings.Contains(c.Message, `"good"`) {
		t.Errorf("message %q does not name the pool it overlaps", c.Message)
	}
	waitPoolReady(t, "good", metav1.ConditionTrue, "Valid")

	create(t, lbService(ns, "svc"))
	waitIPs(t, ns, "svc", "198.51.100.72")

	// A good pool edited into a bad one: its Services keep their addresses.
	patchPool(t, "good", func(p *v1alpha1.IPPool) { p.Spec.Addresses = []string{"198.51.100.79-198.51.100.72"} })
	waitPoolReady(t, "good", metav1.ConditionFalse, "Invalid")
	kit.Consistently(t, time.Second, "svc keeps its address", func(context.Context) error {
		if got := ingressIPs(getSvc(t, ns, "svc")); len(got) != 1 || got[0] != "198.51.100.72" {
			return fmt.Errorf("svc moved to %v after its pool became invalid", got)
		}
		return nil
	})
}

func TestPoolDeletionWaitsForItsServices(t *testing.T) {
	ns := newNamespace(t, nil)
	poolFor(t, ns, "doomed", v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.104/30"}})
	create(t, lbService(ns, "holder"))
	waitIPs(t, ns, "holder", "198.51.100.104")
	kit.Eventually(t, 10*time.Second, "the pool's finalizer", func(context.Context) error {
		if !slices.Contains(getPool(t, "doomed").Finalizers, v1alpha1.PoolFinalizer) {
			return fmt.Errorf("pool has no finalizer yet")
		}
		return nil
	})

	if err := k8s.Delete(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}); err != nil {
		t.Fatal(err)
	}
	p := waitPoolReady(t, "doomed", metav1.ConditionFalse, "Deleting")
	if c := findCond(p.Status.Conditions, v1alpha1.ConditionReady); !strings.Contains(c.Message, ns+"/holder") {
		t.Errorf("message %q does not name the holder", c.Message)
	}
	// The holder keeps its address; nobody new gets one from a pool being deleted.
	create(t, lbService(ns, "late"))
	waitFailure(t, ns, "late", "NoEligiblePool")
	waitIPs(t, ns, "holder", "198.51.100.104")

	deleteSvc(t, ns, "holder")
	kit.Eventually(t, 10*time.Second, "the pool to be gone once its last Service is", func(context.Context) error {
		var p v1alpha1.IPPool
		if err := k8s.Get(ctx, types.NamespacedName{Name: "doomed"}, &p); err == nil {
			return fmt.Errorf("pool still there, finalizers %v", p.Finalizers)
		}
		return nil
	})
}

func patchSvc(t *testing.T, ns, name string, mutate func(*corev1.Service)) {
	t.Helper()
	kit.Eventually(t, 5*time.Second, "an update of Service "+ns+"/"+name, func(context.Context) error {
		s := getSvc(t, ns, name)
		mutate(s)
		return k8s.Update(ctx, s)
	})
}

func patchPool(t *testing.T, name string, mutate func(*v1alpha1.IPPool)) {
	t.Helper()
	kit.Eventually(t, 5*time.Second, "an update of pool "+name, func(context.Context) error {
		p := getPool(t, name)
		mutate(p)
		return k8s.Update(ctx, p)
	})
}

func findCond(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// gauge reads a metric from controller-runtime's registry, which fairlead-controller serves.
func gauge(name string, labelValues ...string) float64 {
	return metricValue(name, labelValues, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

func counter(name string, labelValues ...string) float64 {
	return metricValue(name, labelValues, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}

func metricValue(name string, labelValues []string, value func(*dto.Metric) float64) float64 {
	fams, _ := metrics.Registry.Gather()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.Metric {
			for _, want := range labelValues {
				found := false
				for _, l := range m.Label {
					found = found || l.GetValue() == want
				}
				if !found {
					continue metric
				}
			}
			return value(m)
		}
	}
	return -1
}
