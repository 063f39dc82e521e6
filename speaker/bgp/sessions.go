package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/bfd"
	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Backoff on top of GoBGP's fixed retry: after failuresBeforeBackoff consecutive failures a
// session is administratively disabled for backoffBase, doubling per further failure up to
// backoffMax, so a misconfigured session does not hammer the router every few seconds
// forever. A change to the BGPPeer (or its Secret) starts over at once.
const (
	failuresBeforeBackoff = 3
	backoffBase           = 10 * time.Second
	backoffMax            = 2 * time.Minute
)

// State names a session's condition as reported in BGPPeer status.
const (
	StateEstablished = "Established"
	StateInvalid     = "Invalid"
)

// Status is one session's observable state.
type Status struct {
	State        string
	LastError    string
	PrefixesSent int
	Since        time.Time
}

// Manager runs one embedded GoBGP server per session and converges them to the desired
// sessions and paths. A server per session keeps the sessions independent: each carries exactly
// its own paths and attributes, a failing session cannot disturb another, and a change to one
// BGPPeer restarts only that one. Apply and Shutdown are called from one goroutine; Status from
// any.
type Manager struct {
	log    logr.Logger
	notify func()

	mu       sync.Mutex
	sessions map[string]*session

	bfd      *bfd.Server         // opened with the first BFD session (bfd.go)
	bfdLinks map[string]*bfdLink // by peer, under mu
	gateMu   sync.Mutex          // serialises gateBFD
}

// NewManager returns a Manager; notify is called (from GoBGP's goroutines, so it must not
// block) whenever a session's state changes.
func NewManager(log logr.Logger, notify func()) *Manager {
	if notify == nil {
		notify = func() {}
	}
	return &Manager{log: log, notify: notify, sessions: map[string]*session{}, bfdLinks: map[string]*bfdLink{}}
}

type installed struct {
	path Path
	uuid []byte
}

type session struct {
	peer   string
	cfg    SessionConfig
	srv    *server.BgpServer
	cancel context.CancelFunc         // ends the state watch
	paths  map[netip.Prefix]installed // written by Apply under mu, read by Status

	mu       sync.Mutex
	state    string
	lastErr  string
	since    time.Time
	failures int    // consecutive, since the last Established or reconfiguration
	held     bool   // disabled by backoff
	refusal  string // why the session was refused (refuse): the lastError until it is retried
	bfdHold  bool   // disabled until its BFD session is Up (bfd.go)
	stopped  bool
}

// Apply makes the running sessions and their paths match desired. Sessions marked Invalid are
// not run. Errors of one session do not stop the others; they are joined in the result and the
// next Apply retries.
func (m *Manager) Apply(ctx context.Context, desired map[string]*Session) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m.sessions)) {
		d, ok := desired[name]
		if !ok || d.Invalid != "" {
			m.stop(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		d := desired[name]
		if d.Invalid != "" {
			continue
		}
		if err := m.syncBFD(name, d); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", name, err))
			continue
		}
		s, err := m.ensure(ctx, name, d.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", name, err))
			continue
		}
		m.gateBFD(name)
		if err := s.syncPaths(ctx, d.Paths); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ensure returns the running session for name with config c, starting or reconfiguring it.
// A change of the local ASN or router ID needs a new server; any other change re-adds the peer
// on the running one, which keeps its paths.
func (m *Manager) ensure(ctx context.Context, name string, c SessionConfig) (*session, error) {
	m.mu.Lock()
	s := m.sessions[name]
	m.mu.Unlock()
	if s != nil && s.cfg == c {
		return s, nil
	}
	if s != nil && s.cfg.LocalASN == c.LocalASN && s.cfg.RouterID == c.RouterID {
		m.log.Info("BGP peer changed, re-establishing its session", "peer", name)
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: s.cfg.PeerAddress.String()}); err != nil {
			return nil, fmt.Errorf("removing the old session: %w", err)
		}
		s.mu.Lock()
		s.cfg = c
		s.failures, s.held, s.refusal = 0, false, ""
		s.bfdHold = m.bfdHolds(name)
		p := apiPeer(c)
		p.Conf.AdminDown = s.bfdHold
		s.mu.Unlock()
		s.setState("Idle", "", true)
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
			return nil, fmt.Errorf("adding the session: %w", err)
		}
		m.notify()
		return s, nil
	}
	if s != nil {
		m.stop(name)
	}
	s, err := m.start(name, c)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.sessions[name] = s
	m.mu.Unlock()
	m.notify()
	return s, nil
}

