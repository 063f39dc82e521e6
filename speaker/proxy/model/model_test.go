package model

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

const node = "node-a"

func service(mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10", "fd00:96::10"},
			Ports:      []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

type ep struct {
	addr                        string
	node                        string
	ready, serving, terminating *bool
	zones                       []string
}

func slice(name string, fam discoveryv1.AddressType, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("slice-" + name), Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: fam,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}},
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.node != "" {
			x.NodeName = ptr.To(e.node)
		}
		if e.zones != nil {
			x.Hints = &discoveryv1.EndpointHints{}
			for _, z := range e.zones {
				x.Hints.ForZones = append(x.Hints.ForZones, discoveryv1.ForZone{Name: z})
			}
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

func addrs(eps []Endpoint) []string {
	out := []string{}
	for _, e := range eps {
		out = append(out, e.String())
	}
	return out
}

func byFamily(t *testing.T, sps []ServicePort, f Family) ServicePort {
	t.Helper()
	for _, sp := range sps {
		if sp.Family == f {
			return sp
		}
	}
	t.Fatalf("no IPv%d port in %+v", f, sps)
	return ServicePort{}
}

func TestSkipsHeadlessAndExternalName(t *testing.T) {
	for name, svc := range map[string]*corev1.Service{
		"headless":     service(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
		"externalname": service(func(s *corev1.Service) { s.Spec.Type, s.Spec.ClusterIP, s.Spec.ClusterIPs = "ExternalName", "", nil }),
	} {
		if sps, probs := Build(svc, nil, Node{Name: node}); len(sps) != 0 || len(probs) != 0 {
			t.Errorf("%s: got %+v %v", name, sps, probs)
		}
	}
}

func TestEndpointSelection(t *testing.T) {
	T, F := ptr.To(true), ptr.To(false)
	for _, tc := range []struct {
		name           string
		eps            []ep
		cluster, local []string
	}{
		{"ready ones only", []ep{{addr: "10.0.0.1", node: node}, {addr: "10.0.0.2", ready: F, serving: T, terminating: T}, {addr: "10.0.0.3", node: "b"}},
			[]string{"10.0.0.1:8080", "10.0.0.3:8080"}, []string{"10.0.0.1:8080"}},
		{"nil ready counts as ready", []ep{{addr: "10.0.0.1"}}, []string{"10.0.0.1:8080"}, []string{}},
		{"fallback to serving terminating", []ep{{addr: "10.0.0.1", ready: F, serving: T, terminating: T, node: node}, {addr: "10.0.0.2", ready: F, serving: F, terminating: T}, {addr: "10.0.0.3", ready: F}},
			[]string{"10.0.0.1:8080"}, []string{"10.0.0.1:8080"}},
		{"local fallback is separate", []ep{{addr: "10.0.0.1", node: "b"}, {addr: "10.0.0.2", node: node, ready: F, serving: T, terminating: T}},
			[]string{"10.0.0.1:8080"}, []string{"10.0.0.2:8080"}},
		{"none", nil, []string{}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sps, probs := Build(service(), []*discoveryv1.EndpointSlice{slice("s", "IPv4", 8080, tc.eps...)}, Node{Name: node})
			if len(probs) > 0 {
				t.Fatal(probs)
			}
			sp := byFamily(t, sps, IPv4)
			if got := addrs(sp.ClusterEndpoints); !slices.Equal(got, tc.cluster) {
				t.Errorf("cluster endpoints %v, want %v", got, tc.cluster)
			}
			if got := addrs(sp.LocalEndpoints); !slices.Equal(got, tc.local) {
				t.Errorf("local endpoints %v, want %v", got, tc.local)
			}
		})
	}
}

func TestFamiliesPortsAndSlicesAreMatched(t *testing.T) {
	svc := service(func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53})
	})
	other := slice("other", "IPv4", 8080, ep{addr: "10.9.9.9"})
	other.Labels[discoveryv1.LabelServiceName] = "not-web"
	dns := slice("dns", "IPv4", 5353, ep{addr: "10.0.0.5"})
	dns.Ports[0].Name, dns.Ports[0].Protocol = ptr.To("dns"), ptr.To(corev1.ProtocolUDP)
	sps, probs := Build(svc, []*discoveryv1.EndpointSlice{
		slice("v4", "IPv4", 8080, ep{addr: "10.0.0.1"}),
		slice("v4-dup", "IPv4", 8080, ep{addr: "10.0.0.1"}, ep{addr: "10.0.0.2"}),
		slice("v6", "IPv6", 8080, ep{addr: "fd00::1"}),
		other, dns,
	}, Node{Name: node})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	got := map[string][]string{}
	for _, sp := range sps {
		got[sp.Key()] = addrs(sp.ClusterEndpoints)
	}
	want := map[string][]string{
		"4-ns/web/tcp/http": {"10.0.0.1:8080", "10.0.0.2:8080"},
		"6-ns/web/tcp/http": {"[fd00::1]:8080"},
		"4-ns/web/udp/dns":  {"10.0.0.5:5353"},
		"6-ns/web/udp/dns":  {},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("%s: %v, want %v", k, got[k], w)
		}
	}
}

