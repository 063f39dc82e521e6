// Package l2 answers ARP requests (IPv4) and neighbour solicitations (IPv6) for the external
// addresses this node owns, and announces an address with gratuitous ARP / unsolicited
// neighbour advertisements the moment the node takes it over, so clients switch at once
// instead of waiting for their neighbour entry to go stale.
//
// The responder reads frames with AF_PACKET sockets rather than the kernel's ICMPv6 socket,
// because the addresses are not configured on the node: a unicast solicitation for one (a
// client re-checking a stale entry) would otherwise be routed or dropped by the kernel before
// a socket saw it. A kernel BPF filter keeps everything but ARP and neighbour solicitations
// out of user space. Sockets exist only on interfaces that carry at least one owned address.
package l2

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Options tune a Responder. Zero values take the defaults.
type Options struct {
	// Announce are the delays after a takeover at which gratuitous ARP / unsolicited NA are
	// sent. Several, spaced, because one frame can be lost; the first goes at once because
	// that is what failover time is measured to.
	Announce []time.Duration
	// Rescan is how often interfaces are re-listed, to follow links that go down, come up or
	// are replaced.
	Rescan time.Duration
	// Metrics receives the responder's counters; nil registers nothing.
	Metrics prometheus.Registerer
	Log     logr.Logger
}

var defaultAnnounce = []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, time.Second, 3 * time.Second}

// Responder answers for the addresses it is given.
type Responder struct {
	opts Options
	m    *metrics

	mu    sync.RWMutex
	want  map[netip.Addr]allowed // desired: address → interfaces it may be answered on
	links map[string]*listener   // open sockets by interface name
	kick  chan struct{}

	// listInterfaces is net.Interfaces, replaceable so tests can restrict the responder.
	listInterfaces func() ([]net.Interface, error)
}

// allowed is a set of interface names; empty allows every eligible interface.
type allowed []string

func (a allowed) permits(name string) bool { return len(a) == 0 || slices.Contains(a, name) }

// New returns a Responder answering for nothing; Run starts it.
func New(opts Options) *Responder {
	if len(opts.Announce) == 0 {
		opts.Announce = defaultAnnounce
	}
	if opts.Rescan <= 0 {
		opts.Rescan = 2 * time.Second
	}
	return &Responder{
		opts:           opts,
		m:              newMetrics(opts.Metrics),
		want:           map[netip.Addr]allowed{},
		links:          map[string]*listener{},
		kick:           make(chan struct{}, 1),
		listInterfaces: net.Interfaces,
	}
}

// Set replaces the addresses this node answers for: address → the interface names it may be
// answered on (none: every up, non-loopback Ethernet interface). Addresses new to an
// interface are announced at once; addresses no longer listed stop being answered at once.
func (r *Responder) Set(want map[netip.Addr][]string) {
	w := make(map[netip.Addr]allowed, len(want))
	for a, ifs := range want {
		w[a.Unmap()] = slices.Clone(ifs)
	}
	r.mu.Lock()
	r.want = w
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Reannounce sends the takeover announcements again for every address answered now. After a
// partition heals, clients may still hold the hardware address of a node that answered while
// this one was unreachable; waiting for their entries to go stale would take tens of seconds.
//
// It waits settle first, so that membership views have converged and the addresses are those
// this node still answers for then: a node about to hand an address over must not announce it
// after the new owner did.
func (r *Responder) Reannounce(settle time.Duration) {
	time.AfterFunc(settle, func() {
		r.mu.RLock()
		defer r.mu.RUnlock()
		for _, l := range r.links {
			for a := range l.owned {
				go r.announce(l, a)
			}
		}
	})
}

// Announced returns where each address is answered now: address → interface names.
func (r *Responder) Announced() map[netip.Addr][]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[netip.Addr][]string{}
	for name, l := range r.links {
		for a := range l.owned {
			out[a] = append(out[a], name)
		}
	}
	for a := range out {
		slices.Sort(out[a])
	}
	return out
}

// Run converges sockets onto the desired addresses until ctx ends, then closes them all:
// a speaker that stops also stops answering.
func (r *Responder) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.Rescan)
	defer t.Stop()
	defer r.closeAll()
	for {
		r.sync()
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-t.C:
		}
	}
}

func (r *Responder) closeAll() {
	r.mu.Lock()
	var closing []*listener
	for name, l := range r.links {
		closing = append(closing, l)
		r.m.forgetLink(name, l.owned)
		delete(r.links, name)
	}
	r.mu.Unlock()
	closeListeners(closing)
}

// closeListeners closes listeners without holding r.mu: their read loops may be waiting for
// it (to look an address up) and must finish before close returns.
func closeListeners(ls []*listener) {
	for _, l := range ls {
		l.close()
	}
}

