package plan

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

func node(name string, ready bool, labels map[string]string) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}},
	}
}

func service(name string, local bool, ips ...string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func slice(svc string, family discoveryv1.AddressType, eps map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: svc + "-" + string(family), Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: family,
	}
	for n, ready := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{NodeName: ptr.To(n), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}})
	}
	return s
}

func ippool(name string, labels map[string]string, addrs ...string) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
}

func ad(name string, spec v1alpha1.L2AdvertisementSpec) *v1alpha1.L2Advertisement {
	return &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func threeNodes() []*corev1.Node {
	return []*corev1.Node{node("node1", true, nil), node("node2", true, nil), node("node3", true, nil)}
}

func manyIPs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("198.51.100.%d", i+1))
	}
	return out
}

// objects are a plan's inputs as the API holds them: compute builds the snapshot from them, as
// the speaker does, and plans over it.
type objects struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Nodes          []*corev1.Node
	Pools          []*v1alpha1.IPPool
	Advertisements []*v1alpha1.L2Advertisement
	Alive          func(string) bool
	DefaultClass   bool
}

func compute(in objects) ([]Announcement, []Problem) {
	snap := snapshot.Build(snapshot.Input{Services: in.Services, EndpointSlices: in.EndpointSlices, Nodes: in.Nodes,
		Pools: in.Pools, L2Advertisements: in.Advertisements, DefaultClass: in.DefaultClass})
	return Compute(Input{Snapshot: snap, Alive: in.Alive})
}

func owners(t *testing.T, in objects) map[string]string {
	t.Helper()
	as, problems := compute(in)
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	out := map[string]string{}
	for _, a := range as {
		out[a.IP.String()] = a.Owner
	}
	return out
}

func TestOwnerIsTheElectionWinner(t *testing.T) {
	in := objects{
		Services:       []*corev1.Service{service("web", false, "198.51.100.7", "2001:db8:ff::7")},
		Nodes:          threeNodes(),
		Pools:          []*v1alpha1.IPPool{ippool("lan", nil, "198.51.100.0/24", "2001:db8:ff::/64")},
		Advertisements: []*v1alpha1.L2Advertisement{ad("all", v1alpha1.L2AdvertisementSpec{})},
		DefaultClass:   true,
	}
	as, problems := compute(in)
	if len(problems) != 0 || len(as) != 2 {
		t.Fatalf("Compute = %+v, %v", as, problems)
	}
	for _, a := range as {
		want, _ := election.Owner(a.IP.String(), []string{"node1", "node2", "node3"})
		if a.Owner != want || a.Pool != "lan" || !slices.Equal(a.Services, []string{"default/web"}) || a.Interfaces != nil {
			t.Errorf("%+v, want owner %s", a, want)
		}
	}
}

