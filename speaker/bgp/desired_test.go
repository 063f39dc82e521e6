package bgp

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

func peer(name, addr string, peerASN, localASN uint32, mut ...func(*v1alpha1.BGPPeerSpec)) *v1alpha1.BGPPeer {
	p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.BGPPeerSpec{PeerAddress: addr, PeerASN: peerASN, LocalASN: localASN}}
	for _, m := range mut {
		m(&p.Spec)
	}
	return p
}

func adv(name string, mut ...func(*v1alpha1.BGPAdvertisementSpec)) *v1alpha1.BGPAdvertisement {
	a := &v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, m := range mut {
		m(&a.Spec)
	}
	return a
}

func u32(v uint32) *uint32 { return &v }
func i32(v int32) *int32   { return &v }

var (
	testNode = Node{Node: election.Node{Name: "n1", Ready: true, Labels: map[string]string{"zone": "a"}},
		IPv4: netip.MustParseAddr("192.0.2.11"), IPv6: netip.MustParseAddr("2001:db8::11")}
	testPools = []*v1alpha1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "blue"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24", "2001:db8:ff::/64"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "red"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.0/24"}}},
	}
)

// svc is a Service holding addrs, each of the pool the snapshot finds for it in testPools.
func svc(key string, addrs ...string) Service { return svcIn(testPools, key, addrs...) }

// svcIn is svc with other pools.
func svcIn(pools []*v1alpha1.IPPool, key string, addrs ...string) Service {
	s := Service{Key: key}
	for _, a := range addrs {
		s.Addrs = append(s.Addrs, netip.MustParseAddr(a))
		snap := snapshot.Build(snapshot.Input{Pools: pools, DefaultClass: true, Services: []*corev1.Service{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: a}}}},
		}}})
		s.Pools = append(s.Pools, snap.Services[0].Addrs[0].Pool)
	}
	return s
}

// prefixes returns the sorted prefixes of a session, for compact comparisons.
func prefixes(s *Session) []string {
	var out []string
	for p := range s.Paths {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func TestDesiredPathsPerPeerAndPool(t *testing.T) {
	in := Input{
		Node:  testNode,
		Pools: testPools,
		Peers: []*v1alpha1.BGPPeer{
			peer("ebgp", "192.0.2.1", 64500, 64512),
			peer("ibgp", "2001:db8::1", 64512, 64512),
			peer("other-zone", "192.0.2.2", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"zone": "b"}}}
			}),
		},
		Advertisements: []*v1alpha1.BGPAdvertisement{
			adv("blue-all", func(s *v1alpha1.BGPAdvertisementSpec) {
				s.IPPools = []string{"blue"}
				s.Communities = []string{"64512:100"}
				s.LocalPref = u32(150)
			}),
			adv("blue-ebgp-extra", func(s *v1alpha1.BGPAdvertisementSpec) {
				s.IPPools = []string{"blue"}
				s.Peers = []string{"ebgp"}
				s.Communities = []string{"no-export", "64512:100"}
				s.LargeCommunities = []string{"64512:1:2"}
			}),
			adv("red-ibgp-aggregated", func(s *v1alpha1.BGPAdvertisementSpec) {
				s.IPPools = []string{"red"}
				s.Peers = []string{"ibgp"}
				s.AggregationLength = i32(24)
				s.LocalPref = u32(300)
			}),
		},
		Services: []Service{
			svc("ns/web", "198.51.100.10", "2001:db8:ff::10"),
			svc("ns/red1", "203.0.113.5"),
			svc("ns/red2", "203.0.113.77"),
			svc("ns/nopool", "192.0.2.200"),
		},
	}
	got, problems := Desired(in)
	if len(problems) != 0 {
		t.Fatalf("problems: %+v", problems)
	}
	if _, ok := got["other-zone"]; ok {
		t.Error("a peer whose nodeSelectors do not match this node got a session")
	}
	ebgp, ibgp := got["ebgp"], got["ibgp"]
	if ebgp == nil || ibgp == nil {
		t.Fatalf("sessions: %v", got)
	}
	if want := []string{"198.51.100.10/32", "2001:db8:ff::10/128"}; !slices.Equal(prefixes(ebgp), want) {
		t.Errorf("ebgp prefixes %v, want %v", prefixes(ebgp), want)
	}
	if want := []string{"198.51.100.10/32", "2001:db8:ff::10/128", "203.0.113.0/24"}; !slices.Equal(prefixes(ibgp), want) {
		t.Errorf("ibgp prefixes %v, want %v", prefixes(ibgp), want)
	}

	p := ebgp.Paths[netip.MustParsePrefix("198.51.100.10/32")]
	if want := []uint32{64512<<16 | 100, 0xFFFFFF01}; !slices.Equal(p.Communities, want) {
		t.Errorf("communities merged across advertisements: %x, want %x", p.Communities, want)
	}
	if want := []LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}; !slices.Equal(p.LargeCommunities, want) {
		t.Errorf("large communities %v, want %v", p.LargeCommunities, want)
	}
	if p.LocalPref != nil {
		t.Errorf("LOCAL_PREF %d sent to an eBGP peer", *p.LocalPref)
	}
	if p.NextHop.IsValid() {
		t.Errorf("same-family prefix has explicit next hop %s; want the session's address", p.NextHop)
	}
	if nh := ebgp.Paths[netip.MustParsePrefix("2001:db8:ff::10/128")].NextHop; nh != testNode.IPv6 {
		t.Errorf("IPv6 prefix on an IPv4 session: next hop %s, want the node's IPv6 address", nh)
	}
	if nh := ibgp.Paths[netip.MustParsePrefix("198.51.100.10/32")].NextHop; nh != testNode.IPv4 {
		t.Errorf("IPv4 prefix on an IPv6 session: next hop %s, want the node's IPv4 address", nh)
	}
	if lp := ibgp.Paths[netip.MustParsePrefix("198.51.100.10/32")].LocalPref; lp == nil || *lp != 150 {
		t.Errorf("ibgp local pref %v, want 150", lp)
	}
	if lp := ibgp.Paths[netip.MustParsePrefix("203.0.113.0/24")].LocalPref; lp == nil || *lp != 300 {
		t.Errorf("aggregate local pref %v, want 300", lp)
	}
	if !ibgp.Config.IBGP() || ebgp.Config.IBGP() {
		t.Error("iBGP/eBGP mixed up")
	}
	if ebgp.Config.HoldTime != 90*time.Second || ebgp.Config.Keepalive != 30*time.Second || ebgp.Config.Port != 179 {
		t.Errorf("defaults: %+v", ebgp.Config)
	}
	if ebgp.Config.RouterID != testNode.IPv4 {
		t.Errorf("router ID %s, want the node's IPv4 address", ebgp.Config.RouterID)
	}
}

