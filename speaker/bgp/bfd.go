package bgp

import (
	"context"
	"fmt"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/bfd"
)

// The speaker reads BFDProfiles that BGPPeers name.
//
// +kubebuilder:rbac:groups=fairlead.dev,resources=bfdprofiles,verbs=list;watch

// MetalLB's defaults and ranges for BFDProfile fields (the CRD enforces them too; these catch
// what reached the API some other way).
const (
	bfdDefaultInterval = 300 // ms
	bfdDefaultMult     = 3
	bfdDefaultMinTTL   = 254
)

// BFDSettings is the BFD session a BGP session runs alongside; Profile "" means none.
type BFDSettings struct {
	Profile string
	Config  bfd.Config
	MinTTL  uint8
}

// Enabled reports whether the session uses BFD.
func (b BFDSettings) Enabled() bool { return b.Profile != "" }

// bfdSettings resolves a BGPPeer's bfdProfile. An unknown profile or a value out of range
// makes the BGPPeer invalid on this node (err); echoMode, which is not implemented, only
// gives a warning (problem).
func bfdSettings(p *v1alpha1.BGPPeer, profiles []*v1alpha1.BFDProfile) (BFDSettings, *Problem, error) {
	name := p.Spec.BFDProfile
	if name == "" {
		return BFDSettings{}, nil, nil
	}
	var prof *v1alpha1.BFDProfile
	for _, bp := range profiles {
		if bp.Name == name {
			prof = bp
		}
	}
	if prof == nil {
		return BFDSettings{}, nil, fmt.Errorf("bfdProfile %q not found", name)
	}
	s := prof.Spec
	val := func(field string, v *uint32, def, lo, hi uint32) (uint32, error) {
		if v == nil {
			return def, nil
		}
		if *v < lo || *v > hi {
			return 0, fmt.Errorf("bfdProfile %q: %s %d out of range %d..%d", name, field, *v, lo, hi)
		}
		return *v, nil
	}
	rx, err := val("receiveInterval", s.ReceiveInterval, bfdDefaultInterval, 10, 60000)
	if err != nil {
		return BFDSettings{}, nil, err
	}
	tx, err := val("transmitInterval", s.TransmitInterval, bfdDefaultInterval, 10, 60000)
	if err != nil {
		return BFDSettings{}, nil, err
	}
	mult, err := val("detectMultiplier", s.DetectMultiplier, bfdDefaultMult, 2, 255)
	if err != nil {
		return BFDSettings{}, nil, err
	}
	if _, err := val("echoInterval", s.EchoInterval, 50, 10, 60000); err != nil {
		return BFDSettings{}, nil, err
	}
	ttl, err := val("minimumTtl", s.MinimumTTL, bfdDefaultMinTTL, 1, 254)
	if err != nil {
		return BFDSettings{}, nil, err
	}
	out := BFDSettings{Profile: name, MinTTL: uint8(ttl), Config: bfd.Config{
		DesiredMinTx:  time.Duration(tx) * time.Millisecond,
		RequiredMinRx: time.Duration(rx) * time.Millisecond,
		DetectMult:    uint8(mult),
		Passive:       s.PassiveMode,
	}}
	var warn *Problem
	if s.EchoMode {
		warn = &Problem{"BGPPeer", p.Name, "BFDEchoUnsupported",
			fmt.Sprintf("bfdProfile %q sets echoMode, which Fairlead does not implement: the session runs BFD control packets only", name)}
	}
	return out, warn, nil
}

// bfdLink is the BFD session of one BGP session.
type bfdLink struct {
	set  BFDSettings
	peer bfd.Peer
	sess *bfd.Session
	// up and diag are the BFD state as last notified (under Manager.mu).
	up   bool
	st   bfd.State
	diag bfd.Diag
	// peerAdmin: the router said AdminDown. RFC 5882 section 3.2: that is not a failure of
	// the path and must not bring the client protocol down (FRR, for one, sends it when it
	// re-creates a session, as bgpd does when the BGP session comes up).
	peerAdmin bool
}

func bfdPeer(c SessionConfig, b BFDSettings) bfd.Peer {
	return bfd.Peer{Remote: c.PeerAddress, Local: c.SourceAddress, Multihop: c.Multihop > 0, MinTTL: b.MinTTL}
}