func TestWhichAddressesAreAnnounced(t *testing.T) {
	other := "example.com/other"
	svcs := []*corev1.Service{
		service("a", false, "198.51.100.1"),
		service("b", false, "203.0.113.1"),
		service("unknown-pool", false, "192.0.2.1"),
	}
	unclassed := service("unclassed", false, "198.51.100.2")
	otherClass := service("other", false, "198.51.100.3")
	otherClass.Spec.LoadBalancerClass = &other
	ours := service("ours", false, "198.51.100.4")
	ours.Spec.LoadBalancerClass = ptr.To(v1alpha1.LoadBalancerClass)
	// A load balancer in front of the cluster answers an ipMode Proxy address: not announced.
	fronted := service("fronted", false, "198.51.100.5")
	fronted.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(corev1.LoadBalancerIPModeProxy)
	vip := service("vip", false, "198.51.100.6")
	vip.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(corev1.LoadBalancerIPModeVIP)
	svcs = append(svcs, unclassed, otherClass, ours, fronted, vip)
	pools := []*v1alpha1.IPPool{ippool("blue", nil, "198.51.100.0/24"), ippool("green", map[string]string{"l2": "yes"}, "203.0.113.0/24")}
	for _, tc := range []struct {
		name         string
		ads          []*v1alpha1.L2Advertisement
		defaultClass bool
		want         []string
	}{
		{"no advertisement", nil, true, nil},
		{"every pool", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{})}, true, []string{"198.51.100.1", "198.51.100.2", "198.51.100.4", "198.51.100.6", "203.0.113.1"}},
		{"pool by name", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{IPPools: []string{"blue"}})}, true, []string{"198.51.100.1", "198.51.100.2", "198.51.100.4", "198.51.100.6"}},
		{"pool by selector", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"l2": "yes"}}}})}, true, []string{"203.0.113.1"}},
		{"unclassed Services not ours", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{IPPools: []string{"blue"}})}, false, []string{"198.51.100.4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := owners(t, objects{Services: svcs, Nodes: threeNodes(), Pools: pools, Advertisements: tc.ads, DefaultClass: tc.defaultClass})
			var ips []string
			for ip, owner := range got {
				if owner == "" {
					t.Errorf("%s has no owner", ip)
				}
				ips = append(ips, ip)
			}
			slices.Sort(ips)
			if !slices.Equal(ips, tc.want) {
				t.Errorf("announced %v, want %v", ips, tc.want)
			}
		})
	}
}

func TestEligibility(t *testing.T) {
	ips := manyIPs(60)
	pools := []*v1alpha1.IPPool{ippool("lan", nil, "198.51.100.0/24", "2001:db8:ff::/64")}
	all := []*v1alpha1.L2Advertisement{ad("all", v1alpha1.L2AdvertisementSpec{})}
	check := func(t *testing.T, in objects, allowed ...string) {
		t.Helper()
		got := owners(t, in)
		seen := map[string]bool{}
		for ip, o := range got {
			if !slices.Contains(allowed, o) {
				t.Fatalf("%s owned by %q, want one of %v", ip, o, allowed)
			}
			seen[o] = true
		}
		if len(seen) != len(allowed) {
			t.Errorf("owners %v, want all of %v", seen, allowed)
		}
	}
	t.Run("excluded and not-ready nodes never own", func(t *testing.T) {
		nodes := threeNodes()
		nodes[0].Labels = map[string]string{election.ExcludeLabel: ""}
		nodes[1] = node("node2", false, nil)
		check(t, objects{Services: []*corev1.Service{service("s", false, ips...)}, Nodes: nodes, Pools: pools, Advertisements: all, DefaultClass: true}, "node3")
	})
	t.Run("dead speakers never own", func(t *testing.T) {
		check(t, objects{Services: []*corev1.Service{service("s", false, ips...)}, Nodes: threeNodes(), Pools: pools, Advertisements: all,
			DefaultClass: true, Alive: func(n string) bool { return n != "node2" }}, "node1", "node3")
	})
	t.Run("node selector", func(t *testing.T) {
		nodes := threeNodes()
		nodes[2].Labels = map[string]string{"edge": "true"}
		nodes[0].Labels = map[string]string{"edge": "true"}
		sel := []*v1alpha1.L2Advertisement{ad("edge", v1alpha1.L2AdvertisementSpec{NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"edge": "true"}}}})}
		check(t, objects{Services: []*corev1.Service{service("s", false, ips...)}, Nodes: nodes, Pools: pools, Advertisements: sel, DefaultClass: true}, "node1", "node3")
	})
	t.Run("externalTrafficPolicy Local follows ready endpoints of the family", func(t *testing.T) {
		in := objects{
			Services: []*corev1.Service{service("s", true, ips...)},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("s", discoveryv1.AddressTypeIPv4, map[string]bool{"node2": true, "node3": false}),
				slice("s", discoveryv1.AddressTypeIPv6, map[string]bool{"node1": true}),
			},
			Nodes: threeNodes(), Pools: pools, Advertisements: all, DefaultClass: true,
		}
		check(t, in, "node2")
		in.Services = []*corev1.Service{service("s", true, "2001:db8:ff::1", "2001:db8:ff::2")}
		check(t, in, "node1")
		in.EndpointSlices = nil
		if got := owners(t, in); got["2001:db8:ff::1"] != "" {
			t.Errorf("owner without endpoints: %v", got)
		}
	})
	t.Run("a shared address goes to a node eligible for every Service", func(t *testing.T) {
		in := objects{
			Services: []*corev1.Service{service("a", true, ips...), service("b", true, ips...)},
			EndpointSlices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, map[string]bool{"node1": true, "node2": true}),
				slice("b", discoveryv1.AddressTypeIPv4, map[string]bool{"node2": true, "node3": true}),
			},
			Nodes: threeNodes(), Pools: pools, Advertisements: all, DefaultClass: true,
		}
		check(t, in, "node2")
	})
}

