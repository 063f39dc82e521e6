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

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// The speaker reads these to elect owners.
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Input is what the plan depends on.
type Input struct {
	// Snapshot is the speaker's view of the cluster (speaker/snapshot): which Services are
	// ours, their addresses, the Nodes, the endpoint nodes and the pools.
	Snapshot *snapshot.Snapshot
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
	snap := in.Snapshot
	elastic := elasticPools(snap)
	var nodes []election.Node
	for _, n := range snap.Nodes {
		if _, ok := HostOf(snap.NodeObjects[n.Name]); ok {
			nodes = append(nodes, n)
		}
	}
	var eligible *election.Eligibility // the same for every Service: made once, when needed
	var out []Assignment
	for _, svc := range snap.Services {
		fromPool := elastic[poolOf(svc.Object)]
		// Computed for the Service's first Elastic IP only: most addresses are not one.
		var candidates []string
		elected := false
		for _, a := range svc.Addrs {
			// Elastic IPs are IPv4 only (AWS has no IPv6 Elastic IPs).
			if !a.IP.Is4() || (!fromPool && in.Held[a.IP] != svc.Key) {
				continue
			}
			if !elected {
				if eligible == nil {
					eligible = election.NewEligibility(nodes, election.Filter{Alive: in.Alive})
				}
				candidates, elected = eligible.For(svc.Election(snapshot.IPv4)), true
			}
			owner, _ := election.Owner(a.IP.String(), candidates)
			o := svc.Object
			ref := corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: o.Namespace, Name: o.Name, UID: o.UID}
			out = append(out, Assignment{IP: a.IP, Owner: owner, Service: svc.Key, Ref: ref})
		}
	}
	slices.SortFunc(out, func(a, b Assignment) int { return a.IP.Compare(b.IP) })
	return out
}

// Unexplained returns the IPv4 addresses of Fairlead's Services that no Elastic IP pool
// accounts for: whether they are Elastic IPs only AWS' tags can tell (Input.Held).
func Unexplained(in Input) []netip.Addr {
	elastic := elasticPools(in.Snapshot)
	var out []netip.Addr
	for _, svc := range in.Snapshot.Services {
		if elastic[poolOf(svc.Object)] {
			continue
		}
		for _, a := range svc.Addrs {
			if a.IP.Is4() {
				out = append(out, a.IP)
			}
		}
	}
	return out
}

// elasticPools names the pools of Elastic IPs. A pool being deleted still counts: its Services
// keep their addresses until released.
func elasticPools(snap *snapshot.Snapshot) map[string]bool {
	out := map[string]bool{}
	for _, p := range snap.PoolObjects {
		if p.ElasticIPs() != nil {
			out[p.Name] = true
		}
	}
	return out
}

// poolOf is the pool the Service asks for, as the controller reads it: an Elastic IP pool's
// addresses are in no range, so the pool an address belongs to says nothing here.
func poolOf(svc *corev1.Service) string {
	for _, k := range append([]string{v1alpha1.AnnotationPool}, v1alpha1.MetalLBAnnotationPool...) {
		if v, ok := svc.Annotations[k]; ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
