// Package bgp announces Service addresses over BGP. It embeds GoBGP (one in-process BgpServer
// per session) and converges the sessions and paths to a desired state computed from the
// speaker's snapshot (speaker/snapshot: BGPPeers, BGPAdvertisements, pools, Services, their
// endpoint nodes, Nodes).
//
// The package has three parts: desired.go turns the snapshot into the sessions and paths this
// node wants (pure, table tested); sessions.go converges GoBGP to that; and controller.go feeds
// each new snapshot in and publishes the sessions' state (BGPPeer status, Events, metrics,
// ServiceAnnouncement entries through speaker/announcements).
package bgp

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// Defaults of a BGPPeer, as RFC 4271 suggests and FRR and BIRD use.
const (
	defaultHoldTime    = 90 * time.Second
	defaultRestartTime = 120 * time.Second
	defaultPort        = 179
	// defaultConnectTime is GoBGP's ConnectRetry timer unless a BGPPeer sets connectTime: a
	// failed connection is retried after 1 to 2 times this (jittered).
	defaultConnectTime = 5 * time.Second
)

// SessionConfig is everything that defines one GoBGP session. Two equal configs are the same
// session: any difference restarts it.
type SessionConfig struct {
	PeerAddress netip.Addr
	PeerASN     uint32 // 0 with DynamicASN
	// DynamicASN is "internal" or "external": any ASN of that kind is accepted from the router.
	DynamicASN    string
	LocalASN      uint32
	Port          uint16
	HoldTime      time.Duration
	Keepalive     time.Duration
	Multihop      uint8 // 0: directly connected
	SourceAddress netip.Addr
	Password      string
	RouterID      netip.Addr
	// GracefulRestart is the restart time announced to the peer; 0 disables graceful restart.
	GracefulRestart time.Duration
	ConnectRetry    time.Duration
	VRF             string // device the socket is bound to; "" none
	// DisableMP: the session carries its own address family only.
	DisableMP bool
}

// IBGP reports whether the session is internal (same AS on both sides).
func (c SessionConfig) IBGP() bool {
	if c.DynamicASN != "" {
		return c.DynamicASN == v1alpha1.DynamicASNInternal
	}
	return c.PeerASN == c.LocalASN
}

// Carries reports whether the session may carry prefixes of addr's family.
func (c SessionConfig) Carries(addr netip.Addr) bool {
	return !c.DisableMP || addr.Is4() == c.PeerAddress.Is4()
}

// Path is one prefix to advertise on one session, with its attributes.
type Path struct {
	Prefix netip.Prefix
	// NextHop is the node's address of the prefix's family when it differs from the session's
	// family; invalid means "the session's own local address" (next-hop-self).
	NextHop          netip.Addr
	LocalPref        *uint32
	Communities      []uint32 // sorted, unique
	LargeCommunities []LargeCommunity
}

func (p Path) equal(o Path) bool {
	return p.Prefix == o.Prefix && p.NextHop == o.NextHop &&
		((p.LocalPref == nil && o.LocalPref == nil) || (p.LocalPref != nil && o.LocalPref != nil && *p.LocalPref == *o.LocalPref)) &&
		slices.Equal(p.Communities, o.Communities) && slices.Equal(p.LargeCommunities, o.LargeCommunities)
}

// Session is the desired state of one BGPPeer on this node. A session with Invalid set is not
// run; Invalid says why (and ends up in the peer's status).
type Session struct {
	Peer    string
	Config  SessionConfig
	BFD     BFDSettings // bfd.go
	Paths   map[netip.Prefix]Path
	Invalid string
	// Carries says which Service address each path advertises (an aggregate carries
	// several): what the node reports in ServiceAnnouncements once the path is out.
	Carries map[ServiceAddr]netip.Prefix
}

// ServiceAddr is one external address of one Service (namespace/name).
type ServiceAddr struct {
	Service string
	Addr    netip.Addr
}

// Node is what the builder needs to know about this node.
type Node struct {
	election.Node
	// Addresses are the node's InternalIPs (ExternalIPs when it has none), at most one per
	// family: they are the next hops for prefixes of the other family than a session's.
	IPv4, IPv6 netip.Addr
}

// Service is one LoadBalancer Service's external addresses of one family and what election
// needs to decide whether this node may announce them (ServicesOf).
type Service struct {
	Key   string // namespace/name
	Addrs []netip.Addr
	// Pools are the pools of Addrs (one per address, "" where none is known), as the snapshot
	// found them.
	Pools []string
	election.Service
}

// ServicesOf returns the snapshot's Services as Desired reads them: one per Service and
// address family, since the nodes that may advertise an address depend on the endpoints of its
// family.
func ServicesOf(snap *snapshot.Snapshot) []Service {
	var out []Service
	for _, svc := range snap.Services {
		for _, f := range []snapshot.Family{snapshot.IPv4, snapshot.IPv6} {
			s := Service{Key: svc.Key, Service: svc.Election(f)}
			for _, a := range svc.Addrs {
				if snapshot.FamilyOf(a.IP) == f {
					s.Addrs = append(s.Addrs, a.IP)
					s.Pools = append(s.Pools, a.Pool)
				}
			}
			if len(s.Addrs) > 0 {
				out = append(out, s)
			}
		}
	}
	return out
}

