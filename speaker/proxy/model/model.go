// Package model turns a Service and its EndpointSlices into what this node's proxy must do
// for each of the Service's ports: which addresses and ports lead to it, and which endpoints
// traffic may reach (after readiness fallback, traffic policies and topology). It knows
// nothing of nftables; speaker/proxy/rules renders it.
package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Family is an IP family: 4 or 6.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of a (valid) address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

// DefaultAffinityTimeout is Kubernetes' default for sessionAffinity ClientIP.
const DefaultAffinityTimeout = 10800 * time.Second

// Node is what the proxy knows about the node it runs on.
type Node struct {
	Name string
	// Zone is the node's topology.kubernetes.io/zone label; empty disables zone hints.
	Zone string
}

// Endpoint is one backend address and port.
type Endpoint struct {
	Addr  netip.Addr
	Port  uint16
	Local bool // the endpoint runs on this node
}

func (e Endpoint) String() string { return netip.AddrPortFrom(e.Addr, e.Port).String() }

// ServicePort is one port of one Service in one IP family: the unit the proxy programs.
type ServicePort struct {
	Namespace, Name string
	// PortName is the Service port's name ("" for a single unnamed port).
	PortName string
	Protocol corev1.Protocol
	Family   Family
	Port     uint16
	// NodePort is 0 when the Service has none.
	NodePort uint16

	ClusterIPs      []netip.Addr
	ExternalIPs     []netip.Addr // spec.externalIPs
	LoadBalancerIPs []netip.Addr // status.loadBalancer.ingress in VIP mode
	// SourceRanges restricts who may reach the LoadBalancer IPs; empty allows everyone.
	SourceRanges []netip.Prefix

	// ExternalLocal: externalTrafficPolicy Local (only node-local endpoints for external
	// traffic, client source preserved). InternalLocal: internalTrafficPolicy Local.
	ExternalLocal, InternalLocal bool
	HealthCheckNodePort          uint16
	// AffinityTimeout is non-zero for sessionAffinity ClientIP.
	AffinityTimeout time.Duration

	// ClusterEndpoints may serve any traffic; LocalEndpoints are the subset on this node
	// (each computed with its own ready → serving-and-terminating fallback).
	ClusterEndpoints []Endpoint
	LocalEndpoints   []Endpoint
	// LocalReady counts the ready endpoints on this node: what healthCheckNodePort reports, as
	// kube-proxy does. Terminating ones still take traffic when no endpoint is ready, but the
	// load balancer in front must drain the node meanwhile.
	LocalReady int
}

// Key names the ServicePort uniquely and readably: "ns/name/tcp/portname" plus the family.
func (sp *ServicePort) Key() string {
	return fmt.Sprintf("%d-%s", sp.Family, sp.BaseName())
}

// BaseName is "ns/name/proto/port" where port is the port's name, or its number when unnamed.
func (sp *ServicePort) BaseName() string {
	pn := sp.PortName
	if pn == "" {
		pn = fmt.Sprint(sp.Port)
	}
	return fmt.Sprintf("%s/%s/%s/%s", sp.Namespace, sp.Name, strings.ToLower(string(sp.Protocol)), pn)
}

// ExternallyReachable reports whether traffic can arrive from outside the cluster (NodePort,
// externalIPs or LoadBalancer IPs), where externalTrafficPolicy applies.
func (sp *ServicePort) ExternallyReachable() bool {
	return sp.NodePort != 0 || len(sp.ExternalIPs) > 0 || len(sp.LoadBalancerIPs) > 0
}

// Problem is a part of an object that was skipped because it is invalid.
type Problem struct {
	Object runtime.Object // the Service or EndpointSlice, for an Event
	Err    error
}

func (p Problem) Error() string { return p.Err.Error() }

