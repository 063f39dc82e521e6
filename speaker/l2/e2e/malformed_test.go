package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

// Broken ARP and NDP frames from the client are counted and ignored: the owner keeps answering.
func TestMalformedFramesIgnored(t *testing.T) {
	c := newCluster(t, nil)
	all := c.names()
	v4 := "198.51.100.50"
	first := c.node(owner(v4, all))
	v6 := addressesOwnedBy(first.name, all, 1, true)[0]
	c.service("web", false, v4, v6)
	c.expectServed(v4, first)
	c.expectServed(v6, first)

	for range 3 {
		injectMalformed(t, c, netip.MustParseAddr(v4), netip.MustParseAddr(v6))
	}
	kit.Eventually(t, 10*time.Second, "nine malformed frames of each protocol counted", func(context.Context) error {
		a, n := metric(t, first, `fairlead_l2_malformed_frames_total{interface="eth0",protocol="arp"}`),
			metric(t, first, `fairlead_l2_malformed_frames_total{interface="eth0",protocol="ndp"}`)
		if a < 9 || n < 9 {
			return fmt.Errorf("arp %v, ndp %v", a, n)
		}
		return nil
	})
	if ok, err := first.speaker.Exited(); ok {
		t.Fatalf("speaker exited: %v", err)
	}
	c.client.MustRun("ip", "neigh", "flush", "dev", "eth0")
	c.expectServed(v4, first)
	c.expectServed(v6, first)
	if n := metric(t, first, `fairlead_l2_answers_total{interface="eth0",protocol="arp"}`); n < 1 {
		t.Errorf("ARP answers counted: %v", n)
	}
}

// injectMalformed writes three broken ARP frames and three broken neighbour solicitations,
// each asking for an address the node owns, onto the client's link.
func injectMalformed(t *testing.T, c *cluster, v4, v6 netip.Addr) {
	t.Helper()
	err := c.client.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		src4 := netip.MustParseAddr("192.0.2.100")
		src6 := netip.MustParseAddr("2001:db8:0:1::100")
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, src4, ethernet.Broadcast, v4)
		if err != nil {
			return err
		}
		pb, _ := p.MarshalBinary()
		ok4, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		badHlen := append([]byte(nil), ok4...)
		badHlen[14+4] = 8
		badProto := append([]byte(nil), ok4...)
		badProto[14+2] = 0x86 // protocol type IPv6: not something ARP resolves

		g, _ := ndp.SolicitedNodeMulticast(v6)
		gmac := net.HardwareAddr{0x33, 0x33, g.As16()[12], g.As16()[13], g.As16()[14], g.As16()[15]}
		ns := func(hop byte) []byte {
			body, _ := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: v6,
				Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}, src6, g)
			ip := make([]byte, 40, 40+len(body))
			ip[0] = 0x60
			binary.BigEndian.PutUint16(ip[4:], uint16(len(body)))
			ip[6], ip[7] = 58, hop
			s, d := src6.As16(), g.As16()
			copy(ip[8:], s[:])
			copy(ip[24:], d[:])
			f, _ := (&ethernet.Frame{Destination: gmac, Source: ifi.HardwareAddr, EtherType: ethernet.EtherTypeIPv6, Payload: append(ip, body...)}).MarshalBinary()
			return f
		}
		badSum := ns(255)
		badSum[len(badSum)-1] ^= 0xff
		// An option claiming 16 bytes where 8 are left, under a correct checksum. (A frame cut
		// short would not do: the bridge's multicast snooping drops it before any node sees it.)
		nsBody := (&icmp.RawBody{Data: append(make([]byte, 4), v6.AsSlice()...)}).Data
		nsBody = append(nsBody, 1, 2)
		nsBody = append(nsBody, ifi.HardwareAddr...)
		badOpt, _ := (&icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: &icmp.RawBody{Data: nsBody}}).Marshal(icmp.IPv6PseudoHeader(src6.AsSlice(), g.AsSlice()))
		badOptFrame := ns(255)
		badOptFrame = append(badOptFrame[:14+40], badOpt...)
		frames := map[int][][]byte{
			unix.ETH_P_ARP:  {ok4[:14+10], badHlen, badProto},
			unix.ETH_P_IPV6: {badSum, ns(64), badOptFrame},
		}
		for proto, fs := range frames {
			conn, err := packet.Listen(ifi, packet.Raw, proto, nil)
			if err != nil {
				return err
			}
			for _, f := range fs {
				if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[:6])}); err != nil {
					conn.Close()
					return err
				}
			}
			conn.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// metric reads one sample from the speaker's metrics endpoint on its namespace's loopback:
// -1 while it does not serve, 0 while the series is absent.
func metric(t testing.TB, n *node, series string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := scrape.GetPlain(ctx, scrape.InNetNS(n.ns), "127.0.0.1:7474", "/metrics")
	if err != nil || code != http.StatusOK {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// membersAlive is a condition for kit.Eventually: n's speaker counts want members alive.
func membersAlive(t testing.TB, n *node, want float64) func(context.Context) error {
	return func(context.Context) error {
		if v := metric(t, n, "fairlead_speaker_members_alive"); v != want {
			return fmt.Errorf("fairlead_speaker_members_alive %v", v)
		}
		return nil
	}
}
