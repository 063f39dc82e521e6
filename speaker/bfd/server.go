package bfd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"

	"github.com/go-logr/logr"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP ports of RFC 5881 (single hop) and RFC 5883 (multihop), and the source port range both
// require.
const (
	PortSingleHop = 3784
	PortMultihop  = 4784
	srcPortMin    = 49152
	srcPortMax    = 65535
	// ttlMax is what every packet is sent with. A single-hop peer accepts only this (the
	// Generalized TTL Security Mechanism of RFC 5082): a packet that crossed a router cannot
	// carry it, so nobody off-link can spoof a session.
	ttlMax = 255
)

// Peer identifies a session: one per peer address and hop mode.
type Peer struct {
	Remote netip.Addr
	// Local is the source address; unset lets the kernel pick.
	Local    netip.Addr
	Multihop bool
	// MinTTL is the least TTL (hop limit) accepted from a multihop peer. Single-hop peers must
	// send 255.
	MinTTL uint8
}

type peerKey struct {
	remote   netip.Addr
	multihop bool
}

func (p Peer) key() peerKey { return peerKey{p.Remote, p.Multihop} }

type listenKey struct {
	v6, multihop bool
}

type entry struct {
	peer Peer
	sess *Session
	conn *net.UDPConn
}

// Server runs BFD sessions over UDP: it listens on the BFD ports of each family and hop mode
// in use, matches arriving packets to sessions, and sends each session's packets from a
// socket of its own. All sockets are opened in the network namespace of the goroutine that
// calls Add.
type Server struct {
	log   logr.Logger
	clock Clock

	mu        sync.Mutex
	byDisc    map[uint32]*entry
	byPeer    map[peerKey]*entry
	listeners map[listenKey]*net.UDPConn
	closed    bool
}

// NewServer returns a Server with no sessions and no sockets.
func NewServer(log logr.Logger, clock Clock) *Server {
	if clock == nil {
		clock = RealClock
	}
	return &Server{log: log, clock: clock, byDisc: map[uint32]*entry{}, byPeer: map[peerKey]*entry{},
		listeners: map[listenKey]*net.UDPConn{}}
}

// Add starts a session with peer; notify hears every change of its state. A session for the
// same peer address and hop mode must not exist.
func (s *Server) Add(p Peer, c Config, notify func(State, Diag)) (*Session, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !p.Remote.IsValid() {
		return nil, fmt.Errorf("bfd: no peer address")
	}
	p.Remote = p.Remote.Unmap()
	p.Local = p.Local.Unmap()
	if p.Local.IsValid() && p.Local.Is4() != p.Remote.Is4() {
		return nil, fmt.Errorf("bfd: source %s and peer %s are of different families", p.Local, p.Remote)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("bfd: server closed")
	}
	if _, ok := s.byPeer[p.key()]; ok {
		return nil, fmt.Errorf("bfd: a session with %s exists already", p.Remote)
	}
	if err := s.listen(listenKey{v6: p.Remote.Is6(), multihop: p.Multihop}); err != nil {
		return nil, err
	}
	conn, err := sourceSocket(p)
	if err != nil {
		return nil, err
	}
	disc := s.discriminator()
	port := PortSingleHop
	if p.Multihop {
		port = PortMultihop
	}
	dst := netip.AddrPortFrom(p.Remote, uint16(port))
	log := s.log.WithValues("peer", p.Remote)
	e := &entry{peer: p, conn: conn}
	e.sess = NewSession(Options{LocalDisc: disc, Config: c, Clock: s.clock,
		Send: func(pkt Packet) {
			if _, err := conn.WriteToUDPAddrPort(pkt.Marshal(), dst); err != nil {
				log.V(2).Info("BFD send failed", "err", err)
			}
		},
		Notify: notify,
	})
	s.byDisc[disc] = e
	s.byPeer[p.key()] = e
	e.sess.Start()
	return e.sess, nil
}

// Remove ends the session with peer (telling it AdminDown) and closes its socket.
func (s *Server) Remove(p Peer) {
	p.Remote = p.Remote.Unmap()
	s.mu.Lock()
	e := s.byPeer[p.key()]
	if e != nil {
		delete(s.byPeer, p.key())
		delete(s.byDisc, e.sess.localDisc)
	}
	s.mu.Unlock()
	if e != nil {
		e.sess.Close()
		e.conn.Close()
	}
}