// Build computes the ServicePorts of svc from its EndpointSlices (slices of other Services are
// ignored). Headless and ExternalName Services yield nothing. Invalid parts are skipped and
// reported as problems; the valid rest is still returned.
func Build(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, node Node) ([]ServicePort, []Problem) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		return nil, nil
	}
	var problems []Problem
	bad := func(obj runtime.Object, format string, args ...any) {
		problems = append(problems, Problem{Object: obj, Err: fmt.Errorf(format, args...)})
	}
	ref := svc.Namespace + "/" + svc.Name

	clusterIPs := svc.Spec.ClusterIPs
	if len(clusterIPs) == 0 {
		clusterIPs = []string{svc.Spec.ClusterIP}
	}
	byFamily := map[Family]*ServicePort{}
	var families []Family
	for _, s := range clusterIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			bad(svc, "service %s: clusterIP %q is not an IP address", ref, s)
			continue
		}
		a = a.Unmap()
		f := FamilyOf(a)
		if byFamily[f] == nil {
			byFamily[f] = &ServicePort{}
			families = append(families, f)
		}
		byFamily[f].ClusterIPs = append(byFamily[f].ClusterIPs, a)
	}
	for _, s := range svc.Spec.ExternalIPs {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			bad(svc, "service %s: externalIP %q is not an IP address", ref, s)
			continue
		}
		if t := byFamily[FamilyOf(a.Unmap())]; t != nil {
			t.ExternalIPs = append(t.ExternalIPs, a.Unmap())
		}
	}
	isLB := svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	if isLB {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" || (ing.IPMode != nil && *ing.IPMode != corev1.LoadBalancerIPModeVIP) {
				continue // a hostname, or a load balancer that proxies to the nodes itself
			}
			a, err := netip.ParseAddr(ing.IP)
			if err != nil {
				bad(svc, "service %s: load balancer ingress IP %q is not an IP address", ref, ing.IP)
				continue
			}
			if t := byFamily[FamilyOf(a.Unmap())]; t != nil {
				t.LoadBalancerIPs = append(t.LoadBalancerIPs, a.Unmap())
			}
		}
		for _, s := range svc.Spec.LoadBalancerSourceRanges {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				bad(svc, "service %s: loadBalancerSourceRange %q is not a CIDR", ref, s)
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())).Masked()
			if t := byFamily[FamilyOf(p.Addr())]; t != nil {
				t.SourceRanges = append(t.SourceRanges, p)
			}
		}
	}

	var affinity time.Duration
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = DefaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
			affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	hasNodePorts := svc.Spec.Type == corev1.ServiceTypeNodePort || isLB
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	topo := topologyAware(svc)

	var out []ServicePort
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if proto != corev1.ProtocolTCP && proto != corev1.ProtocolUDP && proto != corev1.ProtocolSCTP {
			bad(svc, "service %s: port %q has unsupported protocol %q", ref, p.Name, proto)
			continue
		}
		if p.Port < 1 || p.Port > 65535 {
			bad(svc, "service %s: port %q: %d is out of range", ref, p.Name, p.Port)
			continue
		}
		var nodePort uint16
		if hasNodePorts && p.NodePort != 0 {
			if p.NodePort < 1 || p.NodePort > 65535 {
				bad(svc, "service %s: port %q: nodePort %d is out of range", ref, p.Name, p.NodePort)
				continue
			}
			nodePort = uint16(p.NodePort)
		}
		for _, f := range families {
			t := byFamily[f]
			sp := ServicePort{
				Namespace: svc.Namespace, Name: svc.Name, PortName: p.Name, Protocol: proto, Family: f,
				Port: uint16(p.Port), NodePort: nodePort,
				ClusterIPs: t.ClusterIPs, ExternalIPs: t.ExternalIPs, LoadBalancerIPs: t.LoadBalancerIPs,
				SourceRanges: t.SourceRanges, InternalLocal: internalLocal, AffinityTimeout: affinity,
			}
			if sp.ExternallyReachable() && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
				sp.ExternalLocal = true
				if isLB && svc.Spec.HealthCheckNodePort > 0 && svc.Spec.HealthCheckNodePort <= 65535 {
					sp.HealthCheckNodePort = uint16(svc.Spec.HealthCheckNodePort)
				}
			}
			all := collectEndpoints(svc, eps, p.Name, proto, f, node, bad)
			sp.ClusterEndpoints = pick(all, func(e candidate) bool { return true }, topo, node)
			sp.LocalEndpoints = pick(all, func(e candidate) bool { return e.Local }, false, node)
			for _, c := range all {
				if c.Local && c.ready {
					sp.LocalReady++
				}
			}
			out = append(out, sp)
		}
	}
	return out, problems
}

func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// candidate is an endpoint with the conditions and hints that decide whether it is used.
type candidate struct {
	Endpoint
	ready, serving, terminating bool
	zones, nodes                []string
	hinted                      bool
}