// sync opens and closes sockets and updates what each link answers for.
func (r *Responder) sync() {
	ifis, err := r.listInterfaces()
	if err != nil {
		r.opts.Log.Error(err, "listing interfaces; keeping the current sockets")
		return
	}
	var closing []*listener
	defer func() { closeListeners(closing) }() // runs after the unlock below
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, ifi := range ifis {
		if !eligible(&ifi) {
			continue
		}
		owned := map[netip.Addr]bool{}
		for a, al := range r.want {
			if al.permits(ifi.Name) {
				owned[a] = true
			}
		}
		if len(owned) == 0 {
			continue
		}
		seen[ifi.Name] = true
		l := r.links[ifi.Name]
		if l != nil && (l.index != ifi.Index || !slices.Equal(l.mac, ifi.HardwareAddr)) {
			// The interface was replaced (same name, new link): its sockets are dead.
			closing = append(closing, l)
			r.m.forgetLink(l.name, l.owned)
			delete(r.links, ifi.Name)
			l = nil
		}
		if l == nil {
			l, err = r.open(&ifi)
			if err != nil {
				r.opts.Log.Error(err, "opening ARP/NDP sockets; retrying at next rescan", "interface", ifi.Name)
				continue
			}
			r.links[ifi.Name] = l
		}
		r.update(l, owned)
	}
	for name, l := range r.links {
		if !seen[name] {
			closing = append(closing, l)
			r.m.forgetLink(name, l.owned)
			delete(r.links, name)
		}
	}
}

// eligible: up, Ethernet-like, not loopback, able to broadcast (ARP needs it).
func eligible(ifi *net.Interface) bool {
	return ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 &&
		ifi.Flags&net.FlagBroadcast != 0 && len(ifi.HardwareAddr) == 6
}

// update makes l answer for owned, announcing the addresses it did not answer for before.
// Called with r.mu held.
func (r *Responder) update(l *listener, owned map[netip.Addr]bool) {
	for a := range owned {
		if l.owned[a] {
			continue
		}
		if a.Is6() {
			if err := l.join(a); err != nil {
				r.opts.Log.Error(err, "joining the solicited-node group; multicast solicitations may be missed", "interface", l.name, "ip", a)
			}
		}
		r.m.announced(a, l.name, true)
		r.opts.Log.Info("answering", "ip", a, "interface", l.name)
		go r.announce(l, a)
	}
	for a := range l.owned {
		if owned[a] {
			continue
		}
		if a.Is6() {
			l.leave(a)
		}
		r.m.announced(a, l.name, false)
		r.opts.Log.Info("stopped answering", "ip", a, "interface", l.name)
	}
	l.owned = owned
}

// announce sends the takeover burst for a on l, stopping early when a is released or l closed.
func (r *Responder) announce(l *listener, a netip.Addr) {
	start := time.Now()
	for _, at := range r.opts.Announce {
		select {
		case <-l.done:
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		r.mu.RLock()
		still := l.owned[a]
		r.mu.RUnlock()
		if !still {
			return
		}
		var frames [][]byte
		var err error
		proto := protoARP
		if a.Is4() {
			frames, err = gratuitousARP(&l.link, a)
		} else {
			proto = protoNDP
			var f []byte
			f, err = unsolicitedNA(&l.link, a)
			frames = [][]byte{f}
		}
		for _, f := range frames {
			if err == nil {
				err = l.send(a.Is4(), f)
			}
		}
		if err != nil {
			r.opts.Log.Error(err, "sending announcement", "ip", a, "interface", l.name)
			continue
		}
		r.m.gratuitous.WithLabelValues(proto, l.name).Inc()
	}
}

// answers reports whether a is answered on the link named name.
func (r *Responder) answers(l *listener) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return l.owned[a.Unmap()]
	}
}

const (
	protoARP = "arp"
	protoNDP = "ndp"
)

// listener holds one interface's sockets.
type listener struct {
	link
	arp, nd *packet.Conn
	owned   map[netip.Addr]bool // guarded by Responder.mu
	groups  map[string]int      // link-layer multicast memberships, by MAC
	done    chan struct{}       // closed by close
	wg      sync.WaitGroup      // the read loops
	sendMu  sync.Mutex          // serialises writes
}

func (r *Responder) open(ifi *net.Interface) (*listener, error) {
	l := &listener{
		link:   link{name: ifi.Name, index: ifi.Index, mac: slices.Clone(ifi.HardwareAddr), linkLocal: linkLocal(ifi)},
		owned:  map[netip.Addr]bool{},
		groups: map[string]int{},
		done:   make(chan struct{}),
	}
	var err error
	l.arp, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: arpFilter})
	if err != nil {
		return nil, err
	}
	l.nd, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: nsFilter})
	if err != nil {
		l.arp.Close()
		return nil, err
	}
	owns := r.answers(l)
	for _, c := range []struct {
		conn  *packet.Conn
		proto string
	}{{l.arp, protoARP}, {l.nd, protoNDP}} {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			r.read(l, c.conn, c.proto, owns)
		}()
	}
	r.opts.Log.Info("listening", "interface", ifi.Name, "mac", ifi.HardwareAddr.String())
	return l, nil
}

