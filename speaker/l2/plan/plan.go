// Package plan computes, from the cluster's objects, which node answers for each external
// address by layer 2 and on which interfaces. Every speaker runs the same computation over the
// same objects (and the same live set from the failure detector), so they agree on one owner
// per address without coordinating. It reads API types but does no I/O.
package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/pool"
	"github.com/fairlead-lb/fairlead/speaker/election"
)

// The speaker reads these to compute the plan.
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=l2advertisements;ippools,verbs=get;list;watch

// Input is a snapshot of what the plan depends on.
type Input struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Nodes          []*corev1.Node
	Pools          []*v1alpha1.IPPool
	Advertisements []*v1alpha1.L2Advertisement
	// Alive is the failure detector's view; nil treats every node as alive.
	Alive func(node string) bool
	// DefaultClass: Services without spec.loadBalancerClass are Fairlead's.
	DefaultClass bool
}

// Announcement is the decision for one address.
type Announcement struct {
	IP netip.Addr
	// Owner is the node that answers; "" when no node is eligible.
	Owner string
	// Interfaces the owner answers on; empty means every eligible interface.
	Interfaces []string
	// Services holding the address, "namespace/name", sorted.
	Services []string
	// Pool the address belongs to.
	Pool string
}

// Problem is an input the plan could not use; the rest of the plan is unaffected.
type Problem struct {
	// Object is the offending object (Kind, APIVersion, Namespace, Name).
	Object corev1.ObjectReference
	Err    error
}

func (p Problem) Error() string { return p.String() + ": " + p.Err.Error() }

// String names the object: "Kind namespace/name" or "Kind name".
func (p Problem) String() string {
	if p.Object.Namespace != "" {
		return p.Object.Kind + " " + p.Object.Namespace + "/" + p.Object.Name
	}
	return p.Object.Kind + " " + p.Object.Name
}

func ref(kind, apiVersion, namespace, name string) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: kind, APIVersion: apiVersion, Namespace: namespace, Name: name}
}

type compiledPool struct {
	obj    *v1alpha1.IPPool
	ranges []pool.Range
}

// compiledAd is an advertisement that passed the same validation the controller reports in
// its Accepted condition.
type compiledAd = v1alpha1.CompiledL2Advertisement

// Compute returns the decision for every address announced by layer 2.
func Compute(in Input) ([]Announcement, []Problem) {
	var problems []Problem
	pools := compilePools(in.Pools, &problems)
	ads := compileAds(in.Advertisements, &problems)
	nodes := make([]election.Node, 0, len(in.Nodes))
	for _, n := range in.Nodes {
		nodes = append(nodes, election.Node{Name: n.Name, Labels: n.Labels, Ready: nodeReady(n)})
	}
	byIP := map[netip.Addr][]*corev1.Service{}
	for _, svc := range in.Services {
		if !ours(svc, in.DefaultClass) {
			continue
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" || !v1alpha1.Announced(ing) {
				continue
			}
			a, err := netip.ParseAddr(ing.IP)
			if err != nil {
				problems = append(problems, Problem{ref("Service", "v1", svc.Namespace, svc.Name), fmt.Errorf("status ingress IP %q: %w", ing.IP, err)})
				continue
			}
			a = a.Unmap()
			if !slices.Contains(byIP[a], svc) {
				byIP[a] = append(byIP[a], svc)
			}
		}
	}
	endpoints := endpointNodes(in.EndpointSlices)

	var out []Announcement
	for ip, svcs := range byIP {
		p := poolOf(pools, ip)
		if p == nil {
			p = recordedPool(in.Pools, svcs, ip)
		}
		if p == nil {
			continue // not ours to announce: not from a pool we know
		}
		var selected []*compiledAd
		for _, ad := range ads {
			if ad.SelectsPool(p.obj) {
				selected = append(selected, ad)
			}
		}
		if len(selected) == 0 {
			continue // the pool is announced by BGP only, or not at all
		}
		filter := election.Filter{
			Alive: in.Alive,
			Selects: func(n election.Node) bool {
				return slices.ContainsFunc(selected, func(ad *compiledAd) bool { return ad.SelectsNode(n.Labels) })
			},
		}
		// An address shared by several Services must be answered by a node eligible for all of
		// them (the controller only lets compatible Services share).
		var candidates []string
		for i, svc := range svcs {
			s := election.Service{
				LocalOnly:     svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
				EndpointNodes: endpoints[endpointKey{key(svc), family(ip)}],
			}
			el := election.EligibleNodes(nodes, s, filter)
			if i == 0 {
				candidates = el
			} else {
				candidates = slices.DeleteFunc(candidates, func(n string) bool { return !slices.Contains(el, n) })
			}
		}
		a := Announcement{IP: ip, Pool: p.obj.Name}
		for _, svc := range svcs {
			a.Services = append(a.Services, key(svc))
		}
		slices.Sort(a.Services)
		if owner, ok := election.Owner(ip.String(), candidates); ok {
			a.Owner = owner
			a.Interfaces = interfaces(selected, labelsOf(in.Nodes, owner))
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y Announcement) int { return x.IP.Compare(y.IP) })
	return out, problems
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

