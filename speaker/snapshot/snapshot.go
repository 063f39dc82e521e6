// Package snapshot compiles the API objects the speaker's announcers depend on into one
// immutable value: which Services are Fairlead's and their external addresses, the pool of each
// address, the nodes, which nodes host endpoints of each Service per address family, the
// compiled pools and layer 2 advertisements, and the BGP objects. Layer 2, BGP and Elastic IPs
// are pure functions of a Snapshot, so they cannot disagree about which Services are ours,
// where an address comes from or which nodes may announce it. Build does no I/O; source.go
// feeds it from the speaker's informers.
package snapshot

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/describe"
	"github.com/fairlead-lb/fairlead/providers/pool"
	"github.com/fairlead-lb/fairlead/speaker/election"
)

// Input is everything a Snapshot is built from, as the informers hold it.
type Input struct {
	Services          []*corev1.Service
	EndpointSlices    []*discoveryv1.EndpointSlice
	Nodes             []*corev1.Node
	Pools             []*v1alpha1.IPPool
	L2Advertisements  []*v1alpha1.L2Advertisement
	BGPPeers          []*v1alpha1.BGPPeer
	BGPAdvertisements []*v1alpha1.BGPAdvertisement
	BFDProfiles       []*v1alpha1.BFDProfile
	Communities       []*v1alpha1.Community
	// DefaultClass: Services without spec.loadBalancerClass are Fairlead's (the speaker's
	// --default-class, which must match the controller's).
	DefaultClass bool
}

// Snapshot is the compiled state. It is never modified after Build: consumers share it.
type Snapshot struct {
	// Services are Fairlead's LoadBalancer Services that have at least one announced address,
	// sorted by Key.
	Services []*Service
	// Nodes are every Node, sorted by name, as election sees them.
	Nodes []election.Node
	// NodeObjects are the Nodes by name, for what election does not carry (addresses,
	// providerID).
	NodeObjects map[string]*corev1.Node
	// Pools are the pools whose addresses parse, in the order an address is looked up in them.
	Pools []*Pool
	// PoolObjects are every IPPool by name, valid or not.
	PoolObjects map[string]*v1alpha1.IPPool
	// L2Advertisements are the valid layer 2 advertisements (v1alpha1's Compile, the one the
	// controller reports in Accepted), sorted by name.
	L2Advertisements []*v1alpha1.CompiledL2Advertisement

	// The BGP objects, sorted by name. Whether a peer applies depends on the node that reads
	// it (its Secret, devices, addresses), so speaker/bgp compiles peers for its own node, and
	// advertisements with v1alpha1's Compile (the controller's Accepted) beside them.
	BGPPeers          []*v1alpha1.BGPPeer
	BGPAdvertisements []*v1alpha1.BGPAdvertisement
	BFDProfiles       []*v1alpha1.BFDProfile
	Communities       []*v1alpha1.Community

	// Problems are inputs that could not be used; everything else is unaffected.
	Problems []Problem

	byKey map[string]*Service
}

// Service is one of Fairlead's Services as the announcers need it.
type Service struct {
	Key    string // namespace/name
	Object *corev1.Service
	// LocalOnly is externalTrafficPolicy: Local.
	LocalOnly bool
	// Addrs are the announced addresses (ipMode Proxy ones are a load balancer's to answer),
	// in status order, without duplicates.
	Addrs []Addr
	// endpoints maps each family to the nodes its traffic may be sent to (endpointRule).
	endpoints map[Family]map[string]bool
}

// Addr is one external address of a Service and the pool it belongs to.
type Addr struct {
	IP netip.Addr
	// Pool names the address's pool: the pool whose range contains it, else the pool the
	// controller recorded on the Service (a pool that shrank or went away while the Service
	// held the address); "" when neither says, and such an address is announced by no one.
	Pool string
}

// Family is an address family as EndpointSlices name it.
type Family = discoveryv1.AddressType

// Families.
const (
	IPv4 = discoveryv1.AddressTypeIPv4
	IPv6 = discoveryv1.AddressTypeIPv6
)