func TestInterfaces(t *testing.T) {
	nodes := threeNodes()
	for _, n := range nodes {
		n.Labels = map[string]string{"rack": "a"}
	}
	in := objects{
		Services: []*corev1.Service{service("s", false, "198.51.100.1")},
		Nodes:    nodes,
		Pools:    []*v1alpha1.IPPool{ippool("lan", nil, "198.51.100.0/24")},
		Advertisements: []*v1alpha1.L2Advertisement{
			ad("a", v1alpha1.L2AdvertisementSpec{Interfaces: []string{"eth1", "eth0"}}),
			ad("b", v1alpha1.L2AdvertisementSpec{Interfaces: []string{"eth0", "bond0"}, NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "a"}}}}),
			ad("c", v1alpha1.L2AdvertisementSpec{NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "b"}}}}),
		},
		DefaultClass: true,
	}
	as, _ := compute(in)
	if len(as) != 1 || !slices.Equal(as[0].Interfaces, []string{"bond0", "eth0", "eth1"}) {
		t.Fatalf("Compute = %+v", as)
	}
	// An advertisement without interfaces selecting the owner allows them all.
	in.Advertisements[2].Spec.NodeSelectors = nil
	as, _ = compute(in)
	if len(as) != 1 || as[0].Interfaces != nil {
		t.Fatalf("Compute = %+v", as)
	}
}

// Bad objects are reported and skipped; they never stop the others being announced.
func TestProblemsAreIsolated(t *testing.T) {
	bad := service("bad", false, "not-an-ip", "198.51.100.9")
	in := objects{
		Services: []*corev1.Service{bad, service("good", false, "198.51.100.1")},
		Nodes:    threeNodes(),
		Pools:    []*v1alpha1.IPPool{ippool("broken", nil, "203.0.113.9-203.0.113.1"), ippool("lan", nil, "198.51.100.0/24")},
		Advertisements: []*v1alpha1.L2Advertisement{
			ad("bad-selector", v1alpha1.L2AdvertisementSpec{NodeSelectors: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bogus"}}}}}),
			ad("all", v1alpha1.L2AdvertisementSpec{}),
		},
		DefaultClass: true,
	}
	as, problems := compute(in)
	if len(problems) != 3 {
		t.Errorf("problems = %v, want the bad IP, the reversed range and the bad selector", problems)
	}
	if len(as) != 2 || as[0].Owner == "" || as[1].Owner == "" {
		t.Errorf("Compute = %+v, want both valid addresses owned", as)
	}
}

// An advertisement the controller would mark Accepted=False is ignored whole: the pool only it
// covers is not announced, and it adds no interfaces to a pool a valid advertisement covers.
func TestInvalidAdvertisementIsIgnoredWhole(t *testing.T) {
	in := objects{
		Services: []*corev1.Service{service("a", false, "198.51.100.1"), service("b", false, "203.0.113.1")},
		Nodes:    threeNodes(),
		Pools:    []*v1alpha1.IPPool{ippool("lan", nil, "198.51.100.0/24"), ippool("dmz", nil, "203.0.113.0/24")},
		Advertisements: []*v1alpha1.L2Advertisement{
			ad("valid", v1alpha1.L2AdvertisementSpec{IPPools: []string{"lan"}, Interfaces: []string{"eth0"}}),
			// A label key the apiserver stores but no selector can hold.
			ad("bad-key", v1alpha1.L2AdvertisementSpec{IPPools: []string{"lan", "dmz"}, Interfaces: []string{"eth1"},
				NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}}}),
			ad("bad-interface", v1alpha1.L2AdvertisementSpec{IPPools: []string{"dmz"}, Interfaces: []string{"eth0:1"}}),
		},
		DefaultClass: true,
	}
	as, problems := compute(in)
	if len(problems) != 2 {
		t.Errorf("problems = %v, want the two invalid advertisements", problems)
	}
	if len(as) != 1 || as[0].IP.String() != "198.51.100.1" || as[0].Owner == "" || fmt.Sprint(as[0].Interfaces) != "[eth0]" {
		t.Errorf("Compute = %+v, want only 198.51.100.1, owned, on eth0", as)
	}
}