func (m *Manager) start(name string, c SessionConfig) (*session, error) {
	s := &session{peer: name, cfg: c, paths: map[netip.Prefix]installed{}, state: "Idle", since: time.Now(),
		bfdHold: m.bfdHolds(name)}
	log := m.log.WithValues("peer", name)
	s.srv = server.NewBgpServer(server.LoggerOption(&gobgpLogger{log: log, s: s, notify: m.notify}))
	// Serve runs until the process ends (GoBGP has no way to stop it); a stopped server leaves
	// this one idle goroutine behind, which is why config changes reuse servers when they can.
	go s.srv.Serve()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	// ListenPort -1: no listener. Each session opens its connection actively, so several
	// servers (one per peer) coexist, and nothing on the node accepts BGP from strangers.
	err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: c.LocalASN, RouterId: c.RouterID.String(), ListenPort: -1,
	}})
	if err == nil {
		err = s.srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
			pe := r.GetPeer()
			if pe == nil || pe.Type != api.WatchEventResponse_PeerEvent_STATE || pe.Peer.GetState() == nil {
				return
			}
			st := stateName(pe.Peer.State.SessionState)
			if st == StateEstablished && c.DynamicASN != "" {
				if msg := wrongKind(c, pe.Peer.State.PeerAsn); msg != "" {
					s.refuse(log, msg)
					st = "Idle"
				}
			}
			if s.setState(st, "", st == StateEstablished) {
				if st == StateEstablished {
					log.Info("BGP session established")
				} else {
					log.V(1).Info("BGP session state", "state", st)
				}
				m.notify()
			}
		})
	}
	if err == nil {
		p := apiPeer(c)
		p.Conf.AdminDown = s.bfdHold // BGP waits for BFD (bfd.go)
		err = s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p})
	}
	if err != nil {
		cancel()
		_ = s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return nil, err
	}
	log.Info("BGP session configured", "address", c.PeerAddress, "peerASN", c.PeerASN, "localASN", c.LocalASN, "md5", c.Password != "")
	return s, nil
}

// stop ends a session with a Cease NOTIFICATION, so that the router withdraws its paths at
// once rather than after the hold time.
func (m *Manager) stop(name string) {
	m.stopBFD(name)
	m.mu.Lock()
	s := m.sessions[name]
	delete(m.sessions, name)
	m.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	_ = s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	m.log.Info("BGP session removed", "peer", name)
	m.notify()
}

// Shutdown ends the sessions on SIGTERM, in parallel. Sessions without graceful restart end
// with a Cease, so the routers withdraw the node's paths now. Sessions with graceful restart
// are left to close with the process: their TCP connections end without a NOTIFICATION,
// which the router takes as a restart (RFC 4724) and keeps forwarding on the stale paths
// until the new speaker refreshes them (a rolling update) or the restart time runs out. A
// Cease would end graceful restart, even with RFC 8538, as GoBGP sends a Hard Reset.
func (m *Manager) Shutdown() {
	m.mu.Lock()
	var names []string
	for n, s := range m.sessions {
		if s.cfg.GracefulRestart > 0 {
			m.log.Info("leaving the BGP session to close with the process: the router keeps its paths (graceful restart)", "peer", n, "restartTime", s.cfg.GracefulRestart)
			continue
		}
		names = append(names, n)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() { m.stop(n) })
	}
	wg.Wait()
}

// wrongKind checks the ASN a router sent against the peer's dynamicASN.
func wrongKind(c SessionConfig, asn uint32) string {
	internal := asn == c.LocalASN
	switch {
	case c.DynamicASN == v1alpha1.DynamicASNInternal && !internal:
		return fmt.Sprintf("dynamicASN internal, but the router's ASN %d differs from localASN %d", asn, c.LocalASN)
	case c.DynamicASN == v1alpha1.DynamicASNExternal && internal:
		return fmt.Sprintf("dynamicASN external, but the router's ASN %d equals localASN", asn)
	}
	return ""
}