func TestDesiredEligibility(t *testing.T) {
	base := Input{
		Node:           testNode,
		Pools:          testPools,
		Peers:          []*v1alpha1.BGPPeer{peer("p", "192.0.2.1", 64500, 64512)},
		Advertisements: []*v1alpha1.BGPAdvertisement{adv("a")},
	}
	local := func(nodes ...string) Service {
		s := svc("ns/l", "198.51.100.20")
		s.LocalOnly = true
		s.EndpointNodes = map[string]bool{}
		for _, n := range nodes {
			s.EndpointNodes[n] = true
		}
		return s
	}
	for _, tc := range []struct {
		name string
		mut  func(*Input)
		want int
	}{
		{"cluster policy", func(in *Input) { in.Services = []Service{svc("ns/c", "198.51.100.20")} }, 1},
		{"local with endpoint here", func(in *Input) { in.Services = []Service{local("n1", "n2")} }, 1},
		{"local, endpoints elsewhere", func(in *Input) { in.Services = []Service{local("n2")} }, 0},
		{"node not ready", func(in *Input) {
			in.Node.Ready = false
			in.Services = []Service{svc("ns/c", "198.51.100.20")}
		}, 0},
		{"advertisement selects other nodes", func(in *Input) {
			in.Advertisements = []*v1alpha1.BGPAdvertisement{adv("a", func(s *v1alpha1.BGPAdvertisementSpec) {
				s.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"zone": "b"}}}
			})}
			in.Services = []Service{svc("ns/c", "198.51.100.20")}
		}, 0},
		{"advertisement for another peer", func(in *Input) {
			in.Advertisements = []*v1alpha1.BGPAdvertisement{adv("a", func(s *v1alpha1.BGPAdvertisementSpec) { s.Peers = []string{"x"} })}
			in.Services = []Service{svc("ns/c", "198.51.100.20")}
		}, 0},
		{"no advertisement", func(in *Input) {
			in.Advertisements = nil
			in.Services = []Service{svc("ns/c", "198.51.100.20")}
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			in.Node.Labels = testNode.Labels
			tc.mut(&in)
			got, _ := Desired(in)
			if n := len(got["p"].Paths); n != tc.want {
				t.Errorf("%d paths, want %d", n, tc.want)
			}
		})
	}
}

