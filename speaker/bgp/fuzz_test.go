package bgp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// The BGP configuration's translation into sessions and paths takes whatever users wrote in
// BGPPeers, BGPAdvertisements and Communities: Desired never panics, and what it produces
// holds: a valid session has a peer address and ASNs, its paths only of the families it
// carries, with sorted, unique communities.
func FuzzDesired(f *testing.F) {
	f.Add("192.0.2.1", "external", "10.0.0.1", true, "vpn-only,64512:1,large:1:2:3,no-export", "vpn-only", "64512:300", "tier", "edge")
	f.Add("2001:db8::1", "", "", false, "x,,large:1:2", "x", "large:4294967295:0:1", "a b", "")
	f.Add("not-an-ip", "internal", "300.0.0.1", false, "65536:1", "no-export", "1:1", "", "")
	f.Fuzz(func(t *testing.T, peerAddr, dyn, rid string, disableMP bool, comms, alias, value, selKey, selValue string) {
		var asn uint32 = 64500
		if dyn != "" {
			asn = 0
		}
		in := Input{
			Node:  testNode,
			Pools: testPools,
			Peers: []*v1alpha1.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.BGPPeerSpec{
				PeerAddress: peerAddr, PeerASN: asn, DynamicASN: dyn, LocalASN: 64512, RouterID: rid, DisableMP: disableMP}}},
			Communities: []*v1alpha1.Community{{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.CommunitySpec{
				Communities: []v1alpha1.CommunityAlias{{Name: alias, Value: value}}}}},
			Advertisements: []*v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.BGPAdvertisementSpec{
				Communities:     strings.Split(comms, ","),
				IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{selKey: selValue}}}}}},
			Services: []Service{svc("ns/web", "198.51.100.10", "2001:db8:ff::10")},
		}
		sessions, _ := Desired(in)
		s := sessions["p"]
		if s == nil || s.Invalid != "" {
			return
		}
		c := s.Config
		if !c.PeerAddress.IsValid() || c.LocalASN == 0 || (c.PeerASN == 0) == (c.DynamicASN == "") || !c.RouterID.Is4() {
			t.Fatalf("a valid session with config %+v", c)
		}
		for prefix, p := range s.Paths {
			if !c.Carries(prefix.Addr()) {
				t.Fatalf("disableMP session carries %s", prefix)
			}
			if !slices.IsSorted(p.Communities) || len(slices.Compact(slices.Clone(p.Communities))) != len(p.Communities) {
				t.Fatalf("communities %v", p.Communities)
			}
			if prefix != netip.PrefixFrom(prefix.Addr(), prefix.Bits()).Masked() {
				t.Fatalf("prefix %s not masked", prefix)
			}
		}
	})
}
