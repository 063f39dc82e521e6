// Package eip moves Elastic IPs to the node elected for them. The controller gives a Service
// an Elastic IP from a pool with spec.aws.elasticIPs; every speaker computes, with layer 2's
// rule (speaker/election: Ready, its speaker alive in the member list, not excluded, an
// endpoint on the node under externalTrafficPolicy: Local, rendezvous hashing on the
// address), which node owns it, and
// the owner associates the address with its own network interface's private address. On
// failover the new owner's association takes the address over (AssociateAddress with
// AllowReassociation): an API call instead of gratuitous ARP.
package eip

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/speaker/election"
)

// The speaker reads these to elect owners.
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Input is a snapshot of what the plan depends on.
type Input struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Nodes          []*corev1.Node
	Pools          []*v1alpha1.IPPool
	// DefaultClass: Services without spec.loadBalancerClass are Fairlead's.
	DefaultClass bool
	// Held maps the Elastic IPs this cluster holds (tagged in AWS) to the Service each is
	// tagged for. An address counts when the Service's pool has spec.aws.elasticIPs (the
	// controller's way) or when it is tagged for that very Service (fairlead-ccm's aws-eip
	// backend, where no pool is named).
	Held map[netip.Addr]string
	// Alive reports whether the failure detector (speaker/members) sees the node's speaker:
	// a node whose speaker died keeps its Ready condition for 40 s or more, and its address
	// must move before that. Nil treats every speaker as alive.
	Alive func(node string) bool
}

// Assignment is the decision for one Elastic IP.
type Assignment struct {
	IP netip.Addr
	// Owner is the node whose interface gets the address; "" when no node is eligible.
	Owner string
	// Service holding the address, "namespace/name".
	Service string
	// Ref points at the Service, for Events.
	Ref corev1.ObjectReference
}

// Host is what a node needs to be an owner: its instance and the private address the Elastic
// IP is associated with.
type Host struct {
	InstanceID string
	PrivateIP  netip.Addr
}

// HostOf returns where an Elastic IP owned by n goes, and false for a node that cannot hold
// one (no AWS providerID yet, no IPv4 InternalIP). Such nodes are not candidates: every
// speaker sees the same Node objects, so they all leave out the same ones.
func HostOf(n *corev1.Node) (Host, bool) {
	id, err := fairaws.InstanceID(n.Spec.ProviderID)
	if err != nil {
		return Host{}, false
	}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Unmap().Is4() {
			return Host{InstanceID: id, PrivateIP: ip.Unmap()}, true
		}
	}
	return Host{}, false
}

// Plan returns the owner of every Elastic IP a Service holds.
func Plan(in Input) []Assignment {
	elastic := elasticPools(in.Pools)
	var nodes []election.Node
	for _, n := range in.Nodes {
		if _, ok := HostOf(n); ok {
			nodes = append(nodes, election.Node{Name: n.Name, Labels: n.Labels, Ready: ready(n)})
		}
	}
	endpoints := endpointNodes(in.EndpointSlices)
	var out []Assignment
	for _, svc := range in.Services {
		if !ours(svc, in.DefaultClass) {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		fromPool := elastic[poolOf(svc)]
		// Computed for the Service's first Elastic IP only: most addresses are not one.
		var candidates []string
		elected := false
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(ing.IP)
			if err != nil || !ip.Unmap().Is4() || !v1alpha1.Announced(ing) {
				continue
			}
			ip = ip.Unmap()
			if !fromPool && in.Held[ip] != key {
				continue
			}
			if !elected {
				s := election.Service{
					LocalOnly:     svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
					EndpointNodes: endpoints[key],
				}
				candidates, elected = election.EligibleNodes(nodes, s, election.Filter{Alive: in.Alive}), true
			}
			owner, _ := election.Owner(ip.String(), candidates)
			ref := corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID}
			out = append(out, Assignment{IP: ip, Owner: owner, Service: key, Ref: ref})
		}
	}
	slices.SortFunc(out, func(a, b Assignment) int { return a.IP.Compare(b.IP) })
	return out
}

// Unexplained returns the IPv4 ingress addresses of Fairlead's Services that no Elastic IP
// pool accounts for: whether they are Elastic IPs only AWS' tags can tell (Input.Held).
func Unexplained(in Input) []netip.Addr {
	elastic := elasticPools(in.Pools)
	var out []netip.Addr
	for _, svc := range in.Services {
		if !ours(svc, in.DefaultClass) || elastic[poolOf(svc)] {
			continue
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(ing.IP); err == nil && ip.Unmap().Is4() {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// elasticPools names the pools of Elastic IPs. A pool being deleted still counts: its Services
// keep their addresses until released.
func elasticPools(pools []*v1alpha1.IPPool) map[string]bool {
	out := map[string]bool{}
	for _, p := range pools {
		if p.ElasticIPs() != nil {
			out[p.Name] = true
		}
	}
	return out
}

func ours(svc *corev1.Service, defaultClass bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return defaultClass
	}
	return *svc.Spec.LoadBalancerClass == v1alpha1.LoadBalancerClass
}

// poolOf is the pool the Service names, as the controller reads it.
func poolOf(svc *corev1.Service) string {
	for _, k := range append([]string{v1alpha1.AnnotationPool}, v1alpha1.MetalLBAnnotationPool...) {
		if v, ok := svc.Annotations[k]; ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// endpointNodes maps "namespace/name" to the nodes hosting a ready IPv4 endpoint of it.
func endpointNodes(in []*discoveryv1.EndpointSlice) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, s := range in {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		k := s.Namespace + "/" + name
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if out[k] == nil {
				out[k] = map[string]bool{}
			}
			out[k][*ep.NodeName] = true
		}
	}
	return out
}