// Close ends every session and closes every socket.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	entries := make([]*entry, 0, len(s.byPeer))
	for _, e := range s.byPeer {
		entries = append(entries, e)
	}
	s.byPeer, s.byDisc = map[peerKey]*entry{}, map[uint32]*entry{}
	ls := s.listeners
	s.listeners = map[listenKey]*net.UDPConn{}
	s.mu.Unlock()
	for _, e := range entries {
		e.sess.Close()
		e.conn.Close()
	}
	for _, l := range ls {
		l.Close()
	}
}

func (s *Server) discriminator() uint32 {
	for {
		d := rand.Uint32()
		if _, taken := s.byDisc[d]; d != 0 && !taken {
			return d
		}
	}
}

// sourceSocket opens the socket a session sends from: a random source port in 49152-65535
// (RFC 5881 section 4), TTL 255.
func sourceSocket(p Peer) (*net.UDPConn, error) {
	network := "udp4"
	if p.Remote.Is6() {
		network = "udp6"
	}
	var laddr net.UDPAddr
	if p.Local.IsValid() {
		laddr.IP = p.Local.AsSlice()
	}
	var lastErr error
	for range 64 {
		laddr.Port = srcPortMin + rand.IntN(srcPortMax-srcPortMin+1)
		c, err := net.ListenUDP(network, &laddr)
		if err != nil {
			lastErr = err
			continue
		}
		if p.Remote.Is6() {
			err = ipv6.NewConn(c).SetHopLimit(ttlMax)
		} else {
			err = ipv4.NewConn(c).SetTTL(ttlMax)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("bfd: setting TTL 255: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("bfd: no free source port for %s: %w", p.Remote, lastErr)
}

// listen opens the receiving socket for a family and hop mode once.
func (s *Server) listen(k listenKey) error {
	if s.listeners[k] != nil {
		return nil
	}
	port := PortSingleHop
	if k.multihop {
		port = PortMultihop
	}
	network := "udp4"
	if k.v6 {
		network = "udp6" // Go sets IPV6_V6ONLY for udp6, so both families can hold the port
	}
	c, err := net.ListenUDP(network, &net.UDPAddr{Port: port})
	if err != nil {
		return fmt.Errorf("bfd: listening on %s port %d: %w", network, port, err)
	}
	var read func([]byte) (int, int, net.Addr, error)
	if k.v6 {
		pc := ipv6.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
			c.Close()
			return fmt.Errorf("bfd: asking for the hop limit: %w", err)
		}
		read = func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := pc.ReadFrom(b)
			if cm == nil {
				return n, -1, src, err
			}
			return n, cm.HopLimit, src, err
		}
	} else {
		pc := ipv4.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
			c.Close()
			return fmt.Errorf("bfd: asking for the TTL: %w", err)
		}
		read = func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := pc.ReadFrom(b)
			if cm == nil {
				return n, -1, src, err
			}
			return n, cm.TTL, src, err
		}
	}
	s.listeners[k] = c
	go s.readLoop(read, k.multihop)
	return nil
}

func (s *Server) readLoop(read func([]byte) (int, int, net.Addr, error), multihop bool) {
	buf := make([]byte, 1500)
	for {
		n, ttl, src, err := read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.V(1).Info("BFD receive failed", "err", err)
			continue
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		from, ok := netip.AddrFromSlice(ua.IP)
		if !ok {
			continue
		}
		s.deliver(buf[:n], from.Unmap(), ttl, multihop)
	}
}

// deliver matches a packet to its session: by Your Discriminator when the peer knows ours,
// else by the peer's address (RFC 5881 section 3); packets that fail the TTL check, come
// from another address than the session's peer, or match nothing are dropped.
func (s *Server) deliver(b []byte, from netip.Addr, ttl int, multihop bool) {
	pkt, err := Unmarshal(b)
	if err != nil {
		s.log.V(2).Info("BFD packet dropped", "from", from, "err", err)
		return
	}
	s.mu.Lock()
	var e *entry
	if pkt.YourDisc != 0 {
		e = s.byDisc[pkt.YourDisc]
	} else {
		e = s.byPeer[peerKey{from, multihop}]
	}
	s.mu.Unlock()
	if e == nil || e.peer.Remote != from || e.peer.Multihop != multihop {
		s.log.V(2).Info("BFD packet for no session dropped", "from", from, "yourDisc", pkt.YourDisc)
		return
	}
	minTTL := ttlMax
	if multihop {
		minTTL = int(e.peer.MinTTL)
	}
	if ttl < minTTL {
		s.log.V(2).Info("BFD packet dropped: TTL too low", "from", from, "ttl", ttl, "min", minTTL)
		return
	}
	e.sess.Recv(pkt)
}