// syncBFD starts, changes or stops the BFD session of a BGP session before the BGP session is
// (re)configured, so that a BGP peer added afterwards knows whether to wait for it. A change
// of intervals goes to the running BFD session (a Poll Sequence, no reset); a change of
// address, hop mode or minimum TTL restarts it.
func (m *Manager) syncBFD(name string, d *Session) error {
	m.mu.Lock()
	l := m.bfdLinks[name]
	m.mu.Unlock()
	peer := bfdPeer(d.Config, d.BFD)
	if l != nil && (!d.BFD.Enabled() || l.peer != peer) {
		m.stopBFD(name)
		l = nil
	}
	if !d.BFD.Enabled() {
		return nil
	}
	if l != nil {
		if l.set != d.BFD {
			m.log.Info("BFD parameters changed", "peer", name, "profile", d.BFD.Profile)
			l.sess.SetConfig(d.BFD.Config)
			l.set = d.BFD
		}
		return nil
	}
	if m.bfd == nil {
		m.bfd = bfd.NewServer(m.log.WithName("bfd"), nil)
	}
	l = &bfdLink{set: d.BFD, peer: peer, st: bfd.Down}
	m.mu.Lock()
	m.bfdLinks[name] = l
	m.mu.Unlock()
	sess, err := m.bfd.Add(peer, d.BFD.Config, func(st bfd.State, diag bfd.Diag) { m.bfdChanged(name, l, st, diag) })
	if err != nil {
		m.mu.Lock()
		delete(m.bfdLinks, name)
		m.mu.Unlock()
		return fmt.Errorf("starting BFD with %s: %w", peer.Remote, err)
	}
	m.mu.Lock()
	l.sess = sess
	m.mu.Unlock()
	m.log.Info("BFD session started", "peer", name, "address", peer.Remote, "multihop", peer.Multihop,
		"profile", d.BFD.Profile, "transmit", d.BFD.Config.DesiredMinTx, "receive", d.BFD.Config.RequiredMinRx,
		"multiplier", d.BFD.Config.DetectMult, "passive", d.BFD.Config.Passive)
	return nil
}

// stopBFD ends a BGP session's BFD session (the router hears AdminDown, which it must not
// take for a failure).
func (m *Manager) stopBFD(name string) {
	m.mu.Lock()
	l := m.bfdLinks[name]
	delete(m.bfdLinks, name)
	m.mu.Unlock()
	if l != nil && m.bfd != nil {
		m.bfd.Remove(l.peer)
		m.log.Info("BFD session removed", "peer", name)
	}
}

// bfdHolds reports whether the BGP session name must stay down: it has BFD and BFD is not Up.
func (m *Manager) bfdHolds(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.bfdLinks[name]
	return l != nil && !l.up
}

func (m *Manager) bfdChanged(name string, l *bfdLink, st bfd.State, diag bfd.Diag) {
	m.mu.Lock()
	if m.bfdLinks[name] != l {
		m.mu.Unlock()
		return // replaced or removed meanwhile
	}
	l.up, l.st, l.diag = st == bfd.Up, st, diag
	// AdminDown from the peer excuses the Down it causes and the Init that follows; Up or
	// any other Down (detection time expired, the peer saying Down) ends the excuse.
	switch {
	case st == bfd.Up:
		l.peerAdmin = false
	case l.sess != nil && l.sess.Info().RemoteState == bfd.AdminDown:
		l.peerAdmin = true
	case st == bfd.Down:
		l.peerAdmin = false
	}
	peerAdmin := l.peerAdmin
	m.mu.Unlock()
	switch {
	case st == bfd.Up:
		m.log.Info("BFD session up", "peer", name)
	case peerAdmin:
		m.log.Info("BFD peer signaled AdminDown: not taken as a failure", "peer", name, "state", st.String())
	default:
		m.log.Info("BFD session not up", "peer", name, "state", st.String(), "diagnostic", diag.String())
	}
	m.gateBFD(name)
}

// gateBFD holds the BGP session administratively down while its BFD session is not Up, and
// releases it when it is. Going down resets an established session at once: DisablePeer sends
// a Cease (administrative shutdown) and closes the connection, so a router that can still be
// reached withdraws the node's paths immediately, and one that cannot has its own BFD. It is
// called on every BFD change and after every Apply (which may have re-added the peer).
func (m *Manager) gateBFD(name string) {
	m.gateMu.Lock()
	defer m.gateMu.Unlock()
	m.mu.Lock()
	s := m.sessions[name]
	l := m.bfdLinks[name]
	hold := l != nil && !l.up
	var why string
	if hold && l.peerAdmin && s != nil {
		// A released session stays released; one still waiting keeps waiting.
		s.mu.Lock()
		hold = s.bfdHold
		s.mu.Unlock()
	}
	if hold {
		why = "waiting for BFD to come up (BFD " + l.st.String() + ")"
		if l.diag != bfd.DiagNone {
			why = "BFD down: " + l.diag.String()
		}
	}
	m.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	was := s.bfdHold
	s.bfdHold = hold
	release := was && !hold && !s.held && !s.stopped
	stopped := s.stopped
	addr := s.cfg.PeerAddress.String()
	s.mu.Unlock()
	if stopped {
		return
	}
	ctx := context.Background()
	switch {
	case hold && !was:
		// RFC 8203 shutdown communication: the router's log says why.
		_ = s.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr, Communication: why})
		s.setState("", why, false)
		m.notify()
	case hold:
		if s.setState("", why, false) {
			m.notify()
		}
	case release:
		s.setState("", "", true)
		_ = s.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: addr})
		m.notify()
	}
}

// BFDInfo returns the BFD state of each BGP session that has BFD (for logs and tests).
func (m *Manager) BFDInfo() map[string]bfd.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bfd.Info{}
	for name, l := range m.bfdLinks {
		if l.sess != nil {
			out[name] = l.sess.Info()
		}
	}
	return out
}