// Problem is bad input found while building: reported as an Event on the object and logged,
// never fatal to the rest.
type Problem struct {
	Kind, Name string // BGPPeer, BGPAdvertisement or Community
	Reason     string
	Message    string
}

// Input is a snapshot of everything the desired state depends on.
type Input struct {
	Node           Node
	Peers          []*v1alpha1.BGPPeer
	Advertisements []*v1alpha1.BGPAdvertisement
	// Pools are read for their labels (ipPoolSelectors) and prefixes (aggregation lengths);
	// Services carry their addresses' pools.
	Pools       []*v1alpha1.IPPool
	BFDProfiles []*v1alpha1.BFDProfile
	Communities []*v1alpha1.Community
	Services    []Service
	// Password returns the value of a Secret key (ref.Namespace "" is the speaker's).
	Password func(ref v1alpha1.SecretKeyRef) (string, error)
	// HasDevice reports whether the node has a network device of that name (for vrf); nil
	// means every device exists.
	HasDevice func(name string) bool
}

// Desired computes the sessions this node runs and the paths each carries.
func Desired(in Input) (map[string]*Session, []Problem) {
	var problems []Problem
	sessions := map[string]*Session{}
	// Two sessions to one router from one node would collide there (a router tells its
	// neighbors apart by address): the first BGPPeer by name keeps the address.
	owner := map[netip.Addr]string{}
	peers := slices.Clone(in.Peers)
	slices.SortFunc(peers, func(a, b *v1alpha1.BGPPeer) int { return cmp.Compare(a.Name, b.Name) })
	for _, p := range peers {
		sel, err := selectorsMatch(p.Spec.NodeSelectors, in.Node.Labels)
		if err != nil {
			// No node can tell whether it is selected, so every node reports the peer Invalid:
			// its status then says why no session runs, not only an Event that expires.
			problems = append(problems, Problem{"BGPPeer", p.Name, "InvalidNodeSelector", err.Error()})
			sessions[p.Name] = &Session{Peer: p.Name, Invalid: err.Error(), Paths: map[netip.Prefix]Path{}, Carries: map[ServiceAddr]netip.Prefix{}}
			continue
		}
		if !sel {
			continue
		}
		s := &Session{Peer: p.Name, Paths: map[netip.Prefix]Path{}, Carries: map[ServiceAddr]netip.Prefix{}}
		s.Config, err = sessionConfig(p, in.Node, in.Password)
		if err == nil && s.Config.VRF != "" && in.HasDevice != nil && !in.HasDevice(s.Config.VRF) {
			err = fmt.Errorf("vrf %q: no such device on node %s", s.Config.VRF, in.Node.Name)
		}
		if err == nil {
			var warn *Problem
			s.BFD, warn, err = bfdSettings(p, in.BFDProfiles)
			if warn != nil {
				problems = append(problems, *warn)
			}
			if err == nil && s.BFD.Enabled() && s.Config.VRF != "" {
				err = fmt.Errorf("bfdProfile with vrf: BFD sessions are not bound to a VRF (yet); remove one of them")
			}
		}
		if err == nil {
			if other, taken := owner[s.Config.PeerAddress]; taken {
				err = fmt.Errorf("peerAddress %s is already used by BGPPeer %q", s.Config.PeerAddress, other)
			} else {
				owner[s.Config.PeerAddress] = p.Name
			}
		}
		if err != nil {
			s.Invalid = err.Error()
			problems = append(problems, Problem{"BGPPeer", p.Name, "InvalidConfig", err.Error()})
		}
		sessions[p.Name] = s
	}

	poolLabels := map[string]map[string]string{}
	for _, p := range in.Pools {
		poolLabels[p.Name] = p.Labels
	}
	advs := slices.Clone(in.Advertisements)
	slices.SortFunc(advs, func(a, b *v1alpha1.BGPAdvertisement) int { return cmp.Compare(a.Name, b.Name) })
	cs, advProblems := compileAdvertisements(advs, in.Communities, in.Pools)
	problems = append(problems, advProblems...)
	filters := make([]election.Filter, len(cs))
	for i, c := range cs {
		filters[i].Selects = func(n election.Node) bool { return c.SelectsNode(n.Labels) }
	}

	for _, svc := range in.Services {
		for i, addr := range svc.Addrs {
			// The snapshot found the pool (speaker/snapshot); an address of no known pool is
			// not ours to advertise.
			if i >= len(svc.Pools) || svc.Pools[i] == "" {
				continue
			}
			poolName := svc.Pools[i]
			for i, c := range cs {
				if !c.SelectsPool(poolName, poolLabels[poolName]) {
					continue
				}
				if election.Check(in.Node.Node, svc.Service, filters[i]) != election.Eligible {
					continue
				}
				prefix := c.Prefix(addr)
				for _, s := range sessions {
					if s.Invalid != "" || !c.SelectsPeer(s.Peer) || !s.Config.Carries(addr) {
						continue
					}
					nh, ok := nextHop(s.Config, addr, in.Node)
					if !ok {
						continue
					}
					p, seen := s.Paths[prefix]
					if !seen {
						p = Path{Prefix: prefix, NextHop: nh}
					}
					p.Communities = mergeSorted(p.Communities, c.Communities, cmp.Compare[uint32])
					p.LargeCommunities = mergeSorted(p.LargeCommunities, c.LargeCommunities, v1alpha1.CompareLargeCommunities)
					// LOCAL_PREF only means something inside one AS (RFC 4271 5.1.5).
					if lp := c.Object.Spec.LocalPref; lp != nil && s.Config.IBGP() && (p.LocalPref == nil || *lp > *p.LocalPref) {
						v := *lp
						p.LocalPref = &v
					}
					s.Paths[prefix] = p
					s.Carries[ServiceAddr{svc.Key, addr}] = prefix
				}
			}
		}
	}
	return sessions, problems
}

