package bgp_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// onNode selects one node by name.
func onNode(name string) []metav1.LabelSelector {
	return []metav1.LabelSelector{{MatchLabels: map[string]string{"kubernetes.io/hostname": name}}}
}

// MetalLB's BGPPeer settings against FRR, one node each: node1 peers with dynamicASN
// external, its own routerID and disableMP (IPv4 only on its IPv4 session); node2 with
// dynamicASN internal, which FRR (another AS) is not, so the session is refused and says why;
// node3's session is bound to its LAN device (vrf: eth0) while its main table sends the
// router's address elsewhere. (The binding is SO_BINDTODEVICE, what a VRF device is used
// with; the machines that run these tests have kernels without CONFIG_NET_VRF, so the device
// is a plain one. The route lookup restricted to the bound device is the same.)
func TestFRRMetalLBPeerSettings(t *testing.T) {
	l := newLab(t, 3)
	n1, n2, n3 := l.nodes[0], l.nodes[1], l.nodes[2]
	n3.ns.MustRun("ip", "link", "add", "dead0", "type", "veth", "peer", "name", "dead1")
	n3.ns.MustRun("ip", "link", "set", "dead0", "up")
	n3.ns.MustRun("ip", "route", "add", routerAddr4+"/32", "dev", "dead0")
	// Unbound, the router is unreachable, or the test proves nothing.
	if out, err := n3.ns.Run("ping", "-c1", "-W1", routerAddr4); err == nil {
		t.Fatalf("node3 reaches the router without binding to eth0: %s", out)
	}
	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))
	l.pool()
	spec := func(mut func(*v1alpha1.BGPPeerSpec)) v1alpha1.BGPPeerSpec {
		s := v1alpha1.BGPPeerSpec{PeerAddress: routerAddr4, LocalASN: clusterASN, PeerASN: routerASN}
		mut(&s)
		return s
	}
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "dyn"}, Spec: spec(func(s *v1alpha1.BGPPeerSpec) {
		s.PeerASN, s.DynamicASN, s.NodeSelectors = 0, v1alpha1.DynamicASNExternal, onNode("node1")
		s.RouterID, s.DisableMP = "10.0.0.1", true
		s.ConnectTime = &metav1.Duration{Duration: time.Second}
	})})
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "wrong-kind"}, Spec: spec(func(s *v1alpha1.BGPPeerSpec) {
		s.PeerASN, s.DynamicASN, s.NodeSelectors = 0, v1alpha1.DynamicASNInternal, onNode("node2")
	})})
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "vrf"}, Spec: spec(func(s *v1alpha1.BGPPeerSpec) {
		s.VRF, s.NodeSelectors = "eth0", onNode("node3")
	})})
	// A VRF node1 lacks: that node reports the peer Invalid, its other session is untouched.
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "no-vrf"}, Spec: spec(func(s *v1alpha1.BGPPeerSpec) {
		s.PeerAddress, s.VRF, s.NodeSelectors = "192.0.2.99", "blue", onNode("node1")
	})})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	l.startAll()
	l.service("web", false, "198.51.100.10", "2001:db8:ff::10")
	kit.Eventually(t, 30*time.Second, "no-vrf Invalid on node1", func(context.Context) error {
		if e, _ := l.sessionState("no-vrf", n1.name); e.State != "Invalid" || !strings.Contains(e.LastError, `vrf "blue": no such device on node node1`) {
			return fmt.Errorf("status %+v", e)
		}
		return nil
	})

	for peer, node := range map[string]*node{"dyn": n1, "vrf": n3} {
		kit.Eventually(t, 30*time.Second, peer+" established", func(context.Context) error {
			if e, _ := l.sessionState(peer, node.name); e.State != "Established" {
				return fmt.Errorf("status %+v", e)
			}
			return nil
		})
	}
	kit.Eventually(t, 30*time.Second, "wrong-kind refused with the reason in status", func(context.Context) error {
		e, _ := l.sessionState("wrong-kind", n2.name)
		if e.State == "Established" || !strings.Contains(e.LastError, "dynamicASN internal, but the router's ASN 64500 differs from localASN 64512") {
			return fmt.Errorf("status %+v", e)
		}
		return nil
	})
	// IPv4 from node1 (disableMP: its IPv4 session) and node3; IPv6 from node3 only.
	for prefix, want := range map[string][]string{"198.51.100.10/32": {n1.v4, n3.v4}, "2001:db8:ff::10/128": {n3.v6}} {
		kit.Eventually(t, 20*time.Second, prefix+" in FRR", func(context.Context) error {
			got, _, err := frrNextHops(frr, prefix)
			if err != nil {
				return err
			}
			return wantSet(got, want)
		})
	}
	var nb map[string]struct {
		RemoteRouterID string `json:"remoteRouterId"`
		Caps           struct {
			MP map[string]map[string]bool `json:"multiprotocolExtensions"`
		} `json:"neighborCapabilities"`
	}
	if err := frr.JSON("show bgp neighbors "+n1.v4+" json", &nb); err != nil {
		t.Fatal(err)
	}
	got := nb[n1.v4]
	if got.RemoteRouterID != "10.0.0.1" {
		t.Errorf("FRR sees router ID %q from node1, want the BGPPeer's 10.0.0.1", got.RemoteRouterID)
	}
	if v6 := got.Caps.MP["ipv6Unicast"]; v6["received"] || v6["advertisedAndReceived"] {
		t.Errorf("node1 offered IPv6 unicast on its IPv4 session despite disableMP: %v", got.Caps.MP)
	}
	// Still 0 IPv6 prefixes from node1 after a while: not a race with the session's start.
	time.Sleep(2 * time.Second)
	if got, _, _ := frrNextHops(frr, "2001:db8:ff::10/128"); slices.Contains(got, n1.v6) {
		t.Errorf("IPv6 path from node1 despite disableMP: %v", got)
	}
}

