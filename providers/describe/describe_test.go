package describe_test

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
)

func node(name string, ready bool, labels map[string]string, deleting bool) *corev1.Node {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-" + name},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "10.0.0." + name},
				{Type: corev1.NodeExternalIP, Address: "192.0.2." + name},
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
		},
	}
	if deleting {
		n.DeletionTimestamp = ptr.To(metav1.Now())
		n.Finalizers = []string{"x"}
	}
	return n
}

func TestService(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "u1", Annotations: map[string]string{"a": "b"}},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeLoadBalancer,
			IPFamilies:               []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			IPFamilyPolicy:           ptr.To(corev1.IPFamilyPolicySingleStack),
			ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
			HealthCheckNodePort:      32000,
			LoadBalancerSourceRanges: []string{"198.51.100.1/24"},
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053},
			},
		},
		// A hostname (an NLB's) is not an address.
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: "203.0.113.7"}, {Hostname: "lb.example"}}}},
	}
	nodes := []*corev1.Node{
		node("3", true, nil, false),
		node("1", true, nil, false),
		node("2", false, nil, false), // NotReady
		node("4", true, map[string]string{corev1.LabelNodeExcludeBalancers: "true"}, false),
		node("5", true, nil, true), // being deleted
	}
	slices := []*discoveryv1.EndpointSlice{{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)},
			{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](5353)},
		},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.2"}}, // ready by default
			{Addresses: []string{"10.244.1.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true)}}, // terminating
			{Addresses: []string{"10.244.1.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
	}}
	got, err := describe.Service(svc, map[string]string{"team": "x"}, nodes, slices)
	if err != nil {
		t.Fatal(err)
	}
	ep := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	want := &providers.Service{
		Namespace: "shop", Name: "web", UID: "u1", Annotations: map[string]string{"a": "b"},
		NamespaceLabels: map[string]string{"team": "x"},
		Families:        []string{"IPv4"},
		SourceRanges:    []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		LocalTraffic:    true, HealthCheckNodePort: 32000,
		Ports: []providers.Port{
			{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080, Endpoints: []netip.AddrPort{ep("10.244.1.1:8080"), ep("10.244.1.2:8080")}},
			{Name: "dns", Protocol: "UDP", Port: 53, NodePort: 30053, Endpoints: []netip.AddrPort{ep("10.244.1.1:5353"), ep("10.244.1.2:5353")}},
		},
		Nodes: []providers.Node{
			{Name: "1", ProviderID: "aws:///us-east-1a/i-1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
			{Name: "3", ProviderID: "aws:///us-east-1a/i-3", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.3")}},
		},
		StatusIPs: []netip.Addr{netip.MustParseAddr("203.0.113.7")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Service =\n%+v\nwant\n%+v", got, want)
	}

	// The older annotation is read when the field is empty; a bad range is the Service's fault.
	svc.Spec.LoadBalancerSourceRanges = nil
	svc.Annotations = map[string]string{"service.beta.kubernetes.io/load-balancer-source-ranges": "203.0.113.0/24, nope"}
	if _, err := describe.Service(svc, nil, nil, nil); providers.ReasonOf(err) != providers.ReasonInvalidService {
		t.Fatalf("bad source range: %v, want reason %s", err, providers.ReasonInvalidService)
	}
}

// A node kube-controller-manager marks Unknown after an apiserver outage stays a target, as it
// stays an announcer in the speakers (one function reads the condition for both); the
// kubelet's own NotReady, a node that never reported, and a node without the condition do not.
func TestEligible(t *testing.T) {
	withReady := func(st corev1.ConditionStatus, reason string) *corev1.Node {
		n := node("1", true, nil, false)
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: reason}}
		return n
	}
	noCondition := node("1", true, nil, false)
	noCondition.Status.Conditions = nil
	for _, tc := range []struct {
		name string
		n    *corev1.Node
		want bool
	}{
		{"ready", withReady(corev1.ConditionTrue, "KubeletReady"), true},
		{"kubelet says not ready", withReady(corev1.ConditionFalse, "KubeletNotReady"), false},
		{"controller-manager lost the kubelet", withReady(corev1.ConditionUnknown, "NodeStatusUnknown"), true},
		{"never reported", withReady(corev1.ConditionUnknown, "NodeStatusNeverUpdated"), false},
		{"no Ready condition", noCondition, false},
		{"excluded", node("1", true, map[string]string{corev1.LabelNodeExcludeBalancers: ""}, false), false},
		{"being deleted", node("1", true, nil, true), false},
	} {
		if got := describe.Eligible(tc.n); got != tc.want {
			t.Errorf("%s: Eligible %v, want %v", tc.name, got, tc.want)
		}
		if got := describe.NodeReady(tc.n); tc.want && !got {
			t.Errorf("%s: NodeReady false for an eligible node", tc.name)
		}
	}
}