func linkLocal(ifi *net.Interface) netip.Addr {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
				return ip
			}
		}
	}
	return netip.Addr{}
}

func (r *Responder) read(l *listener, c *packet.Conn, proto string, owns func(netip.Addr) bool) {
	buf := make([]byte, 9216)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A link going down makes reads fail until the rescan closes the sockets; don't spin.
			r.opts.Log.V(1).Info("read failed", "interface", l.name, "err", err)
			select {
			case <-l.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		out, err := reply(&l.link, buf[:n], owns)
		if err != nil {
			r.m.malformed.WithLabelValues(proto, l.name).Inc()
			r.opts.Log.V(2).Info("ignoring malformed frame", "interface", l.name, "err", err)
			continue
		}
		if out == nil {
			continue
		}
		if err := l.send(proto == protoARP, out); err != nil {
			r.opts.Log.Error(err, "sending reply", "interface", l.name)
			continue
		}
		r.m.answers.WithLabelValues(proto, l.name).Inc()
	}
}

func (l *listener) send(arp bool, frame []byte) error {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	c := l.nd
	if arp {
		c = l.arp
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		return err
	}
	_, err := c.WriteTo(frame, &packet.Addr{HardwareAddr: f.Destination})
	return err
}

// join makes the interface accept frames to a's solicited-node multicast group, which is
// where clients send their first solicitation. The kernel only does this for addresses
// configured on the interface, and ours are not.
func (l *listener) join(a netip.Addr) error {
	mac, err := solicitedMAC(a)
	if err != nil {
		return err
	}
	if l.groups[mac.String()]++; l.groups[mac.String()] > 1 {
		return nil
	}
	return l.nd.JoinGroup(mac)
}

func (l *listener) leave(a netip.Addr) {
	mac, err := solicitedMAC(a)
	if err != nil {
		return
	}
	k := mac.String()
	if l.groups[k]--; l.groups[k] <= 0 {
		delete(l.groups, k)
		_ = l.nd.LeaveGroup(mac)
	}
}

func solicitedMAC(a netip.Addr) (net.HardwareAddr, error) {
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return nil, err
	}
	return multicastMAC(g), nil
}

func (l *listener) close() {
	close(l.done)
	l.arp.Close()
	l.nd.Close()
	l.wg.Wait()
}

// arpFilter passes every ARP frame that was received (not sent by this host): the handler
// parses them all, so malformed ones are counted.
var arpFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadExtension{Num: bpf.ExtType},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
})

// nsFilter passes received IPv6 frames carrying an ICMPv6 neighbour solicitation directly
// after the fixed header (extension headers never precede NDP in practice).
var nsFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadExtension{Num: bpf.ExtType},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 5},
	bpf.LoadAbsolute{Off: 14 + 6, Size: 1}, // next header
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
	bpf.LoadAbsolute{Off: 14 + ipv6HeaderLen, Size: 1}, // ICMPv6 type
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 135, SkipTrue: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
})

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err)
	}
	return raw
}

type metrics struct {
	answers, malformed, gratuitous *prometheus.CounterVec
	announcedIPs                   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fairlead_l2_answers_total",
			Help: "ARP replies and neighbour advertisements sent in answer to a request, by protocol and interface.",
		}, []string{"protocol", "interface"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fairlead_l2_malformed_frames_total",
			Help: "ARP and neighbour solicitation frames ignored because they were malformed.",
		}, []string{"protocol", "interface"}),
		gratuitous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fairlead_l2_gratuitous_sent_total",
			Help: "Gratuitous ARPs and unsolicited neighbour advertisements sent on taking an address over.",
		}, []string{"protocol", "interface"}),
		announcedIPs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fairlead_l2_announced",
			Help: "1 for each external address this node answers for, by interface and protocol.",
		}, []string{"ip", "interface", "protocol"}),
	}
	if reg != nil {
		reg.MustRegister(m.answers, m.malformed, m.gratuitous, m.announcedIPs)
	}
	return m
}

func protocolOf(a netip.Addr) string {
	if a.Is4() {
		return "ARP"
	}
	return "NDP"
}

func (m *metrics) announced(a netip.Addr, ifname string, on bool) {
	if on {
		m.announcedIPs.WithLabelValues(a.String(), ifname, protocolOf(a)).Set(1)
	} else {
		m.announcedIPs.DeleteLabelValues(a.String(), ifname, protocolOf(a))
	}
}

func (m *metrics) forgetLink(name string, owned map[netip.Addr]bool) {
	for a := range maps.Keys(owned) {
		m.announced(a, name, false)
	}
}
