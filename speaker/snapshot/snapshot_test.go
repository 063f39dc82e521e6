package snapshot

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

func service(name string, class *string, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class}}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func ippool(name string, created int, addrs ...string) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name,
		CreationTimestamp: metav1.NewTime(time.Unix(int64(1_700_000_000+created), 0))},
		Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
}

// ep is an endpoint on node with the conditions given as "r" (ready), "s" (serving), "t"
// (terminating) set true, "R", "S", "T" set false, absent letters unset (nil).
func ep(node, conds string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}}
	if node != "" {
		e.NodeName = ptr.To(node)
	}
	for _, c := range conds {
		v := ptr.To(c >= 'a')
		switch c {
		case 'r', 'R':
			e.Conditions.Ready = v
		case 's', 'S':
			e.Conditions.Serving = v
		case 't', 'T':
			e.Conditions.Terminating = v
		}
	}
	return e
}

func slice(svc string, family Family, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("%s-%s-%d", svc, family, len(eps)),
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: family, Endpoints: eps}
}

func keys(s *Snapshot) []string {
	var out []string
	for _, svc := range s.Services {
		out = append(out, svc.Key)
	}
	return out
}

// Ownership: the class decides, and a classless Service is ours only with --default-class.
func TestOwnership(t *testing.T) {
	other := "example.com/lb"
	mine := v1alpha1.LoadBalancerClass
	nlb := v1alpha1.AWSNLBClass
	clusterIP := service("clusterip", nil, "198.51.100.9")
	clusterIP.Spec.Type = corev1.ServiceTypeClusterIP
	in := Input{Services: []*corev1.Service{
		service("classless", nil, "198.51.100.1"),
		service("fairlead", &mine, "198.51.100.2"),
		service("other", &other, "198.51.100.3"),
		service("nlb", &nlb, "198.51.100.4"),
		clusterIP,
		service("pending", &mine),
	}}
	for _, tc := range []struct {
		defaultClass bool
		want         []string
	}{
		{true, []string{"ns/classless", "ns/fairlead"}},
		{false, []string{"ns/fairlead"}},
	} {
		in.DefaultClass = tc.defaultClass
		s := Build(in)
		if got := keys(s); !slices.Equal(got, tc.want) {
			t.Errorf("--default-class=%v: ours %v, want %v", tc.defaultClass, got, tc.want)
		}
		if s.Service("ns/classless") != nil != tc.defaultClass {
			t.Errorf("--default-class=%v: Service(ns/classless) = %v", tc.defaultClass, s.Service("ns/classless"))
		}
	}
}

// Addresses: announced ones only (not ipMode Proxy, not empty), unmapped, without duplicates,
// in status order; one that does not parse is a Problem and the Service keeps the others.
func TestAddresses(t *testing.T) {
	proxy := corev1.LoadBalancerIPModeProxy
	s := service("web", nil)
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
		{IP: "2001:db8:ff::1"}, {Hostname: "lb.example.com"}, {IP: "198.51.100.5", IPMode: &proxy},
		{IP: "::ffff:198.51.100.6"}, {IP: "198.51.100.6"}, {IP: "not-an-ip"},
	}
	only := service("proxied", nil)
	only.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.7", IPMode: &proxy}}
	snap := Build(Input{DefaultClass: true, Services: []*corev1.Service{s, only}})
	got := snap.Service("ns/web")
	if got == nil {
		t.Fatal("ns/web missing")
	}
	var ips []string
	for _, a := range got.Addrs {
		ips = append(ips, a.IP.String())
	}
	if want := []string{"2001:db8:ff::1", "198.51.100.6"}; !slices.Equal(ips, want) {
		t.Errorf("addresses %v, want %v", ips, want)
	}
	if snap.Service("ns/proxied") != nil {
		t.Error("a Service with only Proxy-mode addresses is listed; nothing of it is announced")
	}
	if len(snap.Problems) != 1 || snap.Problems[0].String() != "Service ns/web" || !strings.Contains(snap.Problems[0].Err.Error(), "not-an-ip") {
		t.Errorf("problems %v, want one naming Service ns/web and the bad address", snap.Problems)
	}
}

