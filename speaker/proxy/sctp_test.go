package proxy_test

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/test/netns"
)

// This kernel has SCTP connection tracking and NAT but no SCTP sockets, so SCTP traffic is
// proven with raw sockets: the client sends an INIT to the Service, and the test checks that
// it reaches the endpoint DNATed to the endpoint's address and port.
func TestSCTPIsForwarded(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	svc := c.createService("sig", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports = []corev1.ServicePort{{Name: "sctp", Protocol: corev1.ProtocolSCTP, Port: 80}}
	})
	c.setEndpoints("sig", ready(a))
	v4, _ := clusterIPs(svc)
	np := uint16(svc.Spec.Ports[0].NodePort)

	for i, dst := range []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(v4), 80), netip.AddrPortFrom(netip.MustParseAddr(nodeLAN4), np)} {
		tag := uint32(0xf1000 + i) // identifies the INIT: masquerading rewrites the source port
		c.eventually(fmt.Sprintf("SCTP INIT to %s reaches pod-a", dst), func() error {
			got := make(chan error, 1)
			if err := a.ns.Do(func() error {
				conn, err := net.ListenPacket("ip4:132", a.ip4)
				if err != nil {
					return err
				}
				go func() { got <- awaitInit(conn, tag, echoPort, podGW4) }()
				return nil
			}); err != nil {
				return err
			}
			if err := sendInit(c.client, dst, tag); err != nil {
				return err
			}
			return <-got
		})
	}
}

// sendInit sends one SCTP INIT chunk with the given initiate tag from ns.
func sendInit(ns *netns.NS, dst netip.AddrPort, tag uint32) error {
	return ns.Do(func() error {
		conn, err := net.Dial("ip4:132", dst.Addr().String())
		if err != nil {
			return err
		}
		defer conn.Close()
		pkt := make([]byte, 12+20)
		binary.BigEndian.PutUint16(pkt[0:], 40000)
		binary.BigEndian.PutUint16(pkt[2:], dst.Port())
		// Verification tag 0 (required in INIT), checksum filled below.
		init := pkt[12:]
		init[0] = 1                                 // INIT
		binary.BigEndian.PutUint16(init[2:], 20)    // chunk length
		binary.BigEndian.PutUint32(init[4:], tag)   // initiate tag
		binary.BigEndian.PutUint32(init[8:], 65535) // a_rwnd
		binary.BigEndian.PutUint16(init[12:], 1)    // outbound streams
		binary.BigEndian.PutUint16(init[14:], 1)    // inbound streams
		binary.BigEndian.PutUint32(init[16:], 1)    // initial TSN
		sum := crc32.Checksum(pkt, crc32.MakeTable(crc32.Castagnoli))
		binary.LittleEndian.PutUint32(pkt[8:], sum)
		_, err = conn.Write(pkt)
		return err
	})
}

// awaitInit waits for the SCTP INIT carrying tag, and checks it arrived DNATed to dstPort
// from the masqueraded source src.
func awaitInit(conn net.PacketConn, tag uint32, dstPort int, src string) error {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no SCTP INIT arrived: %w", err)
		}
		if n < 32 || buf[12] != 1 || binary.BigEndian.Uint32(buf[16:]) != tag {
			continue
		}
		if p := binary.BigEndian.Uint16(buf[2:]); int(p) != dstPort {
			return fmt.Errorf("INIT arrived on port %d, want %d", p, dstPort)
		}
		if from.String() != src {
			return fmt.Errorf("INIT arrived from %s, want %s (masqueraded)", from, src)
		}
		return nil
	}
}
