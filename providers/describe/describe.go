// Package describe translates a LoadBalancer Service, the cluster's Nodes and the Service's
// EndpointSlices into the plain description providers work from (providers.Service). The
// controller's Service reconciler (for every provider, the local pools included) and the
// cloud-controller-manager adapter both use it, so a Service means the same thing to a
// provider whichever way it arrives.
package describe

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/fairlead-lb/fairlead/providers"
)

// annotationSourceRanges is the older way of setting spec.loadBalancerSourceRanges, still
// read by the upstream cloud providers; the field wins when both are set.
const annotationSourceRanges = "service.beta.kubernetes.io/load-balancer-source-ranges"

// Service describes svc for a provider. nsLabels are the labels of its namespace (nil if not
// needed), nodes every Node of the cluster (those that may not receive traffic are left out
// here), slices the Service's EndpointSlices (nil when the provider sends traffic to nodes
// only). The error is the Service's fault and names the field.
func Service(svc *corev1.Service, nsLabels map[string]string, nodes []*corev1.Node, slices []*discoveryv1.EndpointSlice) (*providers.Service, error) {
	d := Spec(svc, nsLabels)
	ranges, err := SourceRanges(svc)
	if err != nil {
		return nil, err
	}
	d.SourceRanges = ranges
	d.Nodes = Nodes(nodes)
	endpoints := readyEndpoints(slices)
	for i, p := range d.Ports {
		d.Ports[i].Endpoints = endpoints[portKey{p.Name, p.Protocol}]
	}
	return d, nil
}

// Spec describes what svc itself asks for, without its source ranges, Nodes or endpoints:
// all the local pools need, and it cannot fail (their bad input is found where it is read).
func Spec(svc *corev1.Service, nsLabels map[string]string) *providers.Service {
	d := &providers.Service{
		Namespace:           svc.Namespace,
		Name:                svc.Name,
		UID:                 string(svc.UID),
		Annotations:         svc.Annotations,
		Labels:              svc.Labels,
		NamespaceLabels:     nsLabels,
		LoadBalancerIP:      svc.Spec.LoadBalancerIP,
		LocalTraffic:        svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		HealthCheckNodePort: svc.Spec.HealthCheckNodePort,
		Selector:            svc.Spec.Selector,
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			d.StatusIPs = append(d.StatusIPs, a.Unmap())
		}
	}
	for _, f := range svc.Spec.IPFamilies {
		d.Families = append(d.Families, string(f))
	}
	if len(d.Families) == 0 {
		d.Families = []string{string(corev1.IPv4Protocol)}
	}
	switch p := svc.Spec.IPFamilyPolicy; {
	case p == nil || *p == corev1.IPFamilyPolicySingleStack:
		d.Families = d.Families[:1]
	case *p == corev1.IPFamilyPolicyPreferDualStack:
		d.PreferDualStack = true
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		d.Ports = append(d.Ports, providers.Port{Name: p.Name, Protocol: proto, Port: p.Port, NodePort: p.NodePort})
	}
	return d
}

// SourceRanges returns spec.loadBalancerSourceRanges, or the older annotation's ranges.
func SourceRanges(svc *corev1.Service) ([]netip.Prefix, error) {
	field, raw := "spec.loadBalancerSourceRanges", svc.Spec.LoadBalancerSourceRanges
	if len(raw) == 0 {
		if v := strings.TrimSpace(svc.Annotations[annotationSourceRanges]); v != "" {
			field, raw = "annotation "+annotationSourceRanges, strings.Split(v, ",")
		}
	}
	var out []netip.Prefix
	for _, r := range raw {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			return nil, providers.Errorf(providers.ReasonInvalidService, "%s: %q is not a CIDR", field, r)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Nodes returns the nodes that may receive load balancer traffic: ready (NodeReady), not
// being deleted, and not labelled node.kubernetes.io/exclude-from-external-load-balancers. Sorted by name.
func Nodes(nodes []*corev1.Node) []providers.Node {
	var out []providers.Node
	for _, n := range nodes {
		if Eligible(n) {
			out = append(out, Node(n))
		}
	}
	slices.SortFunc(out, func(a, b providers.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Node describes n with its internal addresses, whether or not it may receive traffic.
func Node(n *corev1.Node) providers.Node {
	pn := providers.Node{Name: n.Name, ProviderID: n.Spec.ProviderID, Labels: n.Labels}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			pn.Addresses = append(pn.Addresses, ip.Unmap())
		}
	}
	return pn
}

// Eligible reports whether n may receive load balancer traffic.
func Eligible(n *corev1.Node) bool {
	if !n.DeletionTimestamp.IsZero() {
		return false
	}
	if _, excluded := n.Labels[corev1.LabelNodeExcludeBalancers]; excluded {
		return false
	}
	return NodeReady(n)
}

// NodeReady says whether n's Ready condition lets it carry load balancer traffic: when its
// kubelet says Ready, and also when the condition is Unknown because kube-controller-manager
// stopped hearing from a kubelet that had reported. It is the one reading of the condition
// for the speakers (announcing, election) and the providers (NLB targets, Elastic IP
// candidates), so a node one of them keeps the other does not drop.
//
// Unknown says nothing about the node's network: after every apiserver outage longer than the
// node monitor grace period (50 s), the node lifecycle controller marks the nodes whose
// leases it saw expire Unknown for a moment before their renewals land. Withdrawing there
// moved layer 2 addresses and took BGP routes off the router under live traffic (test/soak),
// and would deregister every NLB target. A node that is really gone is found without the
// apiserver: by the member list (layer 2, Elastic IPs), its BGP session's hold timer or BFD,
// and the NLB's own health checks. Ready=False, the kubelet's own word, and a node that never
// reported (NodeStatusNeverUpdated) still count as not ready.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			switch c.Status {
			case corev1.ConditionTrue:
				return true
			case corev1.ConditionUnknown:
				return c.Reason != nodeStatusNeverUpdated
			}
			return false
		}
	}
	return false
}

// nodeStatusNeverUpdated is the reason kube-controller-manager gives a Ready condition it adds
// to a Node whose kubelet never posted one (pkg/controller/nodelifecycle).
const nodeStatusNeverUpdated = "NodeStatusNeverUpdated"

type portKey struct{ name, protocol string }

// readyEndpoints maps each (port name, protocol) to the ready endpoints' addresses and ports,
// sorted. Serving-but-terminating endpoints are left out: a load balancer registering them
// would send new connections to pods on their way out.
func readyEndpoints(in []*discoveryv1.EndpointSlice) map[portKey][]netip.AddrPort {
	out := map[portKey][]netip.AddrPort{}
	for _, s := range in {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		for _, p := range s.Ports {
			if p.Port == nil {
				continue
			}
			k := portKey{protocol: string(corev1.ProtocolTCP)}
			if p.Name != nil {
				k.name = *p.Name
			}
			if p.Protocol != nil {
				k.protocol = string(*p.Protocol)
			}
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, a := range ep.Addresses {
					ip, err := netip.ParseAddr(a)
					if err != nil {
						continue
					}
					out[k] = append(out[k], netip.AddrPortFrom(ip.Unmap(), uint16(*p.Port)))
				}
			}
		}
	}
	for k, v := range out {
		slices.SortFunc(v, func(a, b netip.AddrPort) int { return a.Compare(b) })
		out[k] = slices.Compact(v)
	}
	return out
}

// Key is the "namespace/name" providers record a Service under.
func Key(svc *corev1.Service) string { return fmt.Sprintf("%s/%s", svc.Namespace, svc.Name) }