func key(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func labelsOf(nodes []*corev1.Node, name string) map[string]string {
	for _, n := range nodes {
		if n.Name == name {
			return n.Labels
		}
	}
	return nil
}

func family(a netip.Addr) discoveryv1.AddressType {
	if a.Is4() {
		return discoveryv1.AddressTypeIPv4
	}
	return discoveryv1.AddressTypeIPv6
}

type endpointKey struct {
	service string
	family  discoveryv1.AddressType
}

// endpointNodes maps each Service and address family to the nodes hosting a ready endpoint,
// which is where externalTrafficPolicy: Local traffic may go.
func endpointNodes(slices []*discoveryv1.EndpointSlice) map[endpointKey]map[string]bool {
	out := map[endpointKey]map[string]bool{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := endpointKey{s.Namespace + "/" + name, s.AddressType}
		for _, ep := range s.Endpoints {
			// A nil Ready means ready (the API's documented default).
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

func compilePools(in []*v1alpha1.IPPool, problems *[]Problem) []compiledPool {
	var out []compiledPool
	for _, p := range in {
		rs, err := pool.ParseRanges(p.Spec.Addresses)
		if err != nil {
			*problems = append(*problems, Problem{ref("IPPool", v1alpha1.GroupVersion.String(), "", p.Name), err})
			continue
		}
		out = append(out, compiledPool{p, rs})
	}
	return out
}

// recordedPool is the pool the controller recorded on the Services for an address no pool
// covers any more (the pool shrank or was deleted while they held it): they keep the address,
// so it stays announced as that pool's. A pool that is gone is known by its name only.
func recordedPool(in []*v1alpha1.IPPool, svcs []*corev1.Service, a netip.Addr) *compiledPool {
	if _, special := pool.Special(a); special {
		return nil // never announced, whatever a Service says
	}
	for _, svc := range svcs {
		n := len(svc.Status.LoadBalancer.Ingress)
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(ing.IP); err != nil || ip.Unmap() != a {
				continue
			}
			name := v1alpha1.AllocatedFromPool(svc.Annotations, i, n)
			if name == "" {
				continue
			}
			for _, p := range in {
				if p.Name == name {
					return &compiledPool{obj: p}
				}
			}
			return &compiledPool{obj: &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}}
		}
	}
	return nil
}

func poolOf(pools []compiledPool, a netip.Addr) *compiledPool {
	for i := range pools {
		for _, r := range pools[i].ranges {
			if r.Contains(a) {
				return &pools[i]
			}
		}
	}
	return nil
}

// compileAds keeps the valid advertisements. An invalid one is skipped whole (the controller
// marks it Accepted=False), never guessed at: the others are announced as if it were absent.
func compileAds(in []*v1alpha1.L2Advertisement, problems *[]Problem) []*compiledAd {
	var out []*compiledAd
	for _, ad := range in {
		c, err := ad.Compile()
		if err != nil {
			*problems = append(*problems, Problem{ref("L2Advertisement", v1alpha1.GroupVersion.String(), "", ad.Name), err})
			continue
		}
		out = append(out, c)
	}
	return out
}

// interfaces merges the interface lists of the advertisements that select the owner: any of
// them allowing every interface allows every interface.
func interfaces(ads []*compiledAd, nodeLabels map[string]string) []string {
	var out []string
	for _, ad := range ads {
		if !ad.SelectsNode(nodeLabels) {
			continue
		}
		if len(ad.Object.Spec.Interfaces) == 0 {
			return nil
		}
		out = append(out, ad.Object.Spec.Interfaces...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// String renders the plan compactly for logs.
func String(as []Announcement) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s→%s", a.IP, a.Owner)
	}
	return b.String()
}
