package l2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	ourMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	clientV4  = netip.MustParseAddr("192.0.2.2")
	clientV6  = netip.MustParseAddr("2001:db8::2")
	vip4      = netip.MustParseAddr("192.0.2.100")
	vip6      = netip.MustParseAddr("2001:db8::100")
	other4    = netip.MustParseAddr("192.0.2.101")
	testLink  = &link{name: "eth0", index: 2, mac: ourMAC, linkLocal: netip.MustParseAddr("fe80::1")}
)

func ownsVIPs(a netip.Addr) bool { return a == vip4 || a == vip6 }

func arpFrame(t testing.TB, op arp.Operation, sha net.HardwareAddr, spa netip.Addr, tpa netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(op, sha, spa, net.HardwareAddr{0, 0, 0, 0, 0, 0}, tpa)
	if err != nil {
		t.Fatal(err)
	}
	b, err := marshalARP(p, ethernet.Broadcast, sha)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nsFrame builds a neighbour solicitation for target from src, sent to dst.
func nsFrame(t testing.TB, src, dst, target netip.Addr, hopLimit byte, withSLLA bool) []byte {
	t.Helper()
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if withSLLA {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC}}
	}
	body, err := ndp.MarshalMessageChecksum(ns, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	ip := make([]byte, ipv6HeaderLen)
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(body)))
	ip[6], ip[7] = protoICMPv6, hopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	f := &ethernet.Frame{Destination: multicastMAC(dst), Source: clientMAC, EtherType: ethernet.EtherTypeIPv6, Payload: append(ip, body...)}
	if !dst.IsMulticast() {
		f.Destination = ourMAC
	}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func solicited(t testing.TB, a netip.Addr) netip.Addr {
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestARPReply(t *testing.T) {
	out, err := reply(testLink, arpFrame(t, arp.OperationRequest, clientMAC, clientV4, vip4), ownsVIPs)
	if err != nil || out == nil {
		t.Fatalf("reply = %x, %v; want an answer", out, err)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(out); err != nil {
		t.Fatal(err)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Destination, clientMAC) || !bytes.Equal(f.Source, ourMAC) || f.EtherType != ethernet.EtherTypeARP {
		t.Errorf("frame %s → %s type %v", f.Source, f.Destination, f.EtherType)
	}
	if p.Operation != arp.OperationReply || p.SenderIP != vip4 || !bytes.Equal(p.SenderHardwareAddr, ourMAC) ||
		p.TargetIP != clientV4 || !bytes.Equal(p.TargetHardwareAddr, clientMAC) {
		t.Errorf("reply %+v", p)
	}
}

func TestNDPReply(t *testing.T) {
	check := func(t *testing.T, out []byte, dst netip.Addr, dstMAC net.HardwareAddr, solicitedFlag bool) {
		t.Helper()
		var f ethernet.Frame
		if err := f.UnmarshalBinary(out); err != nil {
			t.Fatal(err)
		}
		h, err := parseIPv6(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if h.dst != dst || !bytes.Equal(f.Destination, dstMAC) || h.hopLimit != 255 || h.src != testLink.linkLocal {
			t.Errorf("NA %s → %s (%s), hop limit %d", h.src, h.dst, f.Destination, h.hopLimit)
		}
		if icmpChecksum(h.src, h.dst, h.payload) != 0 {
			t.Error("bad checksum")
		}
		m, err := ndp.ParseMessage(h.payload)
		if err != nil {
			t.Fatal(err)
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != vip6 || !na.Override || na.Solicited != solicitedFlag || na.Router {
			t.Fatalf("message %#v", m)
		}
		if len(na.Options) != 1 || !bytes.Equal(na.Options[0].(*ndp.LinkLayerAddress).Addr, ourMAC) {
			t.Errorf("options %#v", na.Options)
		}
	}
	t.Run("multicast solicitation", func(t *testing.T) {
		out, err := reply(testLink, nsFrame(t, clientV6, solicited(t, vip6), vip6, 255, true), ownsVIPs)
		if err != nil || out == nil {
			t.Fatalf("reply = %x, %v", out, err)
		}
		check(t, out, clientV6, clientMAC, true)
	})
	t.Run("unicast probe without link-layer option", func(t *testing.T) {
		out, err := reply(testLink, nsFrame(t, clientV6, vip6, vip6, 255, false), ownsVIPs)
		if err != nil || out == nil {
			t.Fatalf("reply = %x, %v", out, err)
		}
		check(t, out, clientV6, clientMAC, true)
	})
	t.Run("duplicate address detection", func(t *testing.T) {
		out, err := reply(testLink, nsFrame(t, netip.IPv6Unspecified(), solicited(t, vip6), vip6, 255, false), ownsVIPs)
		if err != nil || out == nil {
			t.Fatalf("reply = %x, %v", out, err)
		}
		check(t, out, allNodes, multicastMAC(allNodes), false)
	})
}

func TestIgnoredAndMalformed(t *testing.T) {
	truncate := func(b []byte, n int) []byte { return b[:n] }
	corrupt := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 0xff; return b }
	okNS := nsFrame(t, clientV6, solicited(t, vip6), vip6, 255, true)
	badHlen := arpFrame(t, arp.OperationRequest, clientMAC, clientV4, vip4)
	badHlen[14+4] = 8
	for _, tc := range []struct {
		name      string
		frame     []byte
		malformed bool
	}{
		{"ARP for an address we do not own", arpFrame(t, arp.OperationRequest, clientMAC, clientV4, other4), false},
		{"ARP reply", arpFrame(t, arp.OperationReply, clientMAC, clientV4, vip4), false},
		{"gratuitous ARP from another host", arpFrame(t, arp.OperationRequest, clientMAC, vip4, vip4), false},
		{"our own request", arpFrame(t, arp.OperationRequest, ourMAC, clientV4, vip4), false},
		{"solicitation for an address we do not own", nsFrame(t, clientV6, solicited(t, vip6), netip.MustParseAddr("2001:db8::101"), 255, true), false},
		{"runt ethernet", []byte{1, 2, 3}, true},
		{"truncated ARP", truncate(arpFrame(t, arp.OperationRequest, clientMAC, clientV4, vip4), 30), true},
		{"ARP with 8-byte hardware addresses", badHlen, true},
		{"ARP request from broadcast", arpFrame(t, arp.OperationRequest, ethernet.Broadcast, clientV4, vip4), true},
		{"solicitation with hop limit 64", nsFrame(t, clientV6, solicited(t, vip6), vip6, 64, true), true},
		{"solicitation with a bad checksum", corrupt(okNS, len(okNS)-1), true},
		{"IPv6 payload length beyond the frame", corrupt(okNS, 14+4), true},
		{"truncated solicitation", truncate(okNS, 14+ipv6HeaderLen+10), true},
		{"DAD with a source link-layer option", nsFrame(t, netip.IPv6Unspecified(), solicited(t, vip6), vip6, 255, true), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := reply(testLink, tc.frame, ownsVIPs)
			if out != nil {
				t.Fatalf("answered: %x", out)
			}
			if got := errors.Is(err, errMalformed); got != tc.malformed {
				t.Fatalf("malformed = %v (%v), want %v", got, err, tc.malformed)
			}
		})
	}
}

func TestAnnouncements(t *testing.T) {
	garps, err := gratuitousARP(testLink, vip4)
	if err != nil {
		t.Fatal(err)
	}
	var f ethernet.Frame
	var ops []arp.Operation
	for _, b := range garps {
		if err := f.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Destination, ethernet.Broadcast) || p.SenderIP != vip4 || p.TargetIP != vip4 || !bytes.Equal(p.SenderHardwareAddr, ourMAC) {
			t.Errorf("gratuitous ARP %s %+v", f.Destination, p)
		}
		ops = append(ops, p.Operation)
		// Our own announcement, seen again, must not be answered.
		if out, err := reply(testLink, b, ownsVIPs); out != nil || err != nil {
			t.Errorf("reply to our own gratuitous ARP = %x, %v", out, err)
		}
	}
	if len(ops) != 2 || ops[0] != arp.OperationRequest || ops[1] != arp.OperationReply {
		t.Errorf("gratuitous ARP operations %v, want a request and a reply", ops)
	}

	b, err := unsolicitedNA(testLink, vip6)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	h, err := parseIPv6(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ndp.ParseMessage(h.payload)
	if err != nil {
		t.Fatal(err)
	}
	na := m.(*ndp.NeighborAdvertisement)
	if h.dst != allNodes || !na.Override || na.Solicited || na.TargetAddress != vip6 || icmpChecksum(h.src, h.dst, h.payload) != 0 {
		t.Errorf("unsolicited NA to %s: %+v", h.dst, na)
	}
}

// FuzzReply drives the frame handler with arbitrary bytes: it must never panic, and whatever it
// answers must be a well-formed answer, from our address, about an address we own.
func FuzzReply(f *testing.F) {
	f.Add(arpFrame(f, arp.OperationRequest, clientMAC, clientV4, vip4))
	f.Add(nsFrame(f, clientV6, solicited(f, vip6), vip6, 255, true))
	f.Add(nsFrame(f, netip.IPv6Unspecified(), solicited(f, vip6), vip6, 255, false))
	f.Add(nsFrame(f, clientV6, vip6, vip6, 255, false))
	f.Fuzz(func(t *testing.T, frame []byte) {
		out, err := reply(testLink, frame, ownsVIPs)
		if err != nil && !errors.Is(err, errMalformed) {
			t.Fatalf("error not marked malformed: %v", err)
		}
		if out == nil {
			return
		}
		if err != nil {
			t.Fatalf("answer and error: %v", err)
		}
		var ef ethernet.Frame
		if err := ef.UnmarshalBinary(out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ef.Source, ourMAC) {
			t.Fatalf("answer from %s", ef.Source)
		}
		switch ef.EtherType {
		case ethernet.EtherTypeARP:
			var p arp.Packet
			if err := p.UnmarshalBinary(ef.Payload); err != nil || p.Operation != arp.OperationReply || !ownsVIPs(p.SenderIP) {
				t.Fatalf("bad ARP answer %+v %v", p, err)
			}
		case ethernet.EtherTypeIPv6:
			h, err := parseIPv6(ef.Payload)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ndp.ParseMessage(h.payload)
			if err != nil {
				t.Fatal(err)
			}
			if na, ok := m.(*ndp.NeighborAdvertisement); !ok || !ownsVIPs(na.TargetAddress) {
				t.Fatalf("bad NDP answer %#v", m)
			}
		default:
			t.Fatalf("answer of type %v", ef.EtherType)
		}
	})
}