// refuse ends an established session that must not stay up and keeps it down for backoffMax
// (a change to the BGPPeer retries at once). Called from GoBGP's goroutines, so the API calls
// run on a goroutine of their own.
func (s *session) refuse(log logr.Logger, msg string) {
	s.mu.Lock()
	s.lastErr, s.refusal, s.held = msg, msg, true
	addr := s.cfg.PeerAddress.String()
	s.mu.Unlock()
	log.Info("BGP session refused", "reason", msg)
	go func() {
		ctx := context.Background()
		_ = s.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr, Communication: msg})
		time.AfterFunc(backoffMax, func() {
			s.mu.Lock()
			resume := !s.stopped && !s.bfdHold
			s.held, s.refusal = false, ""
			s.mu.Unlock()
			if resume {
				_ = s.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: addr})
			}
		})
	}()
}

// Status returns the state of every running session.
func (m *Manager) Status() map[string]Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Status, len(m.sessions))
	for name, s := range m.sessions {
		s.mu.Lock()
		st := Status{State: s.state, LastError: s.lastErr, Since: s.since}
		if s.state == StateEstablished {
			st.PrefixesSent = len(s.paths)
		}
		s.mu.Unlock()
		out[name] = st
	}
	return out
}

// Advertised returns, per established session, the prefixes its server originates: what the
// router has been sent (or is being sent) right now.
func (m *Manager) Advertised() map[string]map[netip.Prefix]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[netip.Prefix]bool{}
	for name, s := range m.sessions {
		s.mu.Lock()
		if s.state == StateEstablished {
			ps := make(map[netip.Prefix]bool, len(s.paths))
			for p := range s.paths {
				ps[p] = true
			}
			out[name] = ps
		}
		s.mu.Unlock()
	}
	return out
}

// setState records a state change; an error is kept until the session is established (or
// clearErr). It reports whether anything changed.
func (s *session) setState(state, lastErr string, clearErr bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	if state != "" && state != s.state {
		s.state, s.since, changed = state, time.Now(), true
	}
	if state == StateEstablished {
		s.failures = 0
	}
	if clearErr && s.lastErr != "" {
		s.lastErr, changed = "", true
	}
	if s.refusal != "" {
		// GoBGP then reports the shutdown that refuse caused: the reason is the refusal.
		lastErr = s.refusal
	}
	if lastErr != "" && lastErr != s.lastErr {
		s.lastErr, changed = lastErr, true
	}
	return changed
}

// failed counts a failure and, once they repeat, disables the peer for a growing pause. It is
// called from GoBGP's goroutines (its logger), so the API calls run on a goroutine of their
// own: calling back into GoBGP from inside it could deadlock.
func (s *session) failed(log logr.Logger) {
	s.mu.Lock()
	s.failures++
	if s.failures < failuresBeforeBackoff || s.held || s.stopped {
		s.mu.Unlock()
		return
	}
	d := min(backoffBase<<min(s.failures-failuresBeforeBackoff, 8), backoffMax)
	s.held = true
	addr := s.cfg.PeerAddress.String()
	s.mu.Unlock()
	log.Info("BGP session keeps failing, pausing its retries", "failures", s.failures, "pause", d)
	go func() {
		ctx := context.Background()
		_ = s.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr, Communication: "retry backoff"})
		time.AfterFunc(d, func() {
			s.mu.Lock()
			resume := !s.stopped && !s.bfdHold
			s.held = false
			s.mu.Unlock()
			// Always re-enable: enabling an enabled peer (one re-added meanwhile) is harmless,
			// and a re-added peer that the DisablePeer above reached late must not stay down.
			if resume {
				_ = s.srv.EnablePeer(ctx, &api.EnablePeerRequest{Address: addr})
			}
		})
	}()
}

// syncPaths adds, replaces and withdraws paths so that the server originates exactly want.
func (s *session) syncPaths(ctx context.Context, want map[netip.Prefix]Path) error {
	var errs []error
	for prefix, have := range s.paths {
		if _, ok := want[prefix]; ok {
			continue
		}
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: have.uuid}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", prefix, err))
			continue
		}
		s.mu.Lock()
		delete(s.paths, prefix)
		s.mu.Unlock()
	}
	for _, prefix := range slices.SortedFunc(maps.Keys(want), func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) }) {
		p := want[prefix]
		if have, ok := s.paths[prefix]; ok && have.path.equal(p) {
			continue
		}
		// Adding a path for a prefix this server already originates replaces it (same source,
		// same NLRI): the router sees one UPDATE, not a withdraw and an announce.
		r, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: apiPath(p)})
		if err != nil {
			errs = append(errs, fmt.Errorf("advertising %s: %w", prefix, err))
			continue
		}
		s.mu.Lock()
		s.paths[prefix] = installed{path: p, uuid: r.Uuid}
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

