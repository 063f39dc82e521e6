package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/lab"
)

// Deleting a Service withdraws it everywhere: nobody answers ARP for its layer 2 address, the
// router has no route (RIB or kernel) for its BGP address, and no node's nftables table holds
// either address. Each is first checked to be there while the Service lives.
func TestDeleteWithdraws(t *testing.T) {
	l2 := createService(t, echoService("gone-l2", "lab-l2"))
	bgp := createService(t, echoService("gone-bgp", "lab-bgp"))
	l2IP, bgpIP := l2.Status.LoadBalancer.Ingress[0].IP, bgp.Status.LoadBalancer.Ingress[0].IP

	kit.Eventually(t, converge, "both Services announced, routed and programmed", func(context.Context) error {
		if _, err := request(theLab.ClientL2(), addr80(l2IP)); err != nil {
			return err
		}
		if _, err := request(theLab.ClientBGP(), addr80(bgpIP)); err != nil {
			return err
		}
		if mac, err := arpOwner(l2IP); err != nil || mac == "" {
			return fmt.Errorf("no ARP answer for %s (%v)", l2IP, err)
		}
		if hops, err := routerHops(bgpIP); err != nil || len(hops) == 0 {
			return fmt.Errorf("no route to %s at the router (%v)", bgpIP, err)
		}
		return nftOnNodes(true, l2IP, bgpIP)
	})

	deleteService(t, lab.DemoNamespace, "gone-l2")
	deleteService(t, lab.DemoNamespace, "gone-bgp")
	kit.Eventually(t, converge, "both Services withdrawn", func(context.Context) error {
		if mac, err := arpOwner(l2IP); err != nil || mac != "" {
			return fmt.Errorf("ARP for %s still answered by %q (%v)", l2IP, mac, err)
		}
		if hops, err := routerHops(bgpIP); err != nil || len(hops) != 0 {
			return fmt.Errorf("the router's FIB still routes %s via %v (%v)", bgpIP, hops, err)
		}
		if out, err := theLab.Vtysh("show bgp ipv4 unicast " + bgpIP + "/32 json"); err != nil || strings.Contains(out, `"paths"`) {
			return fmt.Errorf("FRR's RIB still has %s (%v): %s", bgpIP, err, out)
		}
		if out, err := inNS(theLab.Router(), "ip", "route", "show", bgpIP); err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("the router's kernel still routes %s (%v): %s", bgpIP, err, out)
		}
		return nftOnNodes(false, l2IP, bgpIP)
	})
}

// nftOnNodes checks that every node's proxy table holds (want) or lacks (!want) each ip.
func nftOnNodes(want bool, ips ...string) error {
	for _, n := range theLab.Nodes() {
		for _, ip := range ips {
			has, err := nftHas(n, ip)
			if err != nil {
				return err
			}
			if has != want {
				return fmt.Errorf("%s's nftables table has %s: %v", n.Name, ip, has)
			}
		}
	}
	return nil
}
