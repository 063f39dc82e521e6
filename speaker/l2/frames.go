package l2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// This file is the pure part of the responder: frames in, frames out, no sockets. Everything
// a hostile or broken neighbour can send reaches these functions first, so they are what the
// fuzz target drives.

// link is what frame handling knows about the interface a frame arrived on.
type link struct {
	name  string
	index int
	mac   net.HardwareAddr
	// linkLocal is the interface's IPv6 link-local address, the preferred source of neighbour
	// advertisements (RFC 4861 §4.4). Invalid when the interface has none; the target address
	// is used then.
	linkLocal netip.Addr
}

// errMalformed marks frames that are not valid ARP or NDP: counted, never answered.
var errMalformed = errors.New("malformed frame")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, a...))
}

const (
	ipv6HeaderLen = 40
	protoICMPv6   = 58
	// NDP messages must arrive with hop limit 255: proof they were not forwarded by a router
	// (RFC 4861 §7.1.1).
	ndpHopLimit = 255
)

var allNodes = netip.MustParseAddr("ff02::1")

// reply returns the frame answering frame when it asks for an address owns reports for this
// link, nil when the frame is valid but not ours to answer, or an error wrapping errMalformed.
func reply(l *link, frame []byte, owns func(netip.Addr) bool) ([]byte, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		return nil, malformed("ethernet: %v", err)
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		return arpReply(l, &f, owns)
	case ethernet.EtherTypeIPv6:
		return ndpReply(l, &f, owns)
	}
	return nil, nil
}

func arpReply(l *link, f *ethernet.Frame, owns func(netip.Addr) bool) ([]byte, error) {
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, malformed("arp: %v", err)
	}
	if p.HardwareType != 1 || p.ProtocolType != uint16(ethernet.EtherTypeIPv4) ||
		p.HardwareAddrLength != 6 || p.IPLength != 4 {
		return nil, malformed("arp: not Ethernet/IPv4 (htype %d, ptype %#x, hlen %d, plen %d)",
			p.HardwareType, p.ProtocolType, p.HardwareAddrLength, p.IPLength)
	}
	if p.Operation != arp.OperationRequest {
		return nil, nil
	}
	// Another host announcing the address itself (gratuitous ARP) is not a question; and never
	// answer ourselves.
	if p.SenderIP == p.TargetIP || bytes.Equal(p.SenderHardwareAddr, l.mac) {
		return nil, nil
	}
	if !owns(p.TargetIP) {
		return nil, nil
	}
	if isBroadcastOrMulticast(p.SenderHardwareAddr) {
		return nil, malformed("arp: request from group address %s", p.SenderHardwareAddr)
	}
	r, err := arp.NewPacket(arp.OperationReply, l.mac, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
	if err != nil {
		return nil, malformed("arp: %v", err)
	}
	return marshalARP(r, p.SenderHardwareAddr, l.mac)
}

func isBroadcastOrMulticast(hw net.HardwareAddr) bool { return len(hw) > 0 && hw[0]&1 == 1 }

