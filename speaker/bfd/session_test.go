package bfd

import (
	"sort"
	"sync"
	"testing"
	"time"
)

// fakeClock runs timers when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Duration
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Duration
	f       func()
	stopped bool
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now + d, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time forward by d, running every timer that falls due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now + d
	for {
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at < c.timers[j].at })
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && t.at <= end {
				next = t
				break
			}
		}
		if next == nil {
			break
		}
		next.stopped = true
		c.now = next.at
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

func (c *fakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

type sent struct {
	at time.Duration
	p  Packet
}

// harness is one session on a fake clock with everything it sends and reports recorded.
type harness struct {
	t      *testing.T
	clock  *fakeClock
	s      *Session
	mu     sync.Mutex
	sent   []sent
	states []State
	diags  []Diag
}

func newHarness(t *testing.T, c Config, r float64) *harness {
	h := &harness{t: t, clock: &fakeClock{}}
	h.s = NewSession(Options{LocalDisc: 100, Config: c, Clock: h.clock, Rand: func() float64 { return r },
		Send: func(p Packet) {
			h.mu.Lock()
			h.sent = append(h.sent, sent{h.clock.Now(), p})
			h.mu.Unlock()
		},
		Notify: func(s State, d Diag) {
			h.mu.Lock()
			h.states = append(h.states, s)
			h.diags = append(h.diags, d)
			h.mu.Unlock()
		}})
	h.s.Start()
	return h
}

func (h *harness) last() Packet {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sent) == 0 {
		h.t.Fatal("nothing sent")
	}
	return h.sent[len(h.sent)-1].p
}

func (h *harness) take() []sent {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.sent
	h.sent = nil
	return out
}

// peer is what the remote side sends: its state and parameters.
func peer(st State, tx, rx time.Duration, mult uint8) Packet {
	yd := uint32(100)
	if st == Down || st == AdminDown {
		yd = 0
	}
	return Packet{State: st, DetectMult: mult, MyDisc: 200, YourDisc: yd, DesiredMinTx: tx, RequiredMinRx: rx}
}

var cfg300 = Config{DesiredMinTx: 300 * time.Millisecond, RequiredMinRx: 300 * time.Millisecond, DetectMult: 3}

// bringUp runs the three-way handshake and the poll that speeds up the TX.
func (h *harness) bringUp(tx, rx time.Duration, mult uint8) {
	h.s.Recv(peer(Down, time.Second, rx, mult))
	h.s.Recv(peer(Up, time.Second, rx, mult))
	if st := h.s.Info().State; st != Up {
		h.t.Fatalf("state %s after the handshake, want Up", st)
	}
	p := peer(Up, tx, rx, mult)
	p.Final = true
	h.s.Recv(p)
}

// The RFC 5880 section 6.8.6 state table: the local state, the state the peer sends, and
// what the local state becomes (with the diagnostic when it goes down).
func TestStateMachine(t *testing.T) {
	for _, c := range []struct {
		name     string
		received []State
		want     State
		diag     Diag
	}{
		{"Down+Down=Init", []State{Down}, Init, DiagNone},
		{"Down+Init=Up", []State{Init}, Up, DiagNone},
		{"Down+Up stays Down", []State{Up}, Down, DiagNone},
		{"Down+AdminDown stays Down", []State{AdminDown}, Down, DiagNone},
		{"Init+Down stays Init", []State{Down, Down}, Init, DiagNone},
		{"Init+Init=Up", []State{Down, Init}, Up, DiagNone},
		{"Init+Up=Up", []State{Down, Up}, Up, DiagNone},
		{"Init+AdminDown=Down", []State{Down, AdminDown}, Down, DiagNeighborDown},
		{"Up+Init stays Up", []State{Init, Init}, Up, DiagNone},
		{"Up+Up stays Up", []State{Init, Up}, Up, DiagNone},
		{"Up+Down=Down", []State{Init, Down}, Down, DiagNeighborDown},
		{"Up+AdminDown=Down", []State{Init, AdminDown}, Down, DiagNeighborDown},
		{"Down again, then back up", []State{Init, Down, Down, Up}, Up, DiagNone},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, cfg300, 0)
			for _, st := range c.received {
				h.s.Recv(peer(st, time.Second, time.Second, 3))
			}
			i := h.s.Info()
			if i.State != c.want || i.Diag != c.diag {
				t.Errorf("state %s diag %q, want %s %q", i.State, i.Diag, c.want, c.diag)
			}
			// Every packet after the first carries the peer's discriminator and our state.
			if p := h.last(); p.State != i.State || p.MyDisc != 100 {
				t.Errorf("last packet %+v does not say state %s from discriminator 100", p, i.State)
			}
		})
	}
}