// Bad input on one object is reported and stops nothing else.
func TestDesiredBadInputIsolated(t *testing.T) {
	in := Input{
		Node:  testNode,
		Pools: testPools,
		Peers: []*v1alpha1.BGPPeer{
			peer("good", "192.0.2.1", 64500, 64512),
			peer("no-secret", "192.0.2.2", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "missing"}
			}),
			peer("bad-hold", "192.0.2.3", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.HoldTime = &metav1.Duration{Duration: time.Second}
			}),
			peer("same-address", "192.0.2.1", 64501, 64512),
			peer("bad-selector", "192.0.2.4", 64500, 64512, func(s *v1alpha1.BGPPeerSpec) {
				s.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}}
			}),
		},
		Advertisements: []*v1alpha1.BGPAdvertisement{
			adv("good"),
			adv("bad", func(s *v1alpha1.BGPAdvertisementSpec) { s.Communities = []string{"70000:1"} }),
			// A /16 route would cover far more than blue's /24: refused whole, as the controller does.
			adv("too-wide", func(s *v1alpha1.BGPAdvertisementSpec) { s.AggregationLength = i32(16) }),
		},
		Services: []Service{svc("ns/web", "198.51.100.10")},
		Password: func(ref v1alpha1.SecretKeyRef) (string, error) {
			return "", errors.New(`Secret fairlead-system/` + ref.Name + ` not found`)
		},
	}
	got, problems := Desired(in)
	if p := prefixes(got["good"]); !slices.Equal(p, []string{"198.51.100.10/32"}) || got["good"].Invalid != "" {
		t.Errorf("the good peer: paths %v, invalid %q", p, got["good"].Invalid)
	}
	if !strings.Contains(got["no-secret"].Invalid, "missing") || len(got["no-secret"].Paths) != 0 {
		t.Errorf("missing secret: %+v", got["no-secret"])
	}
	if !strings.Contains(got["bad-hold"].Invalid, "holdTime") {
		t.Errorf("bad hold time: %+v", got["bad-hold"])
	}
	var names []string
	for _, p := range problems {
		names = append(names, p.Kind+"/"+p.Name)
	}
	slices.Sort(names)
	if !strings.Contains(got["same-address"].Invalid, `already used by BGPPeer "good"`) {
		t.Errorf("duplicate address: %+v", got["same-address"])
	}
	// A selector no node can evaluate: a status entry on every node, not only an Event.
	if s := got["bad-selector"]; s == nil || !strings.Contains(s.Invalid, "nodeSelectors[0]") || !strings.Contains(s.Invalid, "rack id") || len(s.Paths) != 0 {
		t.Errorf("bad node selector: %+v", s)
	}
	if want := []string{"BGPAdvertisement/bad", "BGPAdvertisement/too-wide", "BGPPeer/bad-hold", "BGPPeer/bad-selector", "BGPPeer/no-secret", "BGPPeer/same-address"}; !slices.Equal(names, want) {
		t.Errorf("problems %v, want %v", names, want)
	}
}

// An address its pool no longer covers, kept by its Service, is still advertised under the
// pool the controller recorded on the Service; one with no record is not.
func TestDesiredAddressOutsideItsPool(t *testing.T) {
	kept := svc("ns/kept", "192.0.2.200")
	kept.Pools = []string{"red"}
	in := Input{
		Node:  testNode,
		Pools: testPools,
		Peers: []*v1alpha1.BGPPeer{peer("ebgp", "192.0.2.1", 64500, 64512)},
		Advertisements: []*v1alpha1.BGPAdvertisement{adv("red-only", func(s *v1alpha1.BGPAdvertisementSpec) {
			s.IPPools = []string{"red"}
		})},
		Services: []Service{kept, svc("ns/unrecorded", "192.0.2.201"), svc("ns/inside", "203.0.113.5")},
	}
	sessions, problems := Desired(in)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	s := sessions["ebgp"]
	if s == nil {
		t.Fatalf("no session: %v", sessions)
	}
	if got, want := prefixes(s), []string{"192.0.2.200/32", "203.0.113.5/32"}; !slices.Equal(got, want) {
		t.Errorf("advertised %v, want %v", got, want)
	}
}