// The pool of an address: the oldest pool whose range holds it, else the pool the controller
// recorded for it (by position when several are recorded), never for a special address; an
// invalid pool holds nothing and is a Problem.
func TestPoolOfAddress(t *testing.T) {
	pools := []*v1alpha1.IPPool{
		ippool("young", 20, "198.51.100.0/25"),
		ippool("old", 10, "198.51.100.0/24", "2001:db8:ff::/64"),
		ippool("same-second-b", 30, "203.0.113.0/24"),
		ippool("same-second-a", 30, "203.0.113.128/25"),
		ippool("broken", 5, "198.51.100.300/32"),
	}
	recorded := service("recorded", nil, "192.0.2.200", "2001:db8:ee::1", "127.0.0.1")
	recorded.Annotations = map[string]string{v1alpha1.AnnotationAllocatedFromPool: "gone,gone6,loop"}
	single := service("single", nil, "192.0.2.201")
	single.Annotations = map[string]string{v1alpha1.MetalLBAnnotationAllocatedFromPool: "legacy"}
	s := Build(Input{DefaultClass: true, Pools: pools, Services: []*corev1.Service{
		service("in", nil, "198.51.100.1", "2001:db8:ff::1", "203.0.113.200", "192.0.2.1"), recorded, single,
	}})
	want := map[string]string{
		"198.51.100.1":   "old", // older than "young", which overlaps it
		"2001:db8:ff::1": "old",
		"203.0.113.200":  "same-second-a", // same creation second: by name
		"192.0.2.1":      "",              // no pool, nothing recorded
		"192.0.2.200":    "gone",          // recorded, by position
		"2001:db8:ee::1": "gone6",
		"127.0.0.1":      "", // special: never, whatever is recorded
		"192.0.2.201":    "legacy",
	}
	got := map[string]string{}
	for _, svc := range s.Services {
		for _, a := range svc.Addrs {
			got[a.IP.String()] = a.Pool
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("pools %v\nwant %v", got, want)
	}
	if len(s.Problems) != 1 || s.Problems[0].String() != "IPPool broken" {
		t.Errorf("problems %v, want IPPool broken", s.Problems)
	}
	if s.Pool("broken") != nil || s.PoolObjects["broken"] == nil {
		t.Error("an invalid pool must be known by name but hold no addresses")
	}
}

// The one endpoint rule, per Service and family: ready nodes; when none is ready, the nodes
// of endpoints that are terminating and still serving; never endpoints without a node, of
// other Services, or not ready and not terminating.
func TestEndpointRule(t *testing.T) {
	cases := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want4  []string
		want6  []string
	}{
		{"ready, nil means ready",
			[]*discoveryv1.EndpointSlice{slice("svc", IPv4, ep("n1", "r"), ep("n2", ""), ep("n3", "R"), ep("", "r"))},
			[]string{"n1", "n2"}, nil},
		{"ready wins over terminating",
			[]*discoveryv1.EndpointSlice{slice("svc", IPv4, ep("n1", "r"), ep("n2", "Rst"))},
			[]string{"n1"}, nil},
		{"no ready: terminating and serving",
			[]*discoveryv1.EndpointSlice{slice("svc", IPv4, ep("n1", "RSt"), ep("n2", "Rst"), ep("n3", "Rs"), ep("n4", "RsT"))},
			[]string{"n2"}, nil},
		{"serving defaults to ready: not ready, terminating, serving unset is not serving",
			[]*discoveryv1.EndpointSlice{slice("svc", IPv4, ep("n1", "Rt"))},
			nil, nil},
		{"slices of one Service merge",
			[]*discoveryv1.EndpointSlice{slice("svc", IPv4, ep("n1", "r")), slice("svc", IPv4, ep("n2", "r"), ep("n3", "r"))},
			[]string{"n1", "n2", "n3"}, nil},
		{"per family: the fallback of one family ignores the other",
			[]*discoveryv1.EndpointSlice{slice("svc", IPv4, ep("n1", "r"), ep("n2", "Rst")), slice("svc", IPv6, ep("n2", "Rst"), ep("n3", "Rst"))},
			[]string{"n1"}, []string{"n2", "n3"}},
		{"other Services and FQDN slices do not count",
			[]*discoveryv1.EndpointSlice{slice("other", IPv4, ep("n1", "r")), slice("svc", discoveryv1.AddressTypeFQDN, ep("n2", "r"))},
			nil, nil},
	}
	for _, tc := range cases {
		s := Build(Input{DefaultClass: true, Services: []*corev1.Service{service("svc", nil, "198.51.100.1")}, EndpointSlices: tc.slices})
		svc := s.Service("ns/svc")
		for _, f := range []struct {
			fam  Family
			want []string
		}{{IPv4, tc.want4}, {IPv6, tc.want6}} {
			got := slices.Sorted(maps.Keys(svc.EndpointNodes(f.fam)))
			if !slices.Equal(got, f.want) {
				t.Errorf("%s: %s endpoint nodes %v, want %v", tc.name, f.fam, got, f.want)
			}
			if e := svc.Election(f.fam); len(e.EndpointNodes) != len(f.want) {
				t.Errorf("%s: Election(%s) carries %v", tc.name, f.fam, e.EndpointNodes)
			}
		}
	}
}