// The negotiated intervals of RFC 5880 section 6.8.2 and 6.8.4: transmit interval =
// max(our desired min TX, their required min RX); detection time = their detect multiplier ×
// max(our required min RX, their desired min TX).
func TestNegotiation(t *testing.T) {
	for _, c := range []struct {
		name             string
		our              Config
		theirTx, theirRx time.Duration
		theirMult        uint8
		tx, detect       time.Duration
	}{
		{"equal", cfg300, 300 * time.Millisecond, 300 * time.Millisecond, 3, 300 * time.Millisecond, 900 * time.Millisecond},
		{"their RX slower", cfg300, 300 * time.Millisecond, 500 * time.Millisecond, 3, 500 * time.Millisecond, 900 * time.Millisecond},
		{"their TX slower", cfg300, 400 * time.Millisecond, 100 * time.Millisecond, 5, 300 * time.Millisecond, 2 * time.Second},
		{"our RX slower", Config{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 700 * time.Millisecond, DetectMult: 2},
			200 * time.Millisecond, 50 * time.Millisecond, 4, 100 * time.Millisecond, 2800 * time.Millisecond},
		{"their multiplier counts, not ours", Config{DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 10},
			50 * time.Millisecond, 50 * time.Millisecond, 2, 50 * time.Millisecond, 100 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.our, 0)
			h.bringUp(c.theirTx, c.theirRx, c.theirMult)
			i := h.s.Info()
			if i.TxInterval != c.tx || i.DetectTime != c.detect {
				t.Errorf("tx %s detect %s, want %s %s", i.TxInterval, i.DetectTime, c.tx, c.detect)
			}
			// And the packets really go out at that interval (jitter 0 here), however often
			// the peer's arrive.
			h.take()
			for range 20 {
				h.clock.Advance(c.tx / 2)
				h.s.Recv(peer(Up, c.theirTx, c.theirRx, c.theirMult))
			}
			got := h.take()
			if len(got) != 10 {
				t.Errorf("%d packets in 10 intervals, want 10", len(got))
			}
			for k := 1; k < len(got); k++ {
				if d := got[k].at - got[k-1].at; d != c.tx {
					t.Fatalf("packets %s apart, want %s", d, c.tx)
				}
			}
			// The detection time runs from the last packet received.
			h.clock.Advance(c.detect - time.Microsecond)
			if st := h.s.Info().State; st != Up {
				t.Fatalf("down before the detection time: %s", st)
			}
			h.clock.Advance(time.Microsecond)
			if i := h.s.Info(); i.State != Down || i.Diag != DiagDetectionExpired {
				t.Errorf("after the detection time: %s %q, want Down, detection time expired", i.State, i.Diag)
			}
		})
	}
}

// While not Up a session sends at most once a second and advertises a desired TX of at
// least 1 s; when it comes up it polls with its real TX and sends faster at once; when it
// goes down it is slow again.
func TestSlowTxUntilUp(t *testing.T) {
	h := newHarness(t, cfg300, 0)
	h.clock.Advance(5 * time.Second)
	pk := h.take()
	if len(pk) != 6 { // at 0 and every second
		t.Fatalf("%d packets in 5 s while Down, want 6", len(pk))
	}
	for _, s := range pk {
		if s.p.DesiredMinTx != time.Second || s.p.RequiredMinRx != 300*time.Millisecond || s.p.State != Down || s.p.YourDisc != 0 {
			t.Fatalf("packet while Down: %+v", s.p)
		}
	}
	h.s.Recv(peer(Init, time.Second, 300*time.Millisecond, 3))
	p := h.last()
	if p.State != Up || !p.Poll || p.DesiredMinTx != 300*time.Millisecond {
		t.Fatalf("first packet when Up: %+v, want Up, Poll, desired TX 300ms", p)
	}
	h.take()
	h.clock.Advance(600 * time.Millisecond)
	if n := len(h.take()); n != 2 {
		t.Errorf("%d packets in the first 600ms Up, want 2", n)
	}
	h.clock.Advance(300 * time.Millisecond)
	if !h.s.Info().Polling || !h.last().Poll {
		t.Fatal("the poll should repeat until the peer's Final")
	}
	f := peer(Up, 300*time.Millisecond, 300*time.Millisecond, 3)
	f.Final = true
	h.s.Recv(f)
	h.clock.Advance(300 * time.Millisecond)
	if h.last().Poll || h.s.Info().Polling {
		t.Error("still polling after Final")
	}
	h.s.Recv(peer(Down, time.Second, 300*time.Millisecond, 3))
	h.take()
	h.clock.Advance(3 * time.Second)
	pk = h.take()
	if len(pk) != 3 || pk[0].p.DesiredMinTx != time.Second || pk[0].p.Diag != DiagNeighborDown {
		t.Errorf("after going down: %d packets in 3 s (want 3), first %+v", len(pk), pk[0].p)
	}
}