func collectEndpoints(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, portName string, proto corev1.Protocol,
	f Family, node Node, bad func(runtime.Object, string, ...any)) []candidate {
	want := discoveryv1.AddressTypeIPv4
	if f == IPv6 {
		want = discoveryv1.AddressTypeIPv6
	}
	seen := map[netip.AddrPort]int{}
	var out []candidate
	for _, s := range eps {
		if s.Namespace != svc.Namespace || s.Labels[discoveryv1.LabelServiceName] != svc.Name || s.AddressType != want {
			continue
		}
		ref := s.Namespace + "/" + s.Name
		var port uint16
		found := false
		for _, sp := range s.Ports {
			name, pr := "", corev1.ProtocolTCP
			if sp.Name != nil {
				name = *sp.Name
			}
			if sp.Protocol != nil {
				pr = *sp.Protocol
			}
			if name != portName || pr != proto {
				continue
			}
			if sp.Port == nil || *sp.Port < 1 || *sp.Port > 65535 {
				v := "unset"
				if sp.Port != nil {
					v = fmt.Sprint(*sp.Port)
				}
				bad(s, "endpointslice %s: port %q is out of range (%s)", ref, name, v)
				break
			}
			port, found = uint16(*sp.Port), true
			break
		}
		if !found {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			// Like kube-proxy, only the first address is used: the others are the same pod.
			a, err := netip.ParseAddr(e.Addresses[0])
			// The apiserver lets multicast and broadcast addresses through; DNAT to them
			// would be nonsense.
			if err != nil || FamilyOf(a.Unmap()) != f || !a.Unmap().IsGlobalUnicast() {
				bad(s, "endpointslice %s: endpoint address %q is not a usable %s unicast address", ref, e.Addresses[0], want)
				continue
			}
			c := candidate{Endpoint: Endpoint{Addr: a.Unmap(), Port: port}}
			c.ready = e.Conditions.Ready == nil || *e.Conditions.Ready
			c.serving = c.ready
			if e.Conditions.Serving != nil {
				c.serving = *e.Conditions.Serving
			}
			c.terminating = e.Conditions.Terminating != nil && *e.Conditions.Terminating
			c.Local = e.NodeName != nil && *e.NodeName == node.Name
			if e.Hints != nil {
				for _, z := range e.Hints.ForZones {
					c.zones = append(c.zones, z.Name)
				}
				for _, n := range e.Hints.ForNodes {
					c.nodes = append(c.nodes, n.Name)
				}
				c.hinted = len(c.zones) > 0 || len(c.nodes) > 0
			}
			// The same endpoint may sit in two slices while they are being rebalanced: keep
			// one, preferring the readier copy.
			key := netip.AddrPortFrom(c.Addr, c.Port)
			if i, ok := seen[key]; ok {
				if c.ready && !out[i].ready {
					out[i] = c
				}
				continue
			}
			seen[key] = len(out)
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b candidate) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// pick returns the usable endpoints among those that pass keep: the ready ones (narrowed by
// topology hints when asked), or, when none is ready, those still serving while terminating
// so that a rolling update does not drop connections.
func pick(all []candidate, keep func(candidate) bool, topo bool, node Node) []Endpoint {
	var ready, fallback []candidate
	for _, c := range all {
		if !keep(c) {
			continue
		}
		if c.ready {
			ready = append(ready, c)
		} else if c.serving && c.terminating {
			fallback = append(fallback, c)
		}
	}
	if len(ready) == 0 {
		ready = fallback
	} else if topo {
		ready = byTopology(ready, node)
	}
	out := make([]Endpoint, len(ready))
	for i, c := range ready {
		out[i] = c.Endpoint
	}
	return out
}

// topologyAware reports whether the Service asks for topology-aware routing.
func topologyAware(svc *corev1.Service) bool {
	if td := svc.Spec.TrafficDistribution; td != nil && *td != "" {
		return true
	}
	m := svc.Annotations[corev1.AnnotationTopologyMode]
	if m == "" {
		m = svc.Annotations[corev1.DeprecatedAnnotationTopologyAwareHints]
	}
	return m != "" && !strings.EqualFold(m, "disabled")
}

// byTopology narrows endpoints to those hinted for this node, then for its zone; as in
// kube-proxy, hints are only trusted when every endpoint carries them, and ignored when none
// matches (sending the traffic elsewhere beats dropping it).
func byTopology(eps []candidate, node Node) []candidate {
	for _, c := range eps {
		if !c.hinted {
			return eps
		}
	}
	if node.Name != "" {
		if f := filter(eps, func(c candidate) bool { return slices.Contains(c.nodes, node.Name) }); len(f) > 0 {
			return f
		}
	}
	if node.Zone != "" {
		if f := filter(eps, func(c candidate) bool { return slices.Contains(c.zones, node.Zone) }); len(f) > 0 {
			return f
		}
	}
	return eps
}

func filter(eps []candidate, keep func(candidate) bool) []candidate {
	var out []candidate
	for _, c := range eps {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}