func stateName(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "Idle"
	case api.PeerState_CONNECT:
		return "Connect"
	case api.PeerState_ACTIVE:
		return "Active"
	case api.PeerState_OPENSENT:
		return "OpenSent"
	case api.PeerState_OPENCONFIRM:
		return "OpenConfirm"
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return "Unknown"
}

var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func apiPeer(c SessionConfig) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: c.PeerAddress.String(),
			PeerAsn:         c.PeerASN, // 0 with dynamicASN: GoBGP takes the ASN the router sends
			LocalAsn:        c.LocalASN,
			AuthPassword:    c.Password,
		},
		// ConnectRetry also bounds how long one TCP connect may take; a session that ended in an
		// error waits GoBGP's idle hold time (5s) before it.
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(c.ConnectRetry / time.Second),
			HoldTime:          uint64(c.HoldTime / time.Second),
			KeepaliveInterval: uint64(c.Keepalive / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(c.Port)},
	}
	if c.SourceAddress.IsValid() {
		p.Transport.LocalAddress = c.SourceAddress.String()
	}
	// SO_BINDTODEVICE on a VRF device: the connection is routed by the VRF's table.
	p.Transport.BindInterface = c.VRF
	if c.Multihop > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(c.Multihop)}
	}
	gr := c.GracefulRestart > 0
	if gr {
		// NotificationEnabled is RFC 8538's N bit: a NOTIFICATION other than a Hard Reset (a hold
		// timer expiry, say) keeps the routes as stale too. GoBGP turns its own Cease for a
		// deleted peer into a Hard Reset, so removing a BGPPeer still withdraws at once.
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(c.GracefulRestart / time.Second),
			NotificationEnabled: true}
	}
	families := []*api.Family{familyV4, familyV6}
	switch {
	case c.DisableMP && c.PeerAddress.Is4():
		families = []*api.Family{familyV4}
	case c.DisableMP:
		families = []*api.Family{familyV6}
	}
	for _, f := range families {
		a := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}}
		if gr {
			a.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		p.AfiSafis = append(p.AfiSafis, a)
	}
	return p
}

func apiPath(p Path) *api.Path {
	nlri := mustAny(&api.IPAddressPrefix{Prefix: p.Prefix.Addr().String(), PrefixLen: uint32(p.Prefix.Bits())})
	attrs := []*anypb.Any{mustAny(&api.OriginAttribute{Origin: 0})} // IGP
	family := familyV4
	if p.Prefix.Addr().Is4() {
		nh := "0.0.0.0" // GoBGP puts the session's local address here
		if p.NextHop.IsValid() {
			nh = p.NextHop.String()
		}
		attrs = append(attrs, mustAny(&api.NextHopAttribute{NextHop: nh}))
	} else {
		family = familyV6
		nh := "::"
		if p.NextHop.IsValid() {
			nh = p.NextHop.String()
		}
		attrs = append(attrs, mustAny(&api.MpReachNLRIAttribute{Family: familyV6, NextHops: []string{nh}, Nlris: []*anypb.Any{nlri}}))
	}
	if p.LocalPref != nil {
		attrs = append(attrs, mustAny(&api.LocalPrefAttribute{LocalPref: *p.LocalPref}))
	}
	if len(p.Communities) > 0 {
		attrs = append(attrs, mustAny(&api.CommunitiesAttribute{Communities: p.Communities}))
	}
	if len(p.LargeCommunities) > 0 {
		var lcs []*api.LargeCommunity
		for _, l := range p.LargeCommunities {
			lcs = append(lcs, &api.LargeCommunity{GlobalAdmin: l.Global, LocalData1: l.Local1, LocalData2: l.Local2})
		}
		attrs = append(attrs, mustAny(&api.LargeCommunitiesAttribute{Communities: lcs}))
	}
	return &api.Path{Family: family, Nlri: nlri, Pattrs: attrs}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only on a message type unknown to the protobuf registry: a programming error
	}
	return a
}
