// Package members tells each speaker which other speakers are alive, fast enough for layer 2
// failover to take well under a second, without waiting for the apiserver to notice a node is
// gone (its node heartbeat takes 40 s or more).
//
// It wraps hashicorp/memberlist (SWIM with the Lifeguard extensions, the library MetalLB, Consul
// and Nomad run on) rather than a purpose-built all-to-all heartbeat, for two reasons. Views
// converge: suspicion and death are gossiped, so every speaker removes a failed node at about
// the same moment, and election (which needs every speaker to see the same live set to pick
// exactly one owner) agrees; an all-to-all heartbeat can leave two speakers with different
// views after an asymmetric failure. And a suspected node refutes a false suspicion itself, and
// Lifeguard stretches a struggling node's own timeouts, which keeps a CPU-starved speaker from
// being declared dead by its own slowness. The Kubernetes view is the member list: speakers
// join the addresses of the cluster's Nodes, and keep re-joining those not alive, so a
// partition heals on its own (memberlist never contacts a node it has declared dead).
//
// The timings are tuned for a LAN: a probe every 100 ms, a 100 ms probe timeout and a 300 ms
// suspicion period put detection at roughly 0.3–0.7 s after a node stops answering.
package members

import (
	"context"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"
)

// Config says who this speaker is and where it listens.
type Config struct {
	// Name is this node's name; members are known by their Node names.
	Name string
	// BindAddr is the address to listen on (UDP and TCP): the node's own address on the LAN.
	BindAddr string
	Port     int
	// SecretKey, when set (16, 24 or 32 bytes), encrypts and authenticates member traffic.
	SecretKey []byte
	Log       logr.Logger
	// Rejoin is how often nodes known to Kubernetes but not alive are contacted again.
	Rejoin time.Duration
}

// Members is the live view of the speakers.
type Members struct {
	cfg Config
	ml  *memberlist.Memberlist

	mu       sync.Mutex
	alive    map[string]bool
	peers    map[string]string // name → host:port, from Kubernetes
	watchers []chan struct{}
}

// Start listens and returns the view, which holds only this node until Join or SetPeers.
func Start(cfg Config) (*Members, error) {
	if cfg.Rejoin <= 0 {
		cfg.Rejoin = 3 * time.Second
	}
	m := &Members{
		cfg:   cfg,
		alive: map[string]bool{},
		peers: map[string]string{},
	}
	c := memberlist.DefaultLANConfig()
	c.Name = cfg.Name
	c.BindAddr = cfg.BindAddr
	c.BindPort = cfg.Port
	c.AdvertiseAddr = cfg.BindAddr
	c.AdvertisePort = cfg.Port
	c.ProbeInterval = 100 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 3 // × ProbeInterval (scaled by log10 of the cluster size)
	// No long first suspicion waiting for independent confirmations: in a small cluster there
	// may be none to wait for, and the probe timeout already had the indirect checks.
	c.SuspicionMaxTimeoutMult = 1
	c.GossipInterval = 50 * time.Millisecond
	c.GossipToTheDeadTime = 5 * time.Second
	c.PushPullInterval = 10 * time.Second
	c.TCPTimeout = 2 * time.Second
	// A restarted speaker comes back under its name at once, even from a new address.
	c.DeadNodeReclaimTime = time.Second
	c.SecretKey = cfg.SecretKey
	c.Events = (*events)(m)
	c.LogOutput = nil
	c.Logger = log.New(logWriter{cfg.Log.V(1)}, "", 0)
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("memberlist on %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port)), err)
	}
	m.ml = ml
	return m, nil
}

// Alive reports whether the speaker on node name is alive (this node always is).
func (m *Members) Alive(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return name == m.cfg.Name || m.alive[name]
}

// AliveSet returns the names of the live speakers, this node included.
func (m *Members) AliveSet() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := maps.Clone(m.alive)
	out[m.cfg.Name] = true
	return out
}

// Changes returns a new channel that receives a value after the live set changed. Each
// caller gets its own (layer 2 and the Elastic IP mover both follow the same view), and a
// slow reader only coalesces its own notifications.
func (m *Members) Changes() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := make(chan struct{}, 1)
	m.watchers = append(m.watchers, c)
	return c
}

// OnChange calls fn (from its own goroutine) after every change of the live set, until ctx
// ends.
func (m *Members) OnChange(ctx context.Context, fn func()) {
	c := m.Changes()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-c:
				fn()
			}
		}
	}()
}

// SetPeers replaces the Kubernetes view: node name → address of its speaker (host, the port
// is Config.Port). Peers not alive are joined now and every Rejoin period after.
func (m *Members) SetPeers(peers map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers = map[string]string{}
	for name, host := range peers {
		if name != m.cfg.Name {
			m.peers[name] = net.JoinHostPort(host, strconv.Itoa(m.cfg.Port))
		}
	}
}

// Join contacts every known peer that is not alive, in parallel, and returns when each has
// answered or failed (at most the TCP timeout).
func (m *Members) Join() {
	m.mu.Lock()
	var todo []string
	for name, addr := range m.peers {
		if !m.alive[name] {
			todo = append(todo, addr)
		}
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, addr := range todo {
		wg.Go(func() {
			if _, err := m.ml.Join([]string{addr}); err != nil {
				m.cfg.Log.V(1).Info("joining a peer failed; retrying later", "peer", addr, "err", err.Error())
			}
		})
	}
	wg.Wait()
}

// Run re-joins missing peers until ctx ends, then leaves the cluster so that the others take
// over this node's addresses at once rather than after detecting a failure.
func (m *Members) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Rejoin)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := m.ml.Leave(time.Second); err != nil {
				m.cfg.Log.Error(err, "leaving the member list")
			}
			return m.ml.Shutdown()
		case <-t.C:
			m.Join()
		}
	}
}

// events receives memberlist's notifications.
type events Members

func (e *events) set(n *memberlist.Node, alive bool) {
	m := (*Members)(e)
	if n.Name == m.cfg.Name {
		return
	}
	m.mu.Lock()
	changed := m.alive[n.Name] != alive
	if alive {
		m.alive[n.Name] = true
	} else {
		delete(m.alive, n.Name)
	}
	watchers := m.watchers
	m.mu.Unlock()
	if changed {
		m.cfg.Log.Info("speaker membership changed", "node", n.Name, "alive", alive, "addr", n.Addr.String())
		for _, c := range watchers {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

func (e *events) NotifyJoin(n *memberlist.Node)   { e.set(n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { e.set(n, false) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.set(n, true) }

// logWriter sends memberlist's standard-library log lines to logr.
type logWriter struct{ l logr.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	w.l.Info(string(trimNL(b)))
	return len(b), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

var _ io.Writer = logWriter{}
