package rules_test

// kube-proxy's semantics, case by case, without a kernel: Services and EndpointSlices as the
// API gives them go through model.Build, Render and the full sync's script, and nfttrace
// follows a packet through that script. nfttrace/kernel_test.go holds the tracer's answers
// against the kernel's.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"

	"github.com/fairlead-lb/fairlead/speaker/proxy/model"
	"github.com/fairlead-lb/fairlead/speaker/proxy/nftsync"
	"github.com/fairlead-lb/fairlead/speaker/proxy/nfttrace"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
)

// The node and its neighbours.
const (
	thisNode  = "node-a"
	otherNode = "node-b"
	nodeLAN4  = "192.0.2.1"
	nodeLAN6  = "2001:db8:1::1"
	nodeGW4   = "10.244.1.1"  // the node's address towards its pods
	podA      = "10.244.1.11" // on this node
	podC      = "10.244.1.13" // on this node
	podB      = "10.244.2.12" // on the other node
	podA6     = "fd00:244:1::b"
	podB6     = "fd00:244:2::c"
	client    = "203.0.113.7" // outside the cluster, routed to the node
	client6   = "2001:db8:2::7"
)

var baseConfig = rules.Config{
	ClusterCIDRs: prefixes("10.244.0.0/16", "fd00:244::/32"),
	ServiceCIDRs: prefixes("10.96.0.0/16", "fd00:96::/112"),
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// svc is a dual-stack ClusterIP Service "web" with TCP port 80 (and UDP 53 "dns").
func svc(opts ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00:96::10"},
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053},
			},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func nodePort(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }

func loadBalancer(ips ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func etpLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

// ep is an endpoint: address, node, and its conditions.
type ep struct {
	addr, node                     string
	notReady, serving, terminating bool
}

func ready(addr, node string) ep { return ep{addr: addr, node: node} }

// slices returns the EndpointSlices of "web" holding eps, on 8080 (http) and 5353 (dns).
func endpointSlices(eps ...ep) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, typ := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-" + strings.ToLower(string(typ)), Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: typ,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)},
				{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](5353)},
			},
		}
		for _, e := range eps {
			if strings.Contains(e.addr, ":") != (typ == discoveryv1.AddressTypeIPv6) {
				continue
			}
			c := discoveryv1.EndpointConditions{Ready: ptr.To(!e.notReady)}
			if e.notReady {
				c.Serving, c.Terminating = ptr.To(e.serving), ptr.To(e.terminating)
			}
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr}, NodeName: ptr.To(e.node), Conditions: c})
		}
		out = append(out, s)
	}
	return out
}

// render is the script a full sync of the Service writes.
func render(t *testing.T, cfg rules.Config, s *corev1.Service, eps []*discoveryv1.EndpointSlice) string {
	t.Helper()
	sps, problems := model.Build(s, eps, model.Node{Name: thisNode})
	if len(problems) > 0 {
		t.Fatalf("model: %v", problems)
	}
	desired := map[string]*rules.Service{}
	for i := range sps {
		desired[sps[i].Key()] = rules.Render(&sps[i], cfg)
	}
	script, res, err := nftsync.FullScript("fairlead", cfg, desired)
	if err != nil || len(res.Conflicts) > 0 {
		t.Fatalf("rendering: %v %v", err, res.Conflicts)
	}
	return script
}

