package bfd

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// SlowTx is the least interval between our packets while a session is not Up (RFC 5880
// section 6.8.3): nobody relies on fast detection yet, so there is no reason to spend packets.
const SlowTx = time.Second

// Config is what one side asks of a session.
type Config struct {
	// DesiredMinTx is the least interval at which we want to send.
	DesiredMinTx time.Duration
	// RequiredMinRx is the least interval at which we can take the peer's packets.
	RequiredMinRx time.Duration
	// DetectMult is how many of our packets the peer may miss before declaring us down.
	DetectMult uint8
	// Passive waits for the peer's first packet before sending anything.
	Passive bool
}

// Validate rejects what the protocol cannot carry.
func (c Config) Validate() error {
	switch {
	case c.DesiredMinTx < time.Microsecond || c.DesiredMinTx > time.Duration(1<<32-1)*time.Microsecond:
		return fmt.Errorf("transmit interval %s out of range", c.DesiredMinTx)
	case c.RequiredMinRx < time.Microsecond || c.RequiredMinRx > time.Duration(1<<32-1)*time.Microsecond:
		// Zero would tell the peer to send nothing at all.
		return fmt.Errorf("receive interval %s out of range", c.RequiredMinRx)
	case c.DetectMult == 0:
		return fmt.Errorf("detect multiplier must not be zero")
	}
	return nil
}

// Clock schedules the session's timers; tests inject a fake one.
type Clock interface {
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a scheduled callback.
type Timer interface{ Stop() bool }

type realClock struct{}

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Options make a Session.
type Options struct {
	LocalDisc uint32
	Config    Config
	Clock     Clock          // default RealClock
	Rand      func() float64 // [0,1), for jitter; default math/rand
	// Send transmits one packet. It is called from the session's timers and from Recv, never
	// with the session's lock held, and in order.
	Send func(Packet)
	// Notify is called on every change of the local state, in order, like Send.
	Notify func(State, Diag)
}

// Info is a session's observable state.
type Info struct {
	State, RemoteState State
	Diag               Diag
	LocalDisc          uint32
	RemoteDisc         uint32
	// TxInterval is the negotiated interval between our packets (before jitter):
	// max(our desired min TX, their required min RX).
	TxInterval time.Duration
	// DetectTime is how long we wait for the peer's next packet: their detect multiplier ×
	// max(our required min RX, their desired min TX). Zero before the peer was heard.
	DetectTime time.Duration
	// What the peer's last packet said.
	RemoteDesiredMinTx, RemoteRequiredMinRx time.Duration
	RemoteDetectMult                        uint8
	Polling                                 bool
}

// params is what our packets advertise.
type params struct {
	tx, rx time.Duration
	mult   uint8
}

// Session is one BFD session's state machine (RFC 5880 section 6.8) in asynchronous mode.
// It sends through Options.Send and is fed the peer's packets by Recv; the transport is not
// its business.
type Session struct {
	clock  Clock
	rand   func() float64
	send   func(Packet)
	notify func(State, Diag)

	mu          sync.Mutex
	closed      bool
	started     bool
	cfg         Config
	state       State
	diag        Diag
	localDisc   uint32
	remoteDisc  uint32
	remoteState State
	remoteMinRx time.Duration
	remoteTx    time.Duration
	remoteMult  uint8

	// adv is what our packets carry; txUsed and rxUsed are what our timers use. They differ
	// while a Poll Sequence runs: a slower TX or a faster RX must not take effect before the
	// peer has acknowledged it with Final (RFC 5880 section 6.8.3).
	adv            params
	txUsed, rxUsed time.Duration
	polling        bool

	txTimer, detectTimer Timer
	txGen, detectGen     uint64 // a timer that fires after being replaced sees a newer generation
	txFor                time.Duration

	out      []event
	flushing bool
}

type event struct {
	pkt    *Packet
	state  State
	diag   Diag
	notify bool
}

// NewSession returns a session in state Down; Start makes it send.
func NewSession(o Options) *Session {
	s := &Session{clock: o.Clock, rand: o.Rand, send: o.Send, notify: o.Notify,
		cfg: o.Config, state: Down, localDisc: o.LocalDisc, remoteState: Down,
		// RFC 5880 section 6.8.1: bfd.RemoteMinRxInterval starts at 1 µs, so that our first
		// packets go out at our own (slow) pace.
		remoteMinRx: time.Microsecond}
	if s.clock == nil {
		s.clock = RealClock
	}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	if s.send == nil {
		s.send = func(Packet) {}
	}
	if s.notify == nil {
		s.notify = func(State, Diag) {}
	}
	s.adv = s.want()
	s.txUsed, s.rxUsed = s.adv.tx, s.adv.rx
	return s
}

// want is what our packets should advertise in the current state.
func (s *Session) want() params {
	tx := s.cfg.DesiredMinTx
	if s.state != Up {
		tx = max(tx, SlowTx)
	}
	return params{tx: tx, rx: s.cfg.RequiredMinRx, mult: s.cfg.DetectMult}
}

// Start begins transmission (unless passive: then at the peer's first packet).
func (s *Session) Start() {
	s.mu.Lock()
	if !s.closed && !s.started {
		s.started = true
		if !s.cfg.Passive {
			s.queue(s.packet(false))
		}
		s.scheduleTx(true)
	}
	s.mu.Unlock()
	s.flush()
}

// Close stops the session. It tells the peer with one AdminDown packet, which RFC 5882
// section 3.2 says must not be taken as a failure: removing BFD from a session does not
// bring the peer's BGP down.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.stopTimers()
	s.state, s.diag = AdminDown, DiagAdminDown
	if s.started {
		s.queue(s.packet(false))
	}
	s.mu.Unlock()
	s.flush()
}