// Per-advertisement peers, with two routers of two makes: FRR (192.0.2.1) receives the pool
// named by one advertisement, with its communities written as Community aliases; BIRD
// (192.0.2.2) receives the pools another advertisement selects by label; a pool neither
// selects reaches neither. An advertisement that does not compile (an alias nobody defines) is
// ignored whole: neither its pool nor its other community reaches FRR.
func TestPerAdvertisementPeersFRRAndBIRD(t *testing.T) {
	l := newLab(t, 1)
	n := l.nodes[0]
	birdNS := netns.New(t, "bird")
	netns.Veth(t, birdNS, "eth0", l.router, "pb")
	l.router.MustRun("ip", "link", "set", "pb", "master", "br0")
	birdNS.Addr("eth0", "192.0.2.2/24")
	bird := routers.StartBIRD(t, birdNS, fmt.Sprintf(`router id 192.0.2.2;
protocol device {}
protocol kernel k4 { ipv4 { export all; }; }
protocol bgp n1 {
  local 192.0.2.2 as 64501;
  neighbor %s as %d;
  connect retry time 1;
  ipv4 { import all; export none; };
}
`, n.v4, clusterASN))
	frr := routers.StartFRR(t, l.router, frrConfig(routerASN, l.nodes, nil))

	l.create(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "public"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24"}}})
	l.create(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "edge", Labels: map[string]string{"tier": "edge"}},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.0/25"}}})
	l.create(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.128/25"}}})
	l.create(&v1alpha1.Community{ObjectMeta: metav1.ObjectMeta{Name: "site"}, Spec: v1alpha1.CommunitySpec{
		Communities: []v1alpha1.CommunityAlias{{Name: "vpn-only", Value: "64512:300"}, {Name: "tagged", Value: "large:64512:7:8"}}}})
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "frr"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: routerAddr4, PeerASN: routerASN, LocalASN: clusterASN}})
	l.create(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bird"}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "192.0.2.2", PeerASN: 64501, LocalASN: clusterASN}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "to-frr"}, Spec: v1alpha1.BGPAdvertisementSpec{
		IPPools: []string{"public"}, Peers: []string{"frr"}, Communities: []string{"vpn-only", "tagged", "no-export"}}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "to-bird"}, Spec: v1alpha1.BGPAdvertisementSpec{
		IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}, Peers: []string{"bird"}}})
	l.create(&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "broken-to-frr"}, Spec: v1alpha1.BGPAdvertisementSpec{
		IPPools: []string{"public", "quiet"}, Peers: []string{"frr"}, Communities: []string{"64512:999", "nobody-defines-this"}}})
	l.startAll()
	l.service("public", false, "198.51.100.10")
	l.service("edge", false, "203.0.113.10")
	l.service("quiet", false, "203.0.113.200")

	kit.Eventually(t, 30*time.Second, "FRR has the public address with the aliases' communities", func(context.Context) error {
		got, r, err := frrNextHops(frr, "198.51.100.10/32")
		if err != nil {
			return err
		}
		if err := wantSet(got, []string{n.v4}); err != nil {
			return err
		}
		p := r.Paths[0]
		if p.Community == nil || p.Community.String != "64512:300 no-export" || p.LargeCommunity == nil || p.LargeCommunity.String != "64512:7:8" {
			return fmt.Errorf("communities %+v large %+v", p.Community, p.LargeCommunity)
		}
		return nil
	})
	kit.Eventually(t, 30*time.Second, "BIRD has the edge address", func(context.Context) error {
		got, out, err := birdNextHops(bird, "203.0.113.10/32")
		if err != nil {
			return err
		}
		if err := wantSet(got, []string{n.v4}); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
	// Both sessions are up and carry what they carry; what the other router got must be absent.
	for _, peer := range []string{"frr", "bird"} {
		kit.Eventually(t, 10*time.Second, peer+" sends one prefix", func(context.Context) error {
			if e, _ := l.sessionState(peer, n.name); e.State != "Established" || e.PrefixesSent != 1 {
				return fmt.Errorf("status %+v", e)
			}
			return nil
		})
	}
	for _, p := range []string{"203.0.113.10/32", "203.0.113.200/32"} {
		if got, _, err := frrNextHops(frr, p); err != nil || len(got) > 0 {
			t.Errorf("FRR has %s: %v %v", p, got, err)
		}
	}
	for _, p := range []string{"198.51.100.10/32", "203.0.113.200/32"} {
		if got, out, err := birdNextHops(bird, p); err != nil || len(got) > 0 {
			t.Errorf("BIRD has %s: %v %v\n%s", p, got, err, out)
		}
	}
}