// A Service keeps an address its pool no longer covers (shrunk, deleted): the controller
// records the pool on the Service, and the address stays announced as that pool's.
func TestAddressesOutsideTheirPoolStayAnnounced(t *testing.T) {
	recordedBy := func(s *corev1.Service, annotation, pool string) *corev1.Service {
		s.Annotations = map[string]string{annotation: pool}
		return s
	}
	recorded := func(s *corev1.Service, pool string) *corev1.Service {
		return recordedBy(s, v1alpha1.AnnotationAllocatedFromPool, pool)
	}
	svcs := []*corev1.Service{
		service("inside", false, "198.51.100.1"),
		recorded(service("shrunk", false, "198.51.100.200"), "blue"),
		recorded(service("gone", false, "192.0.2.9"), "deleted"),
		recorded(service("dual", false, "198.51.100.201", "2001:db8::9"), "blue,red"),
		service("unrecorded", false, "198.51.100.202"),
		recorded(service("loopback", false, "127.0.0.1"), "blue"),
		// Taken over from MetalLB, not yet rewritten by the controller: MetalLB's record.
		recordedBy(service("metallb", false, "198.51.100.203"), v1alpha1.MetalLBAnnotationAllocatedFromPool, "blue"),
	}
	pools := []*v1alpha1.IPPool{ippool("blue", map[string]string{"l2": "yes"}, "198.51.100.0/25")}
	for _, tc := range []struct {
		name string
		ads  []*v1alpha1.L2Advertisement
		want []string
	}{
		{"every pool", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{})},
			[]string{"192.0.2.9", "198.51.100.1", "198.51.100.200", "198.51.100.201", "198.51.100.203", "2001:db8::9"}},
		{"the shrunk pool by name", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{IPPools: []string{"blue"}})},
			[]string{"198.51.100.1", "198.51.100.200", "198.51.100.201", "198.51.100.203"}},
		{"the shrunk pool by selector", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"l2": "yes"}}}})},
			[]string{"198.51.100.1", "198.51.100.200", "198.51.100.201", "198.51.100.203"}},
		{"the deleted pool by name", []*v1alpha1.L2Advertisement{ad("x", v1alpha1.L2AdvertisementSpec{IPPools: []string{"deleted"}})},
			[]string{"192.0.2.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := owners(t, objects{Services: svcs, Nodes: threeNodes(), Pools: pools, Advertisements: tc.ads, DefaultClass: true})
			ips := slices.Sorted(maps.Keys(got))
			if !slices.Equal(ips, tc.want) {
				t.Errorf("announced %v, want %v", ips, tc.want)
			}
		})
	}
}