// FamilyOf returns a's family.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// EndpointNodes returns the nodes hosting endpoints of the Service in family f that traffic may
// go to (see endpointRule). Callers must not modify it.
func (s *Service) EndpointNodes(f Family) map[string]bool { return s.endpoints[f] }

// Election is the Service as election sees it for addresses of family f.
func (s *Service) Election(f Family) election.Service {
	return election.Service{LocalOnly: s.LocalOnly, EndpointNodes: s.endpoints[f]}
}

// Pool is an IPPool whose addresses parsed.
type Pool struct {
	Object *v1alpha1.IPPool
	Ranges []pool.Range
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.Object.Name }

// Problem is an input the snapshot could not use.
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

// Service returns the Service of key "namespace/name", or nil when it is not ours (or has no
// announced address).
func (s *Snapshot) Service(key string) *Service { return s.byKey[key] }

// Pool returns the valid pool of that name, or nil.
func (s *Snapshot) Pool(name string) *Pool {
	for _, p := range s.Pools {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Ours reports whether svc is Fairlead's to announce: a LoadBalancer Service of Fairlead's
// class, or of no class when defaultClass is set. Services of any other class belong to
// another implementation, and announcing their addresses would steal them.
func Ours(svc *corev1.Service, defaultClass bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return defaultClass
	}
	return *svc.Spec.LoadBalancerClass == v1alpha1.LoadBalancerClass
}

// Build compiles in.
func Build(in Input) *Snapshot {
	s := &Snapshot{
		NodeObjects: map[string]*corev1.Node{},
		PoolObjects: map[string]*v1alpha1.IPPool{},
		byKey:       map[string]*Service{},
	}
	for _, n := range in.Nodes {
		s.NodeObjects[n.Name] = n
		s.Nodes = append(s.Nodes, election.Node{Name: n.Name, Labels: n.Labels, Ready: describe.NodeReady(n)})
	}
	slices.SortFunc(s.Nodes, func(a, b election.Node) int { return cmp.Compare(a.Name, b.Name) })
	s.compilePools(in.Pools)
	s.compileL2Advertisements(in.L2Advertisements)
	s.BGPPeers = sortedByName(in.BGPPeers)
	s.BGPAdvertisements = sortedByName(in.BGPAdvertisements)
	s.BFDProfiles = sortedByName(in.BFDProfiles)
	s.Communities = sortedByName(in.Communities)

	endpoints := endpointRule(in.EndpointSlices)
	for _, svc := range in.Services {
		if !Ours(svc, in.DefaultClass) {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		out := &Service{Key: key, Object: svc, LocalOnly: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			endpoints: map[Family]map[string]bool{IPv4: endpoints[endpointKey{key, IPv4}], IPv6: endpoints[endpointKey{key, IPv6}]}}
		n := len(svc.Status.LoadBalancer.Ingress)
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" || !v1alpha1.Announced(ing) {
				continue
			}
			a, err := netip.ParseAddr(ing.IP)
			if err != nil {
				s.Problems = append(s.Problems, Problem{ref("Service", "v1", svc.Namespace, svc.Name), fmt.Errorf("status ingress IP %q: %w", ing.IP, err)})
				continue
			}
			a = a.Unmap()
			if slices.ContainsFunc(out.Addrs, func(x Addr) bool { return x.IP == a }) {
				continue
			}
			out.Addrs = append(out.Addrs, Addr{IP: a, Pool: s.poolOf(a, v1alpha1.AllocatedFromPool(svc.Annotations, i, n))})
		}
		if len(out.Addrs) == 0 {
			continue
		}
		s.Services = append(s.Services, out)
		s.byKey[key] = out
	}
	slices.SortFunc(s.Services, func(a, b *Service) int { return cmp.Compare(a.Key, b.Key) })
	return s
}

// poolOf finds the pool of a: the pool whose range contains it, else recorded (the pool the
// controller wrote on the Service). A special-purpose address (loopback, multicast, ...) is
// never announced, whatever a Service says.
func (s *Snapshot) poolOf(a netip.Addr, recorded string) string {
	for _, p := range s.Pools {
		for _, r := range p.Ranges {
			if r.Contains(a) {
				return p.Name()
			}
		}
	}
	if _, special := pool.Special(a); special {
		return ""
	}
	return recorded
}