func (s *Session) stopTimers() {
	s.txGen++
	s.detectGen++
	if s.txTimer != nil {
		s.txTimer.Stop()
		s.txTimer = nil
	}
	if s.detectTimer != nil {
		s.detectTimer.Stop()
		s.detectTimer = nil
	}
}

// Info returns the session's state.
func (s *Session) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := Info{State: s.state, RemoteState: s.remoteState, Diag: s.diag, LocalDisc: s.localDisc,
		RemoteDisc: s.remoteDisc, TxInterval: s.txInterval(), DetectTime: s.detectTime(),
		RemoteDesiredMinTx: s.remoteTx, RemoteRequiredMinRx: s.remoteMinRx, RemoteDetectMult: s.remoteMult,
		Polling: s.polling}
	return i
}

func (s *Session) txInterval() time.Duration { return max(s.txUsed, s.remoteMinRx) }

func (s *Session) detectTime() time.Duration {
	return time.Duration(s.remoteMult) * max(s.rxUsed, s.remoteTx)
}

// SetConfig changes the session's parameters. A change of the intervals is announced with a
// Poll Sequence; the peer's Final makes it effective.
func (s *Session) SetConfig(c Config) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	passiveChanged := s.cfg.Passive != c.Passive
	s.cfg = c
	s.advertise()
	if passiveChanged {
		s.scheduleTx(false)
	}
	s.mu.Unlock()
	s.flush()
}

// advertise brings the advertised parameters to what the configuration and state want. With
// a peer that is Up, the change goes out in a Poll Sequence: faster TX and slower RX apply at
// once (they only make detection more lenient), the rest when the peer's Final arrives. A
// Poll Sequence in progress finishes first; the next one follows.
func (s *Session) advertise() {
	w := s.want()
	if w == s.adv || s.polling {
		return
	}
	s.adv = w
	if s.state != Up {
		s.txUsed, s.rxUsed = w.tx, w.rx
	} else {
		s.txUsed = min(s.txUsed, w.tx)
		s.rxUsed = max(s.rxUsed, w.rx)
	}
	if s.remoteDisc != 0 {
		s.polling = true
		s.queue(s.packet(false))
	}
	s.scheduleTx(false)
	s.armDetect()
}

// Recv processes one valid packet from the peer (RFC 5880 section 6.8.6; the checks that
// need no session were made by Unmarshal, and the transport matched it to this session).
func (s *Session) Recv(p Packet) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.remoteDisc = p.MyDisc
	s.remoteState = p.State
	s.remoteMinRx = p.RequiredMinRx
	s.remoteTx = p.DesiredMinTx
	s.remoteMult = p.DetectMult
	if p.Final && s.polling {
		s.polling = false
		s.txUsed, s.rxUsed = s.adv.tx, s.adv.rx
	}

	before := s.state
	switch {
	case p.State == AdminDown:
		if s.state != Down {
			s.setState(Down, DiagNeighborDown)
		}
	case s.state == Down && p.State == Down:
		s.setState(Init, DiagNone)
	case s.state == Down && p.State == Init, s.state == Init && (p.State == Init || p.State == Up):
		s.setState(Up, DiagNone)
	case s.state == Up && p.State == Down:
		s.setState(Down, DiagNeighborDown)
	}
	s.advertise() // a state change changes the TX we want; a finished poll may let the next start
	if p.Poll {
		// Answered at once, outside the periodic schedule (RFC 5880 section 6.5).
		s.queue(s.packet(true))
	} else if s.state != before && !s.queuedPacket() {
		// Tell the peer of the new state now rather than at the next (maybe slow) tick: the
		// three-way handshake then takes a round trip, not seconds.
		s.queue(s.packet(false))
	}
	s.armDetect()
	s.scheduleTx(false)
	s.mu.Unlock()
	s.flush()
}

