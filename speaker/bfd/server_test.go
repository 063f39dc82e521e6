package bfd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

// pair is two namespaces joined by a veth, with IPv4 and IPv6 addresses.
func pair(t *testing.T) (a, b *netns.NS) {
	a, b = netns.New(t, "bfda"), netns.New(t, "bfdb")
	netns.Veth(t, a, "eth0", b, "eth0")
	a.Addr("eth0", "192.0.2.1/24")
	a.Addr("eth0", "2001:db8::1/64")
	b.Addr("eth0", "192.0.2.2/24")
	b.Addr("eth0", "2001:db8::2/64")
	return a, b
}

func waitState(t *testing.T, s *Session, want State) {
	t.Helper()
	kit.Eventually(t, 15*time.Second, "state "+want.String(), func(context.Context) error {
		if info := s.Info(); info.State != want {
			return fmt.Errorf("state %s (%+v)", info.State, info)
		}
		return nil
	})
}

// Two Servers in two namespaces bring single-hop sessions up over IPv4 and IPv6 and a
// multihop one over IPv4, negotiate their timers, and notice a cut link.
func TestServersOverVeth(t *testing.T) {
	a, b := pair(t)
	sa, sb := NewServer(logr.Discard(), nil), NewServer(logr.Discard(), nil)
	t.Cleanup(sa.Close)
	t.Cleanup(sb.Close)
	ca := Config{DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 80 * time.Millisecond, DetectMult: 3}
	cb := Config{DesiredMinTx: 60 * time.Millisecond, RequiredMinRx: 40 * time.Millisecond, DetectMult: 4}
	type sess struct{ a, b *Session }
	var ss []sess
	for _, c := range []struct {
		aAddr, bAddr string
		multihop     bool
	}{{"192.0.2.1", "192.0.2.2", false}, {"2001:db8::1", "2001:db8::2", false}, {"192.0.2.1", "192.0.2.2", true}} {
		var x sess
		if err := a.Do(func() (err error) {
			x.a, err = sa.Add(Peer{Remote: netip.MustParseAddr(c.bAddr), Multihop: c.multihop, MinTTL: 250}, ca, nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.Do(func() (err error) {
			x.b, err = sb.Add(Peer{Remote: netip.MustParseAddr(c.aAddr), Local: netip.MustParseAddr(c.bAddr), Multihop: c.multihop, MinTTL: 250}, cb, nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, x)
	}
	for i, x := range ss {
		waitState(t, x.a, Up)
		waitState(t, x.b, Up)
		kit.Eventually(t, 10*time.Second, fmt.Sprintf("session %d's poll to finish", i), func(context.Context) error {
			if x.a.Info().Polling || x.b.Info().Polling {
				return errors.New("still polling")
			}
			return nil
		})
		ia, ib := x.a.Info(), x.b.Info()
		// A: tx max(50, 40) = 50, detect 4 × max(80, 60) = 320; B: tx max(60, 80) = 80,
		// detect 3 × max(40, 50) = 150.
		if ia.TxInterval != 50*time.Millisecond || ia.DetectTime != 320*time.Millisecond ||
			ib.TxInterval != 80*time.Millisecond || ib.DetectTime != 150*time.Millisecond {
			t.Errorf("session %d: a %+v, b %+v", i, ia, ib)
		}
	}
	b.MustRun("ip", "link", "set", "eth0", "down")
	for _, x := range ss {
		waitState(t, x.a, Down)
		if d := x.a.Info().Diag; d != DiagDetectionExpired {
			t.Errorf("diag %q, want detection time expired", d)
		}
	}
}

// sendWithTTL sends one Down packet with Your Discriminator 0 from ns to dst:port with the
// given TTL (hop limit), as an attacker off-link (or a misconfigured hop count) would.
func sendWithTTL(t *testing.T, ns *netns.NS, dst string, port, ttl int) {
	t.Helper()
	p := Packet{State: Down, DetectMult: 3, MyDisc: 77, DesiredMinTx: time.Second, RequiredMinRx: time.Second}
	err := ns.Do(func() error {
		addr := netip.MustParseAddr(dst)
		network := "udp4"
		if addr.Is6() {
			network = "udp6"
		}
		c, err := net.ListenUDP(network, &net.UDPAddr{Port: 50000 + ttl})
		if err != nil {
			return err
		}
		defer c.Close()
		if addr.Is6() {
			err = ipv6.NewConn(c).SetHopLimit(ttl)
		} else {
			err = ipv4.NewConn(c).SetTTL(ttl)
		}
		if err != nil {
			return err
		}
		_, err = c.WriteToUDPAddrPort(p.Marshal(), netip.AddrPortFrom(addr, uint16(port)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A single-hop session accepts only TTL 255 (RFC 5881 section 5); a multihop one accepts
// its minimum TTL and above.
func TestTTLCheck(t *testing.T) {
	for _, c := range []struct {
		name       string
		peer, self string
		multihop   bool
		low, ok    int
	}{
		{"single hop IPv4", "192.0.2.1", "192.0.2.2", false, 254, 255},
		{"single hop IPv6", "2001:db8::1", "2001:db8::2", false, 254, 255},
		{"multihop IPv4 min 250", "192.0.2.1", "192.0.2.2", true, 249, 250},
		{"multihop IPv6 min 250", "2001:db8::1", "2001:db8::2", true, 249, 250},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := pair(t)
			sb := NewServer(logr.Discard(), nil)
			t.Cleanup(sb.Close)
			var s *Session
			if err := b.Do(func() (err error) {
				s, err = sb.Add(Peer{Remote: netip.MustParseAddr(c.peer), Multihop: c.multihop, MinTTL: 250},
					Config{DesiredMinTx: time.Second, RequiredMinRx: time.Second, DetectMult: 3}, nil)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			port := PortSingleHop
			if c.multihop {
				port = PortMultihop
			}
			for range 3 {
				sendWithTTL(t, a, c.self, port, c.low)
			}
			time.Sleep(300 * time.Millisecond)
			if i := s.Info(); i.State != Down || i.RemoteDisc != 0 {
				t.Fatalf("a packet with TTL %d was accepted: %+v", c.low, i)
			}
			sendWithTTL(t, a, c.self, port, c.ok)
			waitState(t, s, Init)
			if d := s.Info().RemoteDisc; d != 77 {
				t.Errorf("remote discriminator %d, want 77", d)
			}
		})
	}
}