func tracer(t *testing.T, script string) *nfttrace.Tracer {
	t.Helper()
	rs := nfttrace.New()
	if err := rs.Load(script); err != nil {
		t.Fatalf("the tracer cannot read the proxy's rules: %v", err)
	}
	return &nfttrace.Tracer{Rules: rs, Node: nfttrace.Node{Addrs: addrs(nodeLAN4, nodeLAN6, nodeGW4)}}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// fates traces p and returns its distinct outcomes, sorted.
func fates(t *testing.T, tr *nfttrace.Tracer, p nfttrace.Packet) []string {
	t.Helper()
	outs, err := tr.Trace(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range outs {
		out = append(out, o.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// pkt: "tcp 203.0.113.7 -> 10.96.0.10:80"; from "node" means sent by the node itself
// (from its LAN address of the family, or from src if given as "node:127.0.0.1").
func pkt(proto, src, dst string) nfttrace.Packet {
	p := nfttrace.Packet{Proto: proto}
	if rest, ok := strings.CutPrefix(src, "node"); ok {
		p.Local = true
		src = strings.TrimPrefix(rest, ":")
		if src == "" {
			src = nodeLAN4
			if strings.Count(dst, ":") > 1 {
				src = nodeLAN6
			}
		}
	}
	p.Src = netip.MustParseAddr(src)
	ap := netip.MustParseAddrPort(dst)
	p.Dst, p.DPort = ap.Addr(), ap.Port()
	return p
}

func dnat(addr string, port int, masq bool) string {
	s := "dnat " + netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port)).String()
	if masq {
		s += " masquerade"
	}
	return s
}

const (
	resetTCP   = "reject (tcp reset)"
	rejectICMP = "reject (icmp)"
	dropped    = "drop"
	toNode     = "accept (to the node)"
)

var (
	twoEndpoints = endpointSlices(ready(podA, thisNode), ready(podB, otherNode), ready(podA6, thisNode), ready(podB6, otherNode))
)

func TestKubeProxySemantics(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *rules.Config
		svc  *corev1.Service
		eps  []*discoveryv1.EndpointSlice
		pkt  nfttrace.Packet
		want []string
	}{
		// ClusterIP: every ready endpoint, at random; sources outside the cluster CIDR are
		// masqueraded (kube-proxy's --cluster-cidr), pods keep theirs.
		{name: "ClusterIP from a pod", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", podC, "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, false), dnat(podB, 8080, false)}},
		{name: "ClusterIP from outside the cluster CIDR is masqueraded", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", client, "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "ClusterIP from the node is masqueraded", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", "node", "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "ClusterIP UDP port", svc: svc(), eps: twoEndpoints, pkt: pkt("udp", podC, "10.96.0.10:53"),
			want: []string{dnat(podA, 5353, false), dnat(podB, 5353, false)}},
		{name: "ClusterIP IPv6", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", "fd00:244:1::d", "[fd00:96::10]:80"),
			want: []string{dnat(podA6, 8080, false), dnat(podB6, 8080, false)}},
		{name: "ClusterIP on a port the Service lacks is rejected", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", podC, "10.96.0.10:81"),
			want: []string{resetTCP}},
		{name: "ClusterIP UDP on a port the Service lacks is rejected with ICMP", svc: svc(), eps: twoEndpoints, pkt: pkt("udp", podC, "10.96.0.10:54"),
			want: []string{rejectICMP}},
		{name: "a free address of the service CIDR is dropped", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", podC, "10.96.0.99:80"),
			want: []string{dropped}},
		{name: "a free IPv6 address of the service CIDR is dropped", svc: svc(), eps: twoEndpoints, pkt: pkt("udp", "fd00:244:1::d", "[fd00:96::99]:53"),
			want: []string{dropped}},
		{name: "an address outside the service CIDRs is left alone", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", podC, "10.97.0.10:80"),
			want: []string{"accept"}},
		{name: "masqueradeAll masquerades pods too", cfg: &rules.Config{ClusterCIDRs: baseConfig.ClusterCIDRs, MasqueradeAll: true},
			svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", podC, "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "without a cluster CIDR nothing is masqueraded to a ClusterIP", cfg: &rules.Config{},
			svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", client, "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, false), dnat(podB, 8080, false)}},
		{name: "detect-local by interface: a pod's bridge is local", cfg: &rules.Config{LocalInterface: "cbr0"},
			svc: svc(), eps: twoEndpoints, pkt: func() nfttrace.Packet { p := pkt("tcp", podC, "10.96.0.10:80"); p.InIface = "cbr0"; return p }(),
			want: []string{dnat(podA, 8080, false), dnat(podB, 8080, false)}},
		{name: "detect-local by interface: elsewhere is masqueraded", cfg: &rules.Config{LocalInterface: "cbr0"},
			svc: svc(), eps: twoEndpoints, pkt: func() nfttrace.Packet { p := pkt("tcp", podC, "10.96.0.10:80"); p.InIface = "eth0"; return p }(),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		// Hairpin: a pod reaching itself is masqueraded, or it would answer itself directly.
		{name: "hairpin", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", podA, "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, false)}},

		// Endpoint selection.
		{name: "no endpoints: ClusterIP rejects", svc: svc(), eps: endpointSlices(), pkt: pkt("tcp", podC, "10.96.0.10:80"),
			want: []string{resetTCP}},
		{name: "no endpoints: UDP rejects with ICMP", svc: svc(), eps: endpointSlices(), pkt: pkt("udp", podC, "10.96.0.10:53"),
			want: []string{rejectICMP}},
		{name: "no endpoints: NodePort rejects", svc: svc(nodePort), eps: endpointSlices(), pkt: pkt("tcp", client, nodeLAN4+":30080"),
			want: []string{resetTCP}},
		{name: "no endpoints: LoadBalancer IP rejects", svc: svc(loadBalancer("198.51.100.10")), eps: endpointSlices(), pkt: pkt("tcp", client, "198.51.100.10:80"),
			want: []string{resetTCP}},
		{name: "not ready and not serving: as no endpoint", svc: svc(), eps: endpointSlices(ep{addr: podA, node: thisNode, notReady: true}),
			pkt: pkt("tcp", podC, "10.96.0.10:80"), want: []string{resetTCP}},
		{name: "ready endpoints win over terminating ones", svc: svc(),
			eps: endpointSlices(ready(podB, otherNode), ep{addr: podA, node: thisNode, notReady: true, serving: true, terminating: true}),
			pkt: pkt("tcp", podC, "10.96.0.10:80"), want: []string{dnat(podB, 8080, false)}},
		{name: "serving terminating endpoints when none is ready", svc: svc(),
			eps: endpointSlices(ep{addr: podA, node: thisNode, notReady: true, serving: true, terminating: true}, ep{addr: podB, node: otherNode, notReady: true, terminating: true}),
			pkt: pkt("tcp", podC, "10.96.0.10:80"), want: []string{dnat(podA, 8080, false)}},
		{name: "more endpoints than the shared chains serve", svc: svc(), eps: manyEndpoints(40), pkt: pkt("tcp", podC, "10.96.0.10:80"),
			want: manyDNATs(40)},

		// NodePort: on the node's addresses, not loopback; masqueraded (externalTrafficPolicy Cluster).
		{name: "NodePort on the node's LAN address", svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", client, nodeLAN4+":30080"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "NodePort on the node's pod-side address", svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", podC, nodeGW4+":30080"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "NodePort UDP on IPv6", svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("udp", client6, "["+nodeLAN6+"]:30053"),
			want: []string{dnat(podA6, 5353, true), dnat(podB6, 5353, true)}},
		{name: "NodePort from the node itself", svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", "node", nodeLAN4+":30080"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "NodePort on loopback is not served", svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", "node:127.0.0.1", "127.0.0.1:30080"),
			want: []string{toNode}},
		{name: "NodePort on an address that is not the node's", svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", client, "192.0.2.50:30080"),
			want: []string{"accept"}},
		{name: "NodePort outside --nodeport-addresses", cfg: &rules.Config{ClusterCIDRs: baseConfig.ClusterCIDRs, NodePortCIDRs: prefixes("192.0.2.0/24")},
			svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", podC, nodeGW4+":30080"), want: []string{toNode}},
		{name: "NodePort inside --nodeport-addresses", cfg: &rules.Config{ClusterCIDRs: baseConfig.ClusterCIDRs, NodePortCIDRs: prefixes("192.0.2.0/24")},
			svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", client, nodeLAN4+":30080"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "--nodeport-addresses without an IPv6 range: no IPv6 NodePort", cfg: &rules.Config{ClusterCIDRs: baseConfig.ClusterCIDRs, NodePortCIDRs: prefixes("192.0.2.0/24")},
			svc: svc(nodePort), eps: twoEndpoints, pkt: pkt("tcp", client6, "["+nodeLAN6+"]:30080"), want: []string{toNode}},
		{name: "a ClusterIP Service has no NodePort", svc: svc(), eps: twoEndpoints, pkt: pkt("tcp", client, nodeLAN4+":30080"),
			want: []string{toNode}},

		// LoadBalancer IPs and externalIPs: as NodePorts.
		{name: "LoadBalancer IP", svc: svc(loadBalancer("198.51.100.10", "2001:db8:ff::10")), eps: twoEndpoints, pkt: pkt("tcp", client, "198.51.100.10:80"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "LoadBalancer IPv6", svc: svc(loadBalancer("198.51.100.10", "2001:db8:ff::10")), eps: twoEndpoints, pkt: pkt("udp", client6, "[2001:db8:ff::10]:53"),
			want: []string{dnat(podA6, 5353, true), dnat(podB6, 5353, true)}},
		{name: "LoadBalancer IP from a pod", svc: svc(loadBalancer("198.51.100.10")), eps: twoEndpoints, pkt: pkt("tcp", podC, "198.51.100.10:80"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "LoadBalancer IP on another port is not ours", svc: svc(loadBalancer("198.51.100.10")), eps: twoEndpoints, pkt: pkt("tcp", client, "198.51.100.10:81"),
			want: []string{"accept"}},
		{name: "externalIPs", svc: svc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.10"} }), eps: twoEndpoints,
			pkt: pkt("tcp", client, "203.0.113.10:80"), want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "a pending LoadBalancer has only its NodePort", svc: svc(loadBalancer()), eps: twoEndpoints, pkt: pkt("tcp", client, nodeLAN4+":30080"),
			want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "ipMode Proxy ingress is left to the load balancer", svc: svc(func(s *corev1.Service) {
			loadBalancer()(s)
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.10", IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)}}
		}), eps: twoEndpoints, pkt: pkt("tcp", client, "198.51.100.10:80"), want: []string{"accept"}},

		// externalTrafficPolicy Local: external clients keep their address and reach only this
		// node's endpoints (none: dropped); pods and the node itself go anywhere, the node
		// masqueraded.
		{name: "ETP Local: LoadBalancer IP from outside", svc: svc(loadBalancer("198.51.100.10"), etpLocal), eps: twoEndpoints,
			pkt: pkt("tcp", client, "198.51.100.10:80"), want: []string{dnat(podA, 8080, false)}},
		{name: "ETP Local: NodePort from outside", svc: svc(loadBalancer("198.51.100.10"), etpLocal), eps: twoEndpoints,
			pkt: pkt("tcp", client, nodeLAN4+":30080"), want: []string{dnat(podA, 8080, false)}},
		{name: "ETP Local: IPv6 NodePort from outside", svc: svc(loadBalancer("198.51.100.10"), etpLocal), eps: twoEndpoints,
			pkt: pkt("udp", client6, "["+nodeLAN6+"]:30053"), want: []string{dnat(podA6, 5353, false)}},
		{name: "ETP Local: externalIP from outside", svc: svc(etpLocal, func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.10"} }), eps: twoEndpoints,
			pkt: pkt("tcp", client, "203.0.113.10:80"), want: []string{dnat(podA, 8080, false)}},
		{name: "ETP Local: from a pod, short-circuited to every endpoint", svc: svc(loadBalancer("198.51.100.10"), etpLocal), eps: twoEndpoints,
			pkt: pkt("tcp", podC, "198.51.100.10:80"), want: []string{dnat(podA, 8080, false), dnat(podB, 8080, false)}},
		{name: "ETP Local: from the node, every endpoint, masqueraded", svc: svc(loadBalancer("198.51.100.10"), etpLocal), eps: twoEndpoints,
			pkt: pkt("tcp", "node", "198.51.100.10:80"), want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "ETP Local: no local endpoint drops external clients", svc: svc(loadBalancer("198.51.100.10"), etpLocal),
			eps: endpointSlices(ready(podB, otherNode)), pkt: pkt("tcp", client, "198.51.100.10:80"), want: []string{dropped}},
		{name: "ETP Local: no local endpoint, NodePort drops too", svc: svc(loadBalancer("198.51.100.10"), etpLocal),
			eps: endpointSlices(ready(podB, otherNode)), pkt: pkt("tcp", client, nodeLAN4+":30080"), want: []string{dropped}},
		{name: "ETP Local: no local endpoint, pods still reach the others", svc: svc(loadBalancer("198.51.100.10"), etpLocal),
			eps: endpointSlices(ready(podB, otherNode)), pkt: pkt("tcp", podC, "198.51.100.10:80"), want: []string{dnat(podB, 8080, false)}},
		{name: "ETP Local does not touch the ClusterIP", svc: svc(loadBalancer("198.51.100.10"), etpLocal), eps: twoEndpoints,
			pkt: pkt("tcp", client, "10.96.0.10:80"), want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "ETP Local with affinity: outside reaches only local endpoints", svc: svc(loadBalancer("198.51.100.10"), etpLocal, affinity), eps: twoEndpoints,
			pkt: pkt("tcp", client, "198.51.100.10:80"), want: []string{dnat(podA, 8080, false)}},
		{name: "ETP Local with affinity: from a pod, every endpoint", svc: svc(loadBalancer("198.51.100.10"), etpLocal, affinity), eps: twoEndpoints,
			pkt: pkt("tcp", podC, "198.51.100.10:80"), want: []string{dnat(podA, 8080, false), dnat(podB, 8080, false)}},
		{name: "ETP Local with affinity: from the node, masqueraded", svc: svc(loadBalancer("198.51.100.10"), etpLocal, affinity), eps: twoEndpoints,
			pkt: pkt("tcp", "node", nodeLAN4+":30080"), want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},

		// internalTrafficPolicy Local: ClusterIP traffic only to this node's endpoints; none: dropped.
		{name: "ITP Local", svc: svc(itpLocal), eps: twoEndpoints, pkt: pkt("tcp", podC, "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, false)}},
		{name: "ITP Local without local endpoints drops", svc: svc(itpLocal), eps: endpointSlices(ready(podB, otherNode)), pkt: pkt("tcp", podC, "10.96.0.10:80"),
			want: []string{dropped}},
		{name: "ITP Local leaves external traffic to every endpoint", svc: svc(itpLocal, loadBalancer("198.51.100.10")), eps: twoEndpoints,
			pkt: pkt("tcp", client, "198.51.100.10:80"), want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "ITP Local with affinity", svc: svc(itpLocal, affinity), eps: twoEndpoints, pkt: pkt("tcp", podC, "10.96.0.10:80"),
			want: []string{dnat(podA, 8080, false)}},

		// loadBalancerSourceRanges: other sources are dropped at the LoadBalancer IP only.
		{name: "source ranges admit a listed client", svc: svc(loadBalancer("198.51.100.10", "2001:db8:ff::10"), sourceRanges), eps: twoEndpoints,
			pkt: pkt("tcp", client, "198.51.100.10:80"), want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "source ranges drop others", svc: svc(loadBalancer("198.51.100.10", "2001:db8:ff::10"), sourceRanges), eps: twoEndpoints,
			pkt: pkt("tcp", "198.51.100.99", "198.51.100.10:80"), want: []string{dropped}},
		{name: "source ranges drop others on IPv6", svc: svc(loadBalancer("198.51.100.10", "2001:db8:ff::10"), sourceRanges), eps: twoEndpoints,
			pkt: pkt("udp", "2001:db8:3::9", "[2001:db8:ff::10]:53"), want: []string{dropped}},
		{name: "source ranges drop others even without endpoints", svc: svc(loadBalancer("198.51.100.10"), sourceRanges), eps: endpointSlices(),
			pkt: pkt("tcp", "198.51.100.99", "198.51.100.10:80"), want: []string{dropped}},
		{name: "source ranges leave the NodePort open", svc: svc(loadBalancer("198.51.100.10"), sourceRanges), eps: twoEndpoints,
			pkt: pkt("tcp", "198.51.100.99", nodeLAN4+":30080"), want: []string{dnat(podA, 8080, true), dnat(podB, 8080, true)}},
		{name: "source ranges leave the ClusterIP open", svc: svc(loadBalancer("198.51.100.10"), sourceRanges), eps: twoEndpoints,
			pkt: pkt("tcp", podC, "10.96.0.10:80"), want: []string{dnat(podA, 8080, false), dnat(podB, 8080, false)}},
		{name: "source ranges with affinity", svc: svc(loadBalancer("198.51.100.10"), sourceRanges, affinity), eps: twoEndpoints,
			pkt: pkt("tcp", "198.51.100.99", "198.51.100.10:80"), want: []string{dropped}},

		// SCTP goes the same way.
		{name: "SCTP ClusterIP", svc: svc(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolSCTP }),
			eps: func() []*discoveryv1.EndpointSlice {
				es := twoEndpoints
				out := make([]*discoveryv1.EndpointSlice, len(es))
				for i, e := range es {
					e = e.DeepCopy()
					e.Ports[0].Protocol = ptr.To(corev1.ProtocolSCTP)
					out[i] = e
				}
				return out
			}(), pkt: pkt("sctp", podC, "10.96.0.10:80"), want: []string{dnat(podA, 8080, false), dnat(podB, 8080, false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig
			if tc.cfg != nil {
				cfg = *tc.cfg
			}
			tr := tracer(t, render(t, cfg, tc.svc, tc.eps))
			if got := fates(t, tr, tc.pkt); !slices.Equal(got, tc.want) {
				t.Errorf("%v:\ngot  %q\nwant %q", tc.pkt, got, tc.want)
			}
		})
	}
}

func itpLocal(s *corev1.Service) {
	s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
}

func affinity(s *corev1.Service) {
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
}

func sourceRanges(s *corev1.Service) {
	s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24", "2001:db8:2::/64"}
}

func manyEndpoints(n int) []*discoveryv1.EndpointSlice {
	var eps []ep
	for i := range n {
		eps = append(eps, ready(fmt.Sprintf("10.244.3.%d", 10+i), otherNode))
	}
	return endpointSlices(eps...)
}

func manyDNATs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, dnat(fmt.Sprintf("10.244.3.%d", 10+i), 8080, false))
	}
	slices.Sort(out)
	return out
}

// sessionAffinity ClientIP: a client's first connection may go to any endpoint; once it
// has, its next ones go to the same endpoint, and other clients still spread.
func TestSessionAffinityShape(t *testing.T) {
	for _, dst := range []string{"10.96.0.10:80", "198.51.100.10:80", nodeLAN4 + ":30080"} {
		t.Run(dst, func(t *testing.T) {
			tr := tracer(t, render(t, baseConfig, svc(affinity, loadBalancer("198.51.100.10")), twoEndpoints))
			first := pkt("tcp", client, dst)
			outs, err := tr.Trace(first)
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != 2 {
				t.Fatalf("first connection: %v, want either endpoint", outs)
			}
			tr.Apply(outs[1])
			for _, p := range []nfttrace.Packet{first, pkt("tcp", client, "10.96.0.10:80")} {
				if got := fates(t, tr, p); !slices.Equal(got, []string{outs[1].String()}) {
					t.Errorf("after %v, %v goes to %v", outs[1], p, got)
				}
			}
			if got := fates(t, tr, pkt("tcp", "203.0.113.8", dst)); len(got) != 2 {
				t.Errorf("another client is held too: %v", got)
			}
			// The affinity is per Service port: the UDP port still spreads.
			if got := fates(t, tr, pkt("udp", client, "10.96.0.10:53")); len(got) != 2 {
				t.Errorf("the UDP port is held by the TCP port's affinity: %v", got)
			}
		})
	}
}

// desired renders Services (with their slices) as a sync wants them.
func desired(t *testing.T, cfg rules.Config, objs ...any) map[string]*rules.Service {
	t.Helper()
	out := map[string]*rules.Service{}
	for i := 0; i < len(objs); i += 2 {
		sps, problems := model.Build(objs[i].(*corev1.Service), objs[i+1].([]*discoveryv1.EndpointSlice), model.Node{Name: thisNode})
		if len(problems) > 0 {
			t.Fatal(problems)
		}
		for j := range sps {
			out[sps[j].Key()] = rules.Render(&sps[j], cfg)
		}
	}
	return out
}

// A partial sync leaves the rules doing what a full sync of the same state does.
func TestPartialSyncsMatchAFullSync(t *testing.T) {
	other := func(s *corev1.Service) {
		s.Name, s.Spec.ClusterIP, s.Spec.ClusterIPs = "other", "10.96.0.20", []string{"10.96.0.20", "fd00:96::20"}
		s.Spec.Ports[0].NodePort, s.Spec.Ports[1].NodePort = 30081, 30054
	}
	otherSlices := func(eps ...ep) []*discoveryv1.EndpointSlice {
		out := endpointSlices(eps...)
		for _, s := range out {
			s.Name, s.Labels[discoveryv1.LabelServiceName] = "other-"+s.Name, "other"
		}
		return out
	}
	states := [][]any{
		{svc(loadBalancer("198.51.100.10")), twoEndpoints, svc(other, nodePort), otherSlices(ready(podA, thisNode))},
		// Endpoints change, one Service turns Local and gains affinity, the other loses its endpoints.
		{svc(loadBalancer("198.51.100.10"), etpLocal, affinity), endpointSlices(ready(podA, thisNode), ready(podC, thisNode), ready(podB6, otherNode)),
			svc(other, nodePort), otherSlices()},
		// Source ranges appear; the other Service goes.
		{svc(loadBalancer("198.51.100.10"), sourceRanges), twoEndpoints},
		{svc(loadBalancer("198.51.100.10")), manyEndpoints(34)},
	}
	packets := []nfttrace.Packet{
		pkt("tcp", client, "10.96.0.10:80"), pkt("tcp", podC, "10.96.0.10:80"), pkt("udp", podC, "10.96.0.10:53"),
		pkt("tcp", client, "198.51.100.10:80"), pkt("tcp", "198.51.100.99", "198.51.100.10:80"), pkt("tcp", client, nodeLAN4+":30080"),
		pkt("tcp", client6, "["+nodeLAN6+"]:30080"), pkt("tcp", podC, "10.96.0.20:80"), pkt("tcp", client, nodeLAN4+":30081"),
		pkt("tcp", "node", "10.96.0.20:80"), pkt("udp", client6, "[fd00:96::10]:53"),
	}
	var scripts []string
	s := nftsync.New(knftables.NewFake(knftables.InetFamily, "fairlead"), "fairlead", baseConfig)
	s.SetRunner(func(_ context.Context, script string) error { scripts = append(scripts, script); return nil })
	if _, err := s.Full(context.Background(), desired(t, baseConfig, states[0]...)); err != nil {
		t.Fatal(err)
	}
	incremental := nfttrace.New()
	if err := incremental.Load(scripts[0]); err != nil {
		t.Fatal(err)
	}
	prev := desired(t, baseConfig, states[0]...)
	for i, st := range states[1:] {
		next := desired(t, baseConfig, st...)
		changes := map[string]*rules.Service{}
		for k, v := range next {
			changes[k] = v
		}
		for k := range prev {
			if _, ok := next[k]; !ok {
				changes[k] = nil
			}
		}
		if _, err := s.Partial(context.Background(), changes); err != nil {
			t.Fatal(err)
		}
		if err := incremental.Load(scripts[len(scripts)-1]); err != nil {
			t.Fatalf("state %d: the partial sync's script: %v", i+1, err)
		}
		prev = next
		fresh := tracer(t, render2(t, next))
		inc := &nfttrace.Tracer{Rules: incremental, Node: fresh.Node}
		for _, p := range packets {
			if got, want := fates(t, inc, p), fates(t, fresh, p); !slices.Equal(got, want) {
				t.Errorf("state %d, %v: after partial syncs %q, after a full sync %q", i+1, p, got, want)
			}
		}
	}
}

func render2(t *testing.T, d map[string]*rules.Service) string {
	t.Helper()
	script, _, err := nftsync.FullScript("fairlead", baseConfig, d)
	if err != nil {
		t.Fatal(err)
	}
	return script
}