func marshalARP(p *arp.Packet, dst, src net.HardwareAddr) ([]byte, error) {
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return (&ethernet.Frame{Destination: dst, Source: src, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
}

// gratuitousARP announces that ip is now at l's hardware address, broadcast in both forms
// hosts are known to act on: a request for ip from ip (RFC 5227's ARP announcement, which
// Linux applies at once even within its locktime) and a reply to the broadcast address (which
// some other stacks and switches only learn from).
func gratuitousARP(l *link, ip netip.Addr) ([][]byte, error) {
	req, err := arp.NewPacket(arp.OperationRequest, l.mac, ip, ethernet.Broadcast, ip)
	if err != nil {
		return nil, err
	}
	// The target hardware address of an announcement is ignored; zero is what RFC 5227 says.
	req.TargetHardwareAddr = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	rep, err := arp.NewPacket(arp.OperationReply, l.mac, ip, ethernet.Broadcast, ip)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, p := range []*arp.Packet{req, rep} {
		b, err := marshalARP(p, ethernet.Broadcast, l.mac)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

type ipv6Header struct {
	src, dst netip.Addr
	hopLimit uint8
	next     uint8
	payload  []byte
}

func parseIPv6(b []byte) (ipv6Header, error) {
	if len(b) < ipv6HeaderLen {
		return ipv6Header{}, malformed("ipv6: %d bytes, shorter than a header", len(b))
	}
	if b[0]>>4 != 6 {
		return ipv6Header{}, malformed("ipv6: version %d", b[0]>>4)
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	if ipv6HeaderLen+plen > len(b) {
		return ipv6Header{}, malformed("ipv6: payload length %d, only %d bytes", plen, len(b)-ipv6HeaderLen)
	}
	return ipv6Header{
		src:      netip.AddrFrom16([16]byte(b[8:24])),
		dst:      netip.AddrFrom16([16]byte(b[24:40])),
		next:     b[6],
		hopLimit: b[7],
		// Ethernet pads short frames; the header's length is the truth.
		payload: b[ipv6HeaderLen : ipv6HeaderLen+plen],
	}, nil
}

func ndpReply(l *link, f *ethernet.Frame, owns func(netip.Addr) bool) ([]byte, error) {
	h, err := parseIPv6(f.Payload)
	if err != nil {
		return nil, err
	}
	if h.next != protoICMPv6 || len(h.payload) == 0 || h.payload[0] != byte(ipv6.ICMPTypeNeighborSolicitation) {
		return nil, nil
	}
	if h.hopLimit != ndpHopLimit {
		return nil, malformed("ndp: hop limit %d, want 255", h.hopLimit)
	}
	if len(h.payload) < 4 || h.payload[1] != 0 {
		return nil, malformed("ndp: bad ICMPv6 header")
	}
	if icmpChecksum(h.src, h.dst, h.payload) != 0 {
		return nil, malformed("ndp: bad ICMPv6 checksum")
	}
	m, err := ndp.ParseMessage(h.payload)
	if err != nil {
		return nil, malformed("%v", err)
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok {
		return nil, nil
	}
	if bytes.Equal(f.Source, l.mac) || !owns(ns.TargetAddress) {
		return nil, nil
	}
	var srcLL net.HardwareAddr
	for _, o := range ns.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Source {
			srcLL = lla.Addr
		}
	}
	// RFC 4861 §7.1.1: a solicitation from the unspecified address (duplicate address
	// detection) carries no source link-layer option, and is answered to all nodes.
	dad := h.src.IsUnspecified()
	switch {
	case dad && srcLL != nil:
		return nil, malformed("ndp: solicitation from :: with a source link-layer option")
	case dad && !isSolicitedNode(h.dst):
		return nil, malformed("ndp: duplicate address detection to %s", h.dst)
	case h.src.IsMulticast():
		return nil, malformed("ndp: solicitation from multicast %s", h.src)
	}
	dst, dstMAC := h.src, srcLL
	if dstMAC == nil {
		dstMAC = f.Source
	}
	if dad {
		dst, dstMAC = allNodes, multicastMAC(allNodes)
	}
	if isBroadcastOrMulticast(dstMAC) && !dad {
		return nil, malformed("ndp: solicitation from group address %s", dstMAC)
	}
	na := &ndp.NeighborAdvertisement{
		Solicited:     !dad,
		Override:      true,
		TargetAddress: ns.TargetAddress,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: l.mac}},
	}
	return marshalNA(l, na, dst, dstMAC)
}

// unsolicitedNA tells all nodes that ip is now at l's hardware address. The override flag
// makes receivers replace the link-layer address they had (RFC 4861 §7.2.6).
func unsolicitedNA(l *link, ip netip.Addr) ([]byte, error) {
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: l.mac}},
	}
	return marshalNA(l, na, allNodes, multicastMAC(allNodes))
}

func marshalNA(l *link, na *ndp.NeighborAdvertisement, dst netip.Addr, dstMAC net.HardwareAddr) ([]byte, error) {
	src := l.linkLocal
	if !src.IsValid() {
		src = na.TargetAddress
	}
	body, err := ndp.MarshalMessageChecksum(na, src, dst)
	if err != nil {
		return nil, err
	}
	ip := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(body))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(body)))
	ip[6], ip[7] = protoICMPv6, ndpHopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	ip = append(ip, body...)
	return (&ethernet.Frame{Destination: dstMAC, Source: l.mac, EtherType: ethernet.EtherTypeIPv6, Payload: ip}).MarshalBinary()
}

// multicastMAC is the Ethernet group address IPv6 multicast group a maps to (RFC 2464 §7).
func multicastMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

func isSolicitedNode(a netip.Addr) bool {
	b := a.As16()
	return a.Is6() && bytes.Equal(b[:13], []byte{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff})
}

// icmpChecksum is the ICMPv6 checksum over the pseudo-header and msg; 0 means msg's own
// checksum field is right.
func icmpChecksum(src, dst netip.Addr, msg []byte) uint16 {
	ph := icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice())
	binary.BigEndian.PutUint32(ph[32:36], uint32(len(msg)))
	ph[39] = protoICMPv6
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ph)
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
