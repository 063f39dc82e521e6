package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/routers"
)

// The lab router's configuration, run by real FRR, against three BIRD "nodes" at the lab's node
// addresses (in namespaces of this test's own, never the lab's): an address announced by every
// node gets one kernel next hop per node, one announced by a single node gets that node, the
// router sends the nodes nothing, and a node that goes away stops being a next hop.
func TestRouterConfig(t *testing.T) {
	router := netns.New(t, "router")
	lan := netns.New(t, "lan")
	netns.Veth(t, router, "eth0", lan, "prt")
	ports := []string{"prt"}
	l := &Lab{}
	nodes := l.Nodes()
	birds := map[string]*routers.BIRD{}
	var nodeNS []*netns.NS
	for _, n := range nodes {
		ns := netns.New(t, n.Name)
		port := fmt.Sprintf("pn%d", n.Index)
		netns.Veth(t, ns, "eth0", lan, port)
		ports = append(ports, port)
		ns.Addr("eth0", n.V4+"/24")
		nodeNS = append(nodeNS, ns)
	}
	lan.Bridge("br0", ports...)
	router.Addr("eth0", RouterV4+"/24")

	frr := routers.StartFRR(t, router, l.routerConfig())
	// "allow local as" turns off BIRD's loop check, so that whatever the router sends shows up.
	for i, n := range nodes {
		static := "  route 203.0.113.1/32 blackhole;\n"
		if n.Index == 1 {
			static += "  route 203.0.113.2/32 blackhole;\n"
		}
		birds[n.Name] = routers.StartBIRD(t, nodeNS[i], fmt.Sprintf(`router id %s;
protocol device {}
protocol static { ipv4;
%s}
protocol bgp edge {
  local %s as %d;
  neighbor %s as %d;
  connect retry time 1;
  allow local as;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`, n.V4, static, n.V4, ASNLab, RouterV4, ASNEdge))
	}

	all := []netip.Addr{netip.MustParseAddr(nodes[0].V4), netip.MustParseAddr(nodes[1].V4), netip.MustParseAddr(nodes[2].V4)}
	waitHops(t, frr, "203.0.113.1/32", all)
	waitHops(t, frr, "203.0.113.2/32", all[:1])
	if out := router.MustRun("ip", "route", "show", "203.0.113.1"); strings.Count(out, "nexthop via") != Nodes {
		t.Errorf("kernel route to 203.0.113.1 has not %d next hops:\n%s", Nodes, out)
	}
	for _, n := range nodes {
		out, err := birds[n.Name].Birdc("show route protocol edge")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "203.0.113.") {
			t.Errorf("the router sent routes to %s:\n%s", n.Name, out)
		}
	}

	nodeNS[1].MustRun("ip", "link", "set", "eth0", "down")
	// The session is only lost when the hold time runs out: nothing tells the router.
	waitHopsWithin(t, frr, "203.0.113.1/32", []netip.Addr{all[0], all[2]}, routerHoldTime+10*time.Second)
}

func waitHops(t *testing.T, frr *routers.FRR, prefix string, want []netip.Addr) {
	t.Helper()
	waitHopsWithin(t, frr, prefix, want, 30*time.Second)
}

func waitHopsWithin(t *testing.T, frr *routers.FRR, prefix string, want []netip.Addr, timeout time.Duration) {
	t.Helper()
	waited := false
	defer func() {
		// kit.Eventually stops the test on a timeout; the router's view of its sessions says why.
		if !waited {
			out, _ := frr.Vtysh("show bgp summary")
			t.Logf("FRR's BGP summary:\n%s", out)
		}
	}()
	kit.Eventually(t, timeout, fmt.Sprintf("FRR's next hops for %s to be %v", prefix, want), func(context.Context) error {
		got, err := fibNextHops(frr.Vtysh, netip.MustParsePrefix(prefix))
		if err == nil && !slices.Equal(got, want) {
			err = fmt.Errorf("next hops %v", got)
		}
		return err
	})
	waited = true
}