// A change of intervals while Up goes out as a Poll Sequence. A slower TX takes effect only
// with the peer's Final; a faster RX likewise only then shortens the detection time. A Poll
// from the peer is answered at once with Final.
func TestPollSequence(t *testing.T) {
	h := newHarness(t, cfg300, 0)
	h.bringUp(300*time.Millisecond, 300*time.Millisecond, 3)
	h.take()

	h.s.SetConfig(Config{DesiredMinTx: 600 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3})
	p := h.last()
	if !p.Poll || p.DesiredMinTx != 600*time.Millisecond || p.RequiredMinRx != 100*time.Millisecond {
		t.Fatalf("packet after the change: %+v, want Poll with the new values", p)
	}
	if i := h.s.Info(); i.TxInterval != 300*time.Millisecond || i.DetectTime != 900*time.Millisecond {
		t.Fatalf("before Final: tx %s detect %s, want the old 300ms / 900ms", i.TxInterval, i.DetectTime)
	}
	f := peer(Up, 300*time.Millisecond, 300*time.Millisecond, 3)
	f.Final = true
	h.s.Recv(f)
	if i := h.s.Info(); i.TxInterval != 600*time.Millisecond || i.DetectTime != 900*time.Millisecond || i.Polling {
		t.Fatalf("after Final: tx %s detect %s polling %v, want 600ms / 3×max(100ms, 300ms)", i.TxInterval, i.DetectTime, i.Polling)
	}

	// The peer polls: we answer with Final, right away.
	h.take()
	pp := peer(Up, 100*time.Millisecond, 300*time.Millisecond, 3)
	pp.Poll = true
	h.s.Recv(pp)
	got := h.take()
	if len(got) != 1 || !got[0].p.Final || got[0].p.Poll {
		t.Fatalf("answer to a poll: %+v, want one packet with Final", got)
	}
	if i := h.s.Info(); i.DetectTime != 300*time.Millisecond {
		t.Errorf("detect time after the peer's poll: %s, want 3×max(100ms, 100ms)", i.DetectTime)
	}
}

// A passive session says nothing until it hears the peer, and falls silent again when the
// peer is gone.
func TestPassive(t *testing.T) {
	c := cfg300
	c.Passive = true
	h := newHarness(t, c, 0)
	h.clock.Advance(10 * time.Second)
	if n := len(h.take()); n != 0 {
		t.Fatalf("passive session sent %d packets before hearing the peer", n)
	}
	h.s.Recv(peer(Down, time.Second, 300*time.Millisecond, 3))
	h.clock.Advance(time.Second)
	if p := h.last(); p.State != Init || p.YourDisc != 200 {
		t.Fatalf("after the peer's packet: %+v, want Init to discriminator 200", p)
	}
	h.clock.Advance(10 * time.Second) // the peer's detection time (3 s) passes
	h.take()
	h.clock.Advance(10 * time.Second)
	if n := len(h.take()); n != 0 {
		t.Errorf("passive session kept sending %d packets after the peer went away", n)
	}
	if i := h.s.Info(); i.State != Down || i.Diag != DiagDetectionExpired || i.RemoteDisc != 0 {
		t.Errorf("after the peer went away: %+v", i)
	}
}

// Jitter: 75-100% of the interval, 75-90% with a detect multiplier of 1.
func TestJitter(t *testing.T) {
	for _, c := range []struct {
		mult   uint8
		r      float64
		wantMs int
	}{
		{3, 0, 300}, {3, 0.5, 262}, {3, 0.99999, 225}, {1, 0, 270}, {1, 0.99999, 225},
	} {
		cf := cfg300
		cf.DetectMult = c.mult
		h := newHarness(t, cf, c.r)
		h.bringUp(300*time.Millisecond, 300*time.Millisecond, 3)
		h.take()
		h.clock.Advance(2 * time.Second)
		got := h.take()
		d := got[2].at - got[1].at
		if d.Milliseconds() != int64(c.wantMs) {
			t.Errorf("mult %d rand %v: interval %s, want %dms", c.mult, c.r, d, c.wantMs)
		}
	}
}

// Notifications come once per change, in order; Close tells the peer AdminDown.
func TestNotifyAndClose(t *testing.T) {
	h := newHarness(t, cfg300, 0)
	h.bringUp(300*time.Millisecond, 300*time.Millisecond, 3)
	h.clock.Advance(time.Second)
	h.s.Close()
	p := h.last()
	if p.State != AdminDown || p.Diag != DiagAdminDown {
		t.Errorf("last packet %+v, want AdminDown", p)
	}
	h.take()
	h.clock.Advance(10 * time.Second)
	h.s.Recv(peer(Up, time.Second, time.Second, 3))
	if n := len(h.take()); n != 0 {
		t.Errorf("closed session sent %d packets", n)
	}
	if len(h.states) != 3 || h.states[0] != Init || h.states[1] != Up || h.states[2] != Down || h.diags[2] != DiagDetectionExpired {
		t.Errorf("notifications %v %v, want [Init Up Down], down for detection time expired", h.states, h.diags)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		c  Config
		ok bool
	}{
		{cfg300, true},
		{Config{DesiredMinTx: 300 * time.Millisecond, DetectMult: 3}, false},
		{Config{RequiredMinRx: 300 * time.Millisecond, DetectMult: 3}, false},
		{Config{DesiredMinTx: time.Second, RequiredMinRx: time.Second}, false},
		{Config{DesiredMinTx: 2 * time.Hour, RequiredMinRx: time.Second, DetectMult: 3}, false},
	} {
		if err := c.c.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.c, err)
		}
	}
}
