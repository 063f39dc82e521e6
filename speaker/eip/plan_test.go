package eip_test

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/eip"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

func node(name, providerID, ip string, ready bool, labels map[string]string) *corev1.Node {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{ProviderID: providerID},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
		},
	}
}

func svc(name, pool, ip string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: map[string]string{v1alpha1.AnnotationPool: pool}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
		Status:     corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip}}}},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func TestPlan(t *testing.T) {
	pools := []*v1alpha1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "eips"}, Spec: v1alpha1.IPPoolSpec{AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.0/24"}}},
	}
	nodes := []*corev1.Node{
		node("a", "aws:///us-east-1a/i-0a", "10.0.0.1", true, nil),
		node("b", "aws:///us-east-1a/i-0b", "10.0.0.2", true, nil),
		node("c", "aws:///us-east-1a/i-0c", "10.0.0.3", false, nil),                                                    // NotReady
		node("d", "aws:///us-east-1a/i-0d", "10.0.0.4", true, map[string]string{corev1.LabelNodeExcludeBalancers: ""}), // excluded
		node("e", "", "10.0.0.5", true, nil),                                                                           // no instance yet
		node("f", "aws:///us-east-1a/i-0f", "fd00::6", true, nil),                                                      // no IPv4 address
	}
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	slices := []*discoveryv1.EndpointSlice{{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "local-x", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.9"}, NodeName: ptr.To("b")}},
	}}
	objs := snapshot.Input{
		Nodes: nodes, Pools: pools, EndpointSlices: slices, DefaultClass: true,
		Services: []*corev1.Service{
			svc("web", "eips", "198.51.100.7"),
			svc("local", "eips", "198.51.100.8", local),
			svc("lan", "lan", "192.0.2.1"), // a local pool: layer 2's business
			svc("other", "eips", "198.51.100.9", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("x") }), // not ours
			svc("pending", "eips", ""),
		},
	}
	in := eip.Input{Snapshot: snapshot.Build(objs)}
	got := eip.Plan(in)
	webOwner, _ := election.Owner("198.51.100.7", []string{"a", "b"})
	want := []eip.Assignment{
		{IP: netip.MustParseAddr("198.51.100.7"), Owner: webOwner, Service: "ns/web"},
		{IP: netip.MustParseAddr("198.51.100.8"), Owner: "b", Service: "ns/local"},
	}
	if len(got) != len(want) {
		t.Fatalf("Plan = %+v, want %+v", got, want)
	}
	for i := range want {
		got[i].Ref = corev1.ObjectReference{}
		if got[i] != want[i] {
			t.Errorf("Plan[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}

	// The owner's speaker is dead (its Node still Ready): the other node takes the address;
	// the Local Service's only endpoint node is dead, so it has no owner.
	in.Alive = func(n string) bool { return n != webOwner && n != "b" }
	for _, a := range eip.Plan(in) {
		switch {
		case a.Service == "ns/web" && (a.Owner == webOwner || a.Owner == ""):
			t.Errorf("with %s's speaker dead, %s is owned by %q", webOwner, a.IP, a.Owner)
		case a.Service == "ns/local" && a.Owner != "":
			t.Errorf("with b's speaker dead, the Local Service's %s is owned by %s", a.IP, a.Owner)
		}
	}
	in.Alive = nil

	// fairlead-ccm's Services name no pool: the address counts when AWS has it tagged for
	// that Service, not for another one.
	objs.Services = append(objs.Services, svc("ccm", "", "203.0.113.5"), svc("impostor", "", "203.0.113.6"))
	in.Snapshot = snapshot.Build(objs)
	in.Held = map[netip.Addr]string{netip.MustParseAddr("203.0.113.5"): "ns/ccm", netip.MustParseAddr("203.0.113.6"): "ns/ccm"}
	var ccm []string
	for _, a := range eip.Plan(in) {
		if a.IP.Is4() && a.IP.As4()[0] == 203 {
			ccm = append(ccm, a.Service+"="+a.IP.String())
		}
	}
	if len(ccm) != 1 || ccm[0] != "ns/ccm=203.0.113.5" {
		t.Errorf("tagged addresses planned: %v, want only ns/ccm=203.0.113.5", ccm)
	}
	if got := eip.Unexplained(in); len(got) != 3 { // lan's 192.0.2.1, ccm's, impostor's
		t.Errorf("Unexplained = %v, want the three addresses no Elastic IP pool accounts for", got)
	}

	// No eligible node: the address has no owner (nobody moves it).
	objs.Nodes = nodes[2:]
	in.Snapshot = snapshot.Build(objs)
	for _, a := range eip.Plan(in) {
		if a.Owner != "" {
			t.Errorf("with no eligible node, %s is owned by %s", a.IP, a.Owner)
		}
	}
}
