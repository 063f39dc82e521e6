package l2

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

// The addresses are on the LAN's own subnets, so the client's kernel resolves them on-link.
var (
	lanVIP4 = netip.MustParseAddr("192.0.2.100")
	lanVIP6 = netip.MustParseAddr("2001:db8:1::100")
)

type lan struct {
	node, client *netns.NS
	nodeMAC      string
}

// newLAN builds a node and a client joined by a veth pair. The node accepts TCP on port 8080
// for the external addresses: they are local routes on lo (what the service proxy's rules do
// in a real node, reduced to the minimum), and arp_ignore=1 stops the node's own kernel from
// answering ARP for them, so every answer the client gets comes from the responder.
func newLAN(t *testing.T) *lan {
	l := &lan{node: netns.New(t, "node"), client: netns.New(t, "client")}
	netns.Veth(t, l.node, "eth0", l.client, "eth0")
	l.node.Addr("eth0", "192.0.2.1/24")
	l.node.Addr("eth0", "2001:db8:1::1/64")
	l.client.Addr("eth0", "192.0.2.2/24")
	l.client.Addr("eth0", "2001:db8:1::2/64")
	l.node.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	l.node.Sysctl("net.ipv4.conf.eth0.arp_ignore", "1")
	l.node.MustRun("ip", "route", "add", "local", lanVIP4.String(), "dev", "lo")
	l.node.MustRun("ip", "-6", "route", "add", "local", lanVIP6.String(), "dev", "lo")
	var ln net.Listener
	if err := l.node.Do(func() (err error) { ln, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	waitDAD(t, l.node)
	waitDAD(t, l.client)
	if err := l.node.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		l.nodeMAC = ifi.HardwareAddr.String()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitDAD waits for the namespace's link-local addresses to finish duplicate address
// detection: until then its kernel sends no neighbour solicitation for an answer whose source
// is not one of its own addresses (ours: the external address), so TCP to it would stall.
func waitDAD(t *testing.T, ns *netns.NS) {
	kit.Eventually(t, 10*time.Second, "duplicate address detection in "+ns.Name, func(context.Context) error {
		if out := ns.MustRun("ip", "-6", "addr", "show", "tentative"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("tentative: %s", out)
		}
		return nil
	})
}

// neighMAC is the hardware address the namespace's kernel holds for ip on eth0, "" if none.
func neighMAC(t *testing.T, ns *netns.NS, ip netip.Addr) string {
	out := ns.MustRun("ip", "neigh", "show", ip.String(), "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func dial(ns *netns.NS, ip netip.Addr) error {
	return ns.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, 8080).String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func startResponder(t *testing.T, ns *netns.NS, reg prometheus.Registerer) *Responder {
	r := New(Options{Metrics: reg, Log: testr.New(t), Rescan: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.Do(func() error { return r.Run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r
}

func TestResponderNetns(t *testing.T) {
	l := newLAN(t)
	reg := prometheus.NewRegistry()
	r := startResponder(t, l.node, reg)

	// Stale entries pointing elsewhere: the takeover announcements alone must correct them,
	// without the client asking.
	l.client.MustRun("ip", "neigh", "replace", lanVIP4.String(), "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale")
	l.client.MustRun("ip", "neigh", "replace", lanVIP6.String(), "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale")
	r.Set(map[netip.Addr][]string{lanVIP4: nil, lanVIP6: nil})
	for _, ip := range []netip.Addr{lanVIP4, lanVIP6} {
		kit.Eventually(t, 5*time.Second, "the client's neighbour entry for "+ip.String()+" to hold the node's MAC", func(context.Context) error {
			if m := neighMAC(t, l.client, ip); m != l.nodeMAC {
				return fmt.Errorf("neighbour %q, want %s", m, l.nodeMAC)
			}
			return nil
		})
	}
	if n := testutil.ToFloat64(r.m.gratuitous.WithLabelValues(protoARP, "eth0")); n < 1 {
		t.Errorf("gratuitous ARPs counted: %v", n)
	}

	// Resolution from scratch, then a TCP connection to the address.
	answersResolution := func(stage string) {
		t.Helper()
		for _, ip := range []netip.Addr{lanVIP4, lanVIP6} {
			l.client.MustRun("ip", "neigh", "flush", "dev", "eth0")
			if err := dial(l.client, ip); err != nil {
				t.Fatalf("%s: connecting to %s: %v", stage, ip, err)
			}
			if m := neighMAC(t, l.client, ip); m != l.nodeMAC {
				t.Fatalf("%s: client resolved %s to %q, want %s", stage, ip, m, l.nodeMAC)
			}
		}
	}
	answersResolution("fresh")
	if got := r.Announced(); len(got[lanVIP4]) != 1 || got[lanVIP4][0] != "eth0" || len(got[lanVIP6]) != 1 {
		t.Errorf("Announced() = %v", got)
	}

	// Garbage on the wire is counted and changes nothing.
	injectMalformed(t, l.client)
	kit.Eventually(t, 5*time.Second, "three malformed frames of each protocol counted", func(context.Context) error {
		a := testutil.ToFloat64(r.m.malformed.WithLabelValues(protoARP, "eth0"))
		n := testutil.ToFloat64(r.m.malformed.WithLabelValues(protoNDP, "eth0"))
		if a < 3 || n < 3 {
			return fmt.Errorf("arp %v, ndp %v", a, n)
		}
		return nil
	})
	answersResolution("after malformed frames")

	// Released: nobody answers any more.
	r.Set(nil)
	kit.Eventually(t, 5*time.Second, "every address released", func(context.Context) error {
		if got := r.Announced(); len(got) != 0 {
			return fmt.Errorf("still announced: %v", got)
		}
		return nil
	})
	for _, ip := range []netip.Addr{lanVIP4, lanVIP6} {
		l.client.MustRun("ip", "neigh", "flush", "dev", "eth0")
		if err := dial(l.client, ip); err == nil {
			t.Errorf("connected to released %s", ip)
		}
		if m := neighMAC(t, l.client, ip); m != "" {
			t.Errorf("client resolved released %s to %s", ip, m)
		}
	}
}

// injectMalformed writes broken ARP and NDP frames onto the client's link with a raw socket.
func injectMalformed(t *testing.T, client *netns.NS) {
	t.Helper()
	err := client.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		for _, proto := range []int{unix.ETH_P_ARP, unix.ETH_P_IPV6} {
			c, err := packet.Listen(ifi, packet.Raw, proto, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			var frames [][]byte
			if proto == unix.ETH_P_ARP {
				ok := arpFrame(t, arp.OperationRequest, ifi.HardwareAddr, netip.MustParseAddr("192.0.2.2"), lanVIP4)
				badLen := append([]byte(nil), ok...)
				badLen[14+4] = 8
				frames = [][]byte{ok[:20], badLen, ok[:14+8]}
			} else {
				ok := nsFrame(t, netip.MustParseAddr("2001:db8:1::2"), solicited(t, lanVIP6), lanVIP6, 255, true)
				badSum := append([]byte(nil), ok...)
				badSum[len(badSum)-1] ^= 0xff
				hop := nsFrame(t, netip.MustParseAddr("2001:db8:1::2"), solicited(t, lanVIP6), lanVIP6, 1, true)
				frames = [][]byte{badSum, hop, ok[:14+ipv6HeaderLen+6]}
			}
			for _, f := range frames {
				dst := ethernet.Broadcast
				if proto == unix.ETH_P_IPV6 {
					dst = multicastMAC(solicited(t, lanVIP6))
				}
				copy(f[0:6], dst)
				if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: dst}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