// setState changes the local state. Leaving Up drops back to the slow rate at once: the peer
// is not Up with us either, so no Poll Sequence is needed (or answered).
func (s *Session) setState(st State, d Diag) {
	if st == s.state {
		return
	}
	s.state = st
	if st == Up {
		s.diag = DiagNone
	} else if d != DiagNone {
		s.diag = d
	}
	if st != Up {
		s.polling = false
		s.adv = s.want()
		s.txUsed, s.rxUsed = s.adv.tx, s.adv.rx
	}
	s.out = append(s.out, event{state: st, diag: s.diag, notify: true})
}

// armDetect (re)starts the detection timer: the peer must be heard within the detection time.
func (s *Session) armDetect() {
	s.detectGen++
	if s.detectTimer != nil {
		s.detectTimer.Stop()
		s.detectTimer = nil
	}
	d := s.detectTime()
	if d <= 0 {
		return
	}
	gen := s.detectGen
	s.detectTimer = s.clock.AfterFunc(d, func() { s.expired(gen) })
}

func (s *Session) expired(gen uint64) {
	s.mu.Lock()
	if s.closed || gen != s.detectGen {
		s.mu.Unlock()
		return
	}
	s.detectTimer = nil
	if s.state == Init || s.state == Up {
		s.setState(Down, DiagDetectionExpired)
		s.queue(s.packet(false))
	}
	// The peer is gone: forget it (RFC 5880 section 6.8.1), so that a passive session stops
	// sending and a restarted peer is met with Your Discriminator zero.
	s.remoteDisc, s.remoteState, s.remoteMult = 0, Down, 0
	s.scheduleTx(false)
	s.mu.Unlock()
	s.flush()
}

// scheduleTx keeps the periodic transmission running at the negotiated interval. It restarts
// the timer only when the interval changed (or force), so that frequent packets from the peer
// do not postpone ours.
func (s *Session) scheduleTx(force bool) {
	if !s.started {
		return
	}
	// RFC 5880 section 6.8.7: no periodic packets from a passive side that has not heard the
	// peer, nor to a peer that asks for none.
	if (s.cfg.Passive && s.remoteDisc == 0) || s.remoteMinRx == 0 {
		s.txGen++
		if s.txTimer != nil {
			s.txTimer.Stop()
			s.txTimer = nil
		}
		return
	}
	iv := s.txInterval()
	if !force && s.txTimer != nil && s.txFor == iv {
		return
	}
	s.txGen++
	if s.txTimer != nil {
		s.txTimer.Stop()
	}
	s.txFor = iv
	gen := s.txGen
	s.txTimer = s.clock.AfterFunc(s.jittered(iv), func() { s.tick(gen) })
}

// jittered reduces the interval by 0-25% (at least 10% with a detect multiplier of 1), so that
// sessions do not synchronise (RFC 5880 section 6.8.7).
func (s *Session) jittered(iv time.Duration) time.Duration {
	r := s.rand()
	if s.cfg.DetectMult == 1 {
		return time.Duration(float64(iv) * (0.9 - 0.15*r))
	}
	return time.Duration(float64(iv) * (1 - 0.25*r))
}

func (s *Session) tick(gen uint64) {
	s.mu.Lock()
	if s.closed || gen != s.txGen {
		s.mu.Unlock()
		return
	}
	s.txTimer = nil
	s.queue(s.packet(false))
	s.scheduleTx(true)
	s.mu.Unlock()
	s.flush()
}

func (s *Session) packet(final bool) Packet {
	return Packet{
		Diag: s.diag, State: s.state,
		Poll: s.polling && !final, Final: final,
		DetectMult: s.adv.mult, MyDisc: s.localDisc, YourDisc: s.remoteDisc,
		DesiredMinTx: s.adv.tx, RequiredMinRx: s.adv.rx,
	}
}

func (s *Session) queue(p Packet) { s.out = append(s.out, event{pkt: &p}) }

func (s *Session) queuedPacket() bool {
	for _, e := range s.out {
		if e.pkt != nil {
			return true
		}
	}
	return false
}

// flush delivers queued packets and notifications outside the lock, one caller at a time so
// that they keep their order.
func (s *Session) flush() {
	for {
		s.mu.Lock()
		if s.flushing || len(s.out) == 0 {
			s.mu.Unlock()
			return
		}
		s.flushing = true
		out := s.out
		s.out = nil
		s.mu.Unlock()
		for _, e := range out {
			if e.pkt != nil {
				s.send(*e.pkt)
			} else if e.notify {
				s.notify(e.state, e.diag)
			}
		}
		s.mu.Lock()
		s.flushing = false
		s.mu.Unlock()
	}
}