func TestNodesAndLocalOnly(t *testing.T) {
	node := func(name string, st corev1.ConditionStatus) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"rack": name}}}
		if st != "" {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
		}
		return n
	}
	local := service("local", nil, "198.51.100.1")
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	unknown := func(name, reason string) *corev1.Node {
		n := node(name, corev1.ConditionUnknown)
		n.Status.Conditions[0].Reason = reason
		return n
	}
	// d: kube-controller-manager lost its kubelet (as after every long apiserver outage);
	// e: its kubelet never reported.
	s := Build(Input{DefaultClass: true, Services: []*corev1.Service{local},
		Nodes: []*corev1.Node{node("c", corev1.ConditionTrue), node("a", corev1.ConditionFalse), node("b", ""),
			unknown("d", "NodeStatusUnknown"), unknown("e", "NodeStatusNeverUpdated")}})
	got := fmt.Sprint(s.Nodes)
	if want := "[{a map[rack:a] false} {b map[rack:b] false} {c map[rack:c] true} {d map[rack:d] true} {e map[rack:e] false}]"; got != want {
		t.Errorf("nodes %s, want %s", got, want)
	}
	if s.NodeObjects["c"] == nil || !s.Service("ns/local").LocalOnly || !s.Service("ns/local").Election(IPv4).LocalOnly {
		t.Error("node objects or LocalOnly lost")
	}
}

// Invalid L2Advertisements are left out whole and reported; the others are compiled, sorted.
func TestL2AdvertisementsAndBGPObjects(t *testing.T) {
	bad := &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: v1alpha1.L2AdvertisementSpec{
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"bad key!": "x"}}}}}
	s := Build(Input{
		L2Advertisements: []*v1alpha1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "z"}}, bad, {ObjectMeta: metav1.ObjectMeta{Name: "a"}}},
		BGPPeers:         []*v1alpha1.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "p2"}}, {ObjectMeta: metav1.ObjectMeta{Name: "p1"}}},
	})
	var names []string
	for _, a := range s.L2Advertisements {
		names = append(names, a.Object.Name)
	}
	if !slices.Equal(names, []string{"a", "z"}) {
		t.Errorf("advertisements %v, want [a z]", names)
	}
	if len(s.Problems) != 1 || s.Problems[0].String() != "L2Advertisement bad" {
		t.Errorf("problems %v", s.Problems)
	}
	if s.BGPPeers[0].Name != "p1" || s.BGPPeers[1].Name != "p2" {
		t.Errorf("peers not sorted: %v", s.BGPPeers)
	}
	if p := s.Problems[0]; !strings.HasPrefix(p.Error(), "L2Advertisement bad: nodeSelectors[0]") {
		t.Errorf("Error() = %q", p.Error())
	}
}

func TestFamilyOf(t *testing.T) {
	for a, want := range map[string]Family{"198.51.100.1": IPv4, "::ffff:198.51.100.1": IPv4, "2001:db8::1": IPv6} {
		if got := FamilyOf(netip.MustParseAddr(a)); got != want {
			t.Errorf("FamilyOf(%s) = %s, want %s", a, got, want)
		}
	}
}
