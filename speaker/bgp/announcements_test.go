package bgp

import (
	"net/netip"
	"testing"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// Under aggregation one path carries several Services' addresses: the node lists itself only
// for the addresses it is eligible for, only on sessions that are established and have the
// path out.
func TestAnnouncedAddrsAggregation(t *testing.T) {
	local := svc("ns/local", "198.51.100.30")
	local.LocalOnly = true
	local.EndpointNodes = map[string]bool{"n2": true} // not here: the node must not claim it
	in := Input{
		Node:  testNode,
		Pools: testPools,
		Peers: []*v1alpha1.BGPPeer{peer("up", "192.0.2.1", 64500, 64512), peer("down", "192.0.2.2", 64500, 64512)},
		Advertisements: []*v1alpha1.BGPAdvertisement{adv("agg", func(s *v1alpha1.BGPAdvertisementSpec) {
			s.AggregationLength = i32(24)
			s.Peers = []string{"up"}
		}), adv("host", func(s *v1alpha1.BGPAdvertisementSpec) { s.Peers = []string{"down"} })},
		Services: []Service{svc("ns/a", "198.51.100.10"), svc("ns/b", "198.51.100.20", "203.0.113.5"), local},
	}
	desired, problems := Desired(in)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	agg := netip.MustParsePrefix("198.51.100.0/24")
	if got := prefixes(desired["up"]); len(got) != 2 || got[0] != "198.51.100.0/24" {
		t.Fatalf("paths on up: %v", got)
	}

	// "down" is not established: what only it carries (the /32s) is not reported; of "up"'s
	// paths only the /24 has been sent so far.
	got := announcedAddrs(desired, map[string]map[netip.Prefix]bool{"up": {agg: true}})
	want := map[string][]string{"ns/a": {"198.51.100.10"}, "ns/b": {"198.51.100.20"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, ips := range want {
		if len(got[k]) != len(ips) {
			t.Errorf("%s: got %v, want %v", k, got[k], ips)
		}
		for _, ip := range ips {
			if !got[k][netip.MustParseAddr(ip)] {
				t.Errorf("%s: %s missing from %v", k, ip, got[k])
			}
		}
	}
	if got := announcedAddrs(desired, map[string]map[netip.Prefix]bool{}); len(got) != 0 {
		t.Errorf("reported without an established session: %v", got)
	}
}
