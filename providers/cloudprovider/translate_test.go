package cloudprovider

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/providers"
)

func node(name, providerID string, addrs ...v1.NodeAddress) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{ProviderID: providerID},
		Status: v1.NodeStatus{Addresses: addrs}}
}

func TestServiceFor(t *testing.T) {
	base := func() *v1.Service {
		return &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "front", UID: "u-1",
				Annotations: map[string]string{"fairlead.dev/aws-nlb-scheme": "internal"}, Labels: map[string]string{"app": "front"}},
			Spec: v1.ServiceSpec{
				Type:           v1.ServiceTypeLoadBalancer,
				IPFamilies:     []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol},
				IPFamilyPolicy: ptr.To(v1.IPFamilyPolicySingleStack),
				Ports: []v1.ServicePort{
					{Name: "http", Port: 80, NodePort: 30080},
					{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, NodePort: 30053},
				},
			},
		}
	}
	nodes := []*v1.Node{
		node("n2", "aws:///us-east-1a/i-2",
			v1.NodeAddress{Type: v1.NodeExternalIP, Address: "203.0.113.2"},
			v1.NodeAddress{Type: v1.NodeInternalIP, Address: "10.0.0.2"},
			v1.NodeAddress{Type: v1.NodeInternalIP, Address: "fd00::2"}),
		node("n1", "aws:///us-east-1a/i-1", v1.NodeAddress{Type: v1.NodeInternalIP, Address: "10.0.0.1"},
			v1.NodeAddress{Type: v1.NodeHostName, Address: "n1.example"}),
	}
	// n1 is not Ready: the upstream controller passes such nodes on purpose.
	nodes[0].Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}
	nodes[1].Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionFalse}}

	t.Run("cluster traffic", func(t *testing.T) {
		got, err := ServiceFor(base(), map[string]string{"team": "blue"}, nodes)
		if err != nil {
			t.Fatal(err)
		}
		want := &providers.Service{
			Namespace: "web", Name: "front", UID: "u-1",
			Annotations:     map[string]string{"fairlead.dev/aws-nlb-scheme": "internal"},
			Labels:          map[string]string{"app": "front"},
			NamespaceLabels: map[string]string{"team": "blue"},
			// SingleStack: only the primary family, even though two are listed.
			Families: []string{"IPv4"},
			Ports: []providers.Port{
				{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080},
				{Name: "dns", Protocol: "UDP", Port: 53, NodePort: 30053},
			},
			// As given (n1 NotReady too), sorted by name; only internal addresses.
			Nodes: []providers.Node{
				{Name: "n1", ProviderID: "aws:///us-east-1a/i-1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
				{Name: "n2", ProviderID: "aws:///us-east-1a/i-2", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}},
			},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got\n%+v\nwant\n%+v", got, want)
		}
		if got.Key() != "web/front" {
			t.Fatalf("key %q", got.Key())
		}
	})

	t.Run("local traffic, dual stack, source ranges", func(t *testing.T) {
		svc := base()
		svc.Spec.IPFamilyPolicy = ptr.To(v1.IPFamilyPolicyRequireDualStack)
		svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		svc.Spec.HealthCheckNodePort = 32000
		svc.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/24", "192.0.2.7/32"}
		got, err := ServiceFor(svc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !got.LocalTraffic || got.HealthCheckNodePort != 32000 {
			t.Fatalf("local traffic %v, health check port %d", got.LocalTraffic, got.HealthCheckNodePort)
		}
		if !reflect.DeepEqual(got.Families, []string{"IPv4", "IPv6"}) {
			t.Fatalf("families %v", got.Families)
		}
		want := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("192.0.2.7/32")}
		if !reflect.DeepEqual(got.SourceRanges, want) {
			t.Fatalf("source ranges %v, want %v", got.SourceRanges, want)
		}
	})

	t.Run("source ranges from the annotation", func(t *testing.T) {
		svc := base()
		svc.Annotations = map[string]string{v1.AnnotationLoadBalancerSourceRangesKey: "203.0.113.0/25, 2001:db8::/32"}
		got, err := ServiceFor(svc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/25"), netip.MustParsePrefix("2001:db8::/32")}
		if !reflect.DeepEqual(got.SourceRanges, want) {
			t.Fatalf("source ranges %v, want %v", got.SourceRanges, want)
		}
	})

	t.Run("bad source range is the Service's fault", func(t *testing.T) {
		svc := base()
		svc.Spec.LoadBalancerSourceRanges = []string{"not-a-cidr"}
		_, err := ServiceFor(svc, nil, nil)
		if err == nil || providers.ReasonOf(err) != providers.ReasonInvalidService || !strings.Contains(err.Error(), "not-a-cidr") {
			t.Fatalf("error %v (reason %s), want InvalidService naming the range", err, providers.ReasonOf(err))
		}
	})
}

func TestStatusFor(t *testing.T) {
	st := statusFor(providers.Ingress{IPs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::a")}, Hostname: "lb.example"}, v1.LoadBalancerIPModeVIP)
	if len(st.Ingress) != 3 || st.Ingress[0].IP != "192.0.2.10" || st.Ingress[1].IP != "2001:db8::a" || st.Ingress[2].Hostname != "lb.example" ||
		*st.Ingress[0].IPMode != v1.LoadBalancerIPModeVIP || st.Ingress[2].IPMode != nil {
		t.Fatalf("status %+v", st)
	}
}
