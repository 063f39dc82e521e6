package snapshot_test

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/bgp"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/l2/plan"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// Layer 2 and BGP read the same snapshot, so for every address the nodes layer 2 may elect
// are exactly the nodes that advertise it over BGP: same Services, same pools, same endpoint
// rule (ready, else terminating and serving, per family), same node eligibility. The inputs
// mix ready, terminating and not-ready endpoints in both families, under both
// externalTrafficPolicies and both --default-class settings.
func TestL2AndBGPAgreeOnEligibleNodes(t *testing.T) {
	nodes := []*corev1.Node{
		node("n1", true, nil), node("n2", true, nil), node("n3", true, nil),
		node("n4", false, nil), // NotReady
		node("n5", true, map[string]string{election.ExcludeLabel: ""}),
	}
	pools := []*v1alpha1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24", "2001:db8:ff::/64"}}}}
	// eps maps nodes to the state of their endpoint: ready, terminating (still serving),
	// unready, gone (terminating, no longer serving).
	type eps map[string]string
	cases := []struct {
		name   string
		local  bool
		class  *string
		v4, v6 eps
		// want are the eligible nodes of the IPv4 and IPv6 address with --default-class;
		// they pin the rule, the comparison pins the agreement.
		want4, want6 []string
	}{
		{"cluster", false, nil, eps{"n1": "ready"}, nil, []string{"n1", "n2", "n3"}, []string{"n1", "n2", "n3"}},
		{"local ready", true, nil, eps{"n1": "ready", "n2": "terminating"}, eps{"n2": "ready", "n4": "ready"}, []string{"n1"}, []string{"n2"}},
		{"local v6 terminating only", true, nil, eps{"n1": "ready"}, eps{"n2": "terminating", "n3": "terminating", "n1": "gone"}, []string{"n1"}, []string{"n2", "n3"}},
		{"local none ready", true, nil, eps{"n1": "unready", "n2": "terminating", "n3": "gone"}, eps{"n3": "unready"}, []string{"n2"}, nil},
		{"local excluded and not ready", true, nil, eps{"n4": "ready", "n5": "ready"}, eps{"n5": "terminating"}, nil, nil},
		{"local no endpoints", true, nil, nil, nil, nil, nil},
		{"fairlead class", true, ptr.To(v1alpha1.LoadBalancerClass), eps{"n3": "ready"}, eps{"n3": "terminating"}, []string{"n3"}, []string{"n3"}},
		{"other class", false, ptr.To("example.com/lb"), eps{"n1": "ready"}, nil, nil, nil},
	}
	var in snapshot.Input
	in.Nodes, in.Pools = nodes, pools
	in.L2Advertisements = []*v1alpha1.L2Advertisement{{ObjectMeta: metav1.ObjectMeta{Name: "l2"}}}
	in.BGPAdvertisements = []*v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}}}
	in.BGPPeers = []*v1alpha1.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "router"},
		Spec: v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64500, LocalASN: 64512}}}
	wants := map[netip.Addr][]string{}
	for i, tc := range cases {
		a4, a6 := fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("2001:db8:ff::%d", i+1)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("svc%d", i)},
			Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: tc.class},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: a4}, {IP: a6}}}}}
		if tc.local {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		in.Services = append(in.Services, svc)
		in.EndpointSlices = append(in.EndpointSlices, slice(svc.Name, discoveryv1.AddressTypeIPv4, tc.v4), slice(svc.Name, discoveryv1.AddressTypeIPv6, tc.v6))
		wants[netip.MustParseAddr(a4)], wants[netip.MustParseAddr(a6)] = tc.want4, tc.want6
	}

	for _, defaultClass := range []bool{true, false} {
		in.DefaultClass = defaultClass
		snap := snapshot.Build(in)
		l2 := map[netip.Addr][]string{}
		as, problems := plan.Compute(plan.Input{Snapshot: snap})
		if len(problems) > 0 {
			t.Fatalf("problems: %v", problems)
		}
		for _, a := range as {
			l2[a.IP] = a.Candidates
		}
		bgpNodes := map[netip.Addr][]string{}
		for _, n := range snap.Nodes {
			sessions, problems := bgp.Desired(bgp.Input{
				Node:  bgp.Node{Node: n, IPv4: netip.MustParseAddr("192.0.2.10"), IPv6: netip.MustParseAddr("2001:db8::10")},
				Peers: snap.BGPPeers, Advertisements: snap.BGPAdvertisements, Pools: pools, Services: bgp.ServicesOf(snap),
			})
			if len(problems) > 0 {
				t.Fatalf("%s: problems %v", n.Name, problems)
			}
			for sa := range sessions["router"].Carries {
				bgpNodes[sa.Addr] = append(bgpNodes[sa.Addr], n.Name)
			}
		}
		for a, want := range wants {
			if svc := classOf(in.Services, a); svc != nil && svc.Spec.LoadBalancerClass == nil && !defaultClass {
				want = nil // not ours: neither announces it
			}
			got2, gotBGP := l2[a], bgpNodes[a]
			slices.Sort(gotBGP)
			if !slices.Equal(got2, gotBGP) {
				t.Errorf("--default-class=%v %s: layer 2 may elect %v, BGP advertises from %v", defaultClass, a, got2, gotBGP)
			}
			if !slices.Equal(got2, want) {
				t.Errorf("--default-class=%v %s: eligible %v, want %v", defaultClass, a, got2, want)
			}
		}
		if !defaultClass && len(l2) != 2 {
			t.Errorf("--default-class=false: layer 2 plans %v, want only the Service of Fairlead's class", slices.Collect(maps.Keys(l2)))
		}
	}
}

func classOf(svcs []*corev1.Service, a netip.Addr) *corev1.Service {
	for _, s := range svcs {
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if ing.IP == a.String() {
				return s
			}
		}
	}
	return nil
}

func node(name string, ready bool, labels map[string]string) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

func slice(svc string, family discoveryv1.AddressType, eps map[string]string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-" + string(family),
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: family}
	for _, n := range slices.Sorted(maps.Keys(eps)) {
		var c discoveryv1.EndpointConditions
		switch eps[n] {
		case "ready":
			c = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
		case "terminating":
			c = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
		case "unready":
			c = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(false)}
		case "gone":
			c = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(true)}
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.0.1"}, NodeName: ptr.To(n), Conditions: c})
	}
	return s
}