// compilePools keeps the pools whose addresses parse, oldest first: of two overlapping pools
// the controller refuses the younger (controllers/ipam), so an address in both is the older
// one's. The controller reports invalid pools in their status; here they only make a Problem.
func (s *Snapshot) compilePools(in []*v1alpha1.IPPool) {
	for _, p := range in {
		s.PoolObjects[p.Name] = p
		rs, err := pool.ParseRanges(p.Spec.Addresses)
		if err != nil {
			s.Problems = append(s.Problems, Problem{ref("IPPool", v1alpha1.GroupVersion.String(), "", p.Name), err})
			continue
		}
		s.Pools = append(s.Pools, &Pool{Object: p, Ranges: rs})
	}
	slices.SortFunc(s.Pools, func(a, b *Pool) int {
		ta, tb := a.Object.CreationTimestamp, b.Object.CreationTimestamp
		if !ta.Equal(&tb) {
			if ta.Before(&tb) {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name(), b.Name())
	})
}

// compileL2Advertisements keeps the valid advertisements. An invalid one is skipped whole (the
// controller marks it Accepted=False), never guessed at: the others apply as if it were absent.
func (s *Snapshot) compileL2Advertisements(in []*v1alpha1.L2Advertisement) {
	for _, ad := range sortedByName(in) {
		c, err := ad.Compile()
		if err != nil {
			s.Problems = append(s.Problems, Problem{ref("L2Advertisement", v1alpha1.GroupVersion.String(), "", ad.Name), err})
			continue
		}
		s.L2Advertisements = append(s.L2Advertisements, c)
	}
}

type endpointKey struct {
	service string
	family  Family
}

// endpointRule maps each Service and family to the nodes that may attract its external traffic
// under externalTrafficPolicy: Local: the nodes hosting a ready endpoint; when the Service has
// no ready endpoint of that family anywhere, the nodes hosting one that is terminating but
// still serving.
//
// This is kube-proxy's rule for the endpoints of a Service as a whole (its fallback for
// cluster traffic, and the conditions as it reads them: ready and serving default to true,
// terminating to false), and what a cloud load balancer in front of kube-proxy does: the
// health check node port counts only ready endpoints, so a node whose pods are all terminating
// is drained while others still have ready ones, and when none has any the balancer fails
// open to those still serving. Applying the fallback per node instead would keep attracting
// traffic to terminating pods throughout a rolling update; not falling back at all would
// withdraw the address while the last pods still answer. Per family, because an IPv6 address
// is forwarded only to IPv6 endpoints.
func endpointRule(in []*discoveryv1.EndpointSlice) map[endpointKey]map[string]bool {
	ready := map[endpointKey]map[string]bool{}
	terminating := map[endpointKey]map[string]bool{}
	add := func(m map[endpointKey]map[string]bool, k endpointKey, n string) {
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		m[k][n] = true
	}
	for _, es := range in {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" || (es.AddressType != IPv4 && es.AddressType != IPv6) {
			continue
		}
		k := endpointKey{es.Namespace + "/" + name, es.AddressType}
		for _, ep := range es.Endpoints {
			if ep.NodeName == nil || *ep.NodeName == "" {
				continue
			}
			c := ep.Conditions
			isReady := c.Ready == nil || *c.Ready
			serving := isReady
			if c.Serving != nil {
				serving = *c.Serving
			}
			switch {
			case isReady:
				add(ready, k, *ep.NodeName)
			case serving && c.Terminating != nil && *c.Terminating:
				add(terminating, k, *ep.NodeName)
			}
		}
	}
	for k, nodes := range terminating {
		if len(ready[k]) == 0 {
			ready[k] = nodes
		}
	}
	return ready
}

func ref(kind, apiVersion, namespace, name string) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: kind, APIVersion: apiVersion, Namespace: namespace, Name: name}
}

func sortedByName[T any, P interface {
	*T
	GetName() string
}](in []P) []P {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b P) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}