// nextHop picks the next hop of addr's prefix on a session: the session's own local address
// when the families match, else the node's address of addr's family (an IPv6 prefix cannot
// have an IPv4 next hop). ok is false when the node has no address of that family.
func nextHop(c SessionConfig, addr netip.Addr, n Node) (netip.Addr, bool) {
	if addr.Is4() == c.PeerAddress.Is4() {
		return netip.Addr{}, true
	}
	if addr.Is4() {
		return n.IPv4, n.IPv4.IsValid()
	}
	return n.IPv6, n.IPv6.IsValid()
}

func sessionConfig(p *v1alpha1.BGPPeer, n Node, password func(v1alpha1.SecretKeyRef) (string, error)) (SessionConfig, error) {
	s := p.Spec
	c := SessionConfig{PeerASN: s.PeerASN, DynamicASN: s.DynamicASN, LocalASN: s.LocalASN, Port: defaultPort,
		HoldTime: defaultHoldTime, ConnectRetry: defaultConnectTime, VRF: s.VRF, DisableMP: s.DisableMP}
	// The checks are the controller's too (the Accepted condition); what follows only converts.
	if err := p.Validate(); err != nil {
		return c, err
	}
	c.PeerAddress = netip.MustParseAddr(s.PeerAddress).Unmap()
	if s.SourceAddress != "" {
		c.SourceAddress = netip.MustParseAddr(s.SourceAddress).Unmap()
	}
	if s.Port != 0 {
		c.Port = uint16(s.Port)
	}
	if s.HoldTime != nil {
		c.HoldTime = s.HoldTime.Duration
	}
	c.Keepalive = c.HoldTime / 3
	if s.KeepaliveTime != nil {
		c.Keepalive = s.KeepaliveTime.Duration
	}
	if s.EBGPMultihop != nil {
		c.Multihop = uint8(*s.EBGPMultihop)
	}
	if gr := s.GracefulRestart; gr != nil && gr.Enabled {
		c.GracefulRestart = defaultRestartTime
		if gr.RestartTime != nil {
			c.GracefulRestart = gr.RestartTime.Duration
		}
	}
	if s.ConnectTime != nil {
		c.ConnectRetry = s.ConnectTime.Duration
	}
	c.RouterID = routerID(n)
	if s.RouterID != "" {
		c.RouterID = netip.MustParseAddr(s.RouterID)
	}
	if ref := s.PasswordSecret; ref != nil {
		if password == nil {
			return c, fmt.Errorf("passwordSecret %q: no Secret access", ref.Name)
		}
		var err error
		if c.Password, err = password(*ref); err != nil {
			return c, fmt.Errorf("passwordSecret: %w", err)
		}
		if c.Password == "" || len(c.Password) > 80 {
			// 80 bytes is the kernel's TCP_MD5SIG_MAXKEYLEN.
			return c, fmt.Errorf("passwordSecret %q key %q: the password must be 1 to 80 bytes", ref.Name, keyOf(*ref))
		}
	}
	return c, nil
}

func keyOf(ref v1alpha1.SecretKeyRef) string {
	if ref.Key == "" {
		return "password"
	}
	return ref.Key
}

// routerID is the node's IPv4 address, or on IPv6-only nodes a stable 32-bit value derived from
// the node's name (the BGP identifier only has to be unique within the AS).
func routerID(n Node) netip.Addr {
	if n.IPv4.IsValid() {
		return n.IPv4
	}
	h := fnv.New32a()
	h.Write([]byte(n.Name))
	s := h.Sum32() | 1
	return netip.AddrFrom4([4]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)})
}

func selectorsMatch(sels []metav1.LabelSelector, l map[string]string) (bool, error) {
	if len(sels) == 0 {
		return true, nil
	}
	for i := range sels {
		sel, err := metav1.LabelSelectorAsSelector(&sels[i])
		if err != nil {
			return false, fmt.Errorf("nodeSelectors[%d]: %v", i, err)
		}
		if sel.Matches(labels.Set(l)) {
			return true, nil
		}
	}
	return false, nil
}

func mergeSorted[T comparable](a, b []T, c func(T, T) int) []T {
	if len(b) == 0 {
		return a
	}
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, c)
	return slices.Compact(out)
}