func TestExternalFields(t *testing.T) {
	svc := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.ExternalIPs = []string{"203.0.113.5", "2001:db8::5"}
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = 31000
		s.Spec.LoadBalancerSourceRanges = []string{" 192.0.2.0/24", "2001:db8:1::/64"}
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
			{IP: "198.51.100.1"}, {IP: "2001:db8:ff::1"}, {Hostname: "lb.example.com"},
			{IP: "198.51.100.2", IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)},
		}
	})
	sps, probs := Build(svc, nil, Node{Name: node})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	v4, v6 := byFamily(t, sps, IPv4), byFamily(t, sps, IPv6)
	if v4.NodePort != 30080 || v6.NodePort != 30080 || v4.HealthCheckNodePort != 31000 || !v4.ExternalLocal {
		t.Errorf("node ports / policy wrong: %+v", v4)
	}
	if v4.AffinityTimeout != DefaultAffinityTimeout {
		t.Errorf("affinity timeout %v", v4.AffinityTimeout)
	}
	check := func(what string, got []netip.Addr, want ...string) {
		t.Helper()
		var g []string
		for _, a := range got {
			g = append(g, a.String())
		}
		if !slices.Equal(g, want) {
			t.Errorf("%s: %v, want %v", what, g, want)
		}
	}
	check("v4 LB", v4.LoadBalancerIPs, "198.51.100.1")
	check("v6 LB", v6.LoadBalancerIPs, "2001:db8:ff::1")
	check("v4 external", v4.ExternalIPs, "203.0.113.5")
	check("v6 external", v6.ExternalIPs, "2001:db8::5")
	if len(v4.SourceRanges) != 1 || v4.SourceRanges[0].String() != "192.0.2.0/24" || v6.SourceRanges[0].String() != "2001:db8:1::/64" {
		t.Errorf("source ranges %v %v", v4.SourceRanges, v6.SourceRanges)
	}

	// A ClusterIP Service ignores NodePort-ish and LoadBalancer fields and never is Local
	// for external traffic unless it has external addresses.
	cip := service(func(s *corev1.Service) {
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	})
	sps, _ = Build(cip, nil, Node{Name: node})
	if sp := byFamily(t, sps, IPv4); sp.NodePort != 0 || len(sp.LoadBalancerIPs) != 0 || sp.ExternalLocal || sp.AffinityTimeout != time.Minute {
		t.Errorf("ClusterIP Service: %+v", sp)
	}
}

func TestInvalidPartsAreSkippedAndReported(t *testing.T) {
	svc := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ExternalIPs = []string{"not-an-ip", "203.0.113.5"}
		s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/33"}
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "bad", Protocol: "ICMP", Port: 1})
	})
	badPort := slice("bad-port", "IPv4", 70000, ep{addr: "10.0.0.7"})
	sps, probs := Build(svc, []*discoveryv1.EndpointSlice{
		slice("good", "IPv4", 8080, ep{addr: "10.0.0.1"}, ep{addr: "239.1.1.1"}, ep{addr: "255.255.255.255"}, ep{addr: "garbage"}),
		badPort,
	}, Node{Name: node})
	sp := byFamily(t, sps, IPv4)
	if got := addrs(sp.ClusterEndpoints); !slices.Equal(got, []string{"10.0.0.1:8080"}) {
		t.Errorf("endpoints %v", got)
	}
	if len(sp.ExternalIPs) != 1 || len(sp.SourceRanges) != 0 {
		t.Errorf("external %v ranges %v", sp.ExternalIPs, sp.SourceRanges)
	}
	if len(sps) != 2 {
		t.Errorf("want the two families of the valid port, got %d ports", len(sps))
	}
	var msgs []string
	portProblemOnSlice := false
	for _, p := range probs {
		msgs = append(msgs, p.Error())
		if p.Object == badPort && strings.Contains(p.Error(), "70000") {
			portProblemOnSlice = true
		}
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"not-an-ip", "192.0.2.0/33", "ICMP", "239.1.1.1", "255.255.255.255", "garbage"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem mentions %q:\n%s", want, all)
		}
	}
	if !portProblemOnSlice {
		t.Errorf("port 70000 not reported against its slice:\n%s", all)
	}
}

func TestTopologyHints(t *testing.T) {
	eps := []ep{{addr: "10.0.0.1", zones: []string{"a"}}, {addr: "10.0.0.2", zones: []string{"b"}}, {addr: "10.0.0.3", zones: []string{"a"}}}
	prefer := func(s *corev1.Service) {
		s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferClose)
	}
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		eps  []ep
		zone string
		want []string
	}{
		{"zone a", service(prefer), eps, "a", []string{"10.0.0.1:8080", "10.0.0.3:8080"}},
		{"zone b", service(prefer), eps, "b", []string{"10.0.0.2:8080"}},
		{"unknown zone", service(prefer), eps, "", []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}},
		{"no endpoint for zone", service(prefer), eps, "c", []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}},
		{"not asked for", service(), eps, "a", []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}},
		{"annotation", service(func(s *corev1.Service) { s.Annotations = map[string]string{corev1.AnnotationTopologyMode: "Auto"} }), eps, "b", []string{"10.0.0.2:8080"}},
		{"one endpoint unhinted", service(prefer), append([]ep{{addr: "10.0.0.4"}}, eps...), "b",
			[]string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sps, _ := Build(tc.svc, []*discoveryv1.EndpointSlice{slice("s", "IPv4", 8080, tc.eps...)}, Node{Name: node, Zone: tc.zone})
			if got := addrs(byFamily(t, sps, IPv4).ClusterEndpoints); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
