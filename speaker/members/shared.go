package members

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

// Options configure the speaker's shared member list.
type Options struct {
	// Node is this speaker's node.
	Node string
	// Nodes is the speaker's Node informer: the bind address and the peers come from Node
	// objects.
	Nodes coreinformers.NodeInformer
	// BindAddress is where the list listens; "" means this Node's InternalIP once it has one.
	BindAddress string
	Port        int
	// SecretFile holds a 16, 24 or 32 byte key that encrypts the list's traffic; "" none.
	SecretFile string
	Metrics    prometheus.Registerer
	Log        logr.Logger
}

// AddFlags registers the speaker's --memberlist-* flags, which set BindAddress, Port and
// SecretFile.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.BindAddress, "memberlist-bind-address", "",
		"Address the speakers' failure detector listens on (default: this Node's InternalIP).")
	fs.IntVar(&o.Port, "memberlist-port", 7946, "Port (UDP and TCP) of the speakers' failure detector.")
	fs.StringVar(&o.SecretFile, "memberlist-secret-file", "",
		"File holding a 16, 24 or 32 byte key that encrypts the failure detector's traffic (default: none).")
}

// Shared is the failure detector every electing component of a speaker shares (layer 2, BGP's
// reaper, the Elastic IP mover): one member list per speaker, so they elect from the same live
// set, and a speaker running several is one member, not several. It starts on first Get.
type Shared struct {
	o    Options
	key  []byte
	once sync.Once
	mem  *Members
	err  error
	// stopped is done once the list has been left (at shutdown), so that the process exits
	// only after the others were told.
	stopped sync.WaitGroup
}

// New checks the options (so that a bad flag fails the start) and registers the Node informer;
// call it before the informers start.
func New(o Options) (*Shared, error) {
	s := &Shared{o: o}
	if o.SecretFile != "" {
		b, err := os.ReadFile(o.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("--memberlist-secret-file: %w", err)
		}
		s.key = []byte(strings.TrimSpace(string(b)))
		if n := len(s.key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("--memberlist-secret-file %s: key is %d bytes, want 16, 24 or 32", o.SecretFile, n)
		}
	}
	if o.BindAddress != "" {
		if _, err := netip.ParseAddr(o.BindAddress); err != nil {
			return nil, fmt.Errorf("--memberlist-bind-address: %w", err)
		}
	}
	o.Nodes.Informer() // registered before the factory starts
	return s, nil
}

// Get starts the list on first call (the Node informer must have synced) and returns it once
// this speaker has tried to join every known peer. A speaker that elected alone would claim
// every address.
func (s *Shared) Get(ctx context.Context) (*Members, error) {
	s.once.Do(func() { s.mem, s.err = s.start(ctx) })
	return s.mem, s.err
}

// Wait returns once the list (if started) has been left.
func (s *Shared) Wait() { s.stopped.Wait() }

func (s *Shared) start(ctx context.Context) (*Members, error) {
	nodes := s.o.Nodes
	bind, err := s.bindAddress(ctx, nodes.Lister().Get)
	if err != nil {
		return nil, err
	}
	mem, err := Start(Config{Name: s.o.Node, BindAddr: bind, Port: s.o.Port, SecretKey: s.key, Log: s.o.Log})
	if err != nil {
		return nil, err
	}
	refresh := func() {
		ns, _ := nodes.Lister().List(labels.Everything())
		mem.SetPeers(peerAddresses(ns))
	}
	refresh()
	mem.Join()
	// Nodes come and go, and change addresses: the peers follow them (joined by Run). Status
	// updates that leave the address alone (most of them) are not worth a new peer list.
	if _, err := nodes.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { refresh() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			c, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || InternalIP(o) != InternalIP(c) {
				refresh()
			}
		},
		DeleteFunc: func(any) { refresh() },
	}); err != nil {
		return nil, err
	}
	alive := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fairlead_speaker_members_alive",
		Help: "Speakers the failure detector sees alive, this one included.",
	})
	if s.o.Metrics != nil {
		if err := s.o.Metrics.Register(alive); err != nil {
			return nil, err
		}
	}
	alive.Set(float64(len(mem.AliveSet())))
	mem.OnChange(ctx, func() { alive.Set(float64(len(mem.AliveSet()))) })
	s.stopped.Go(func() {
		// Run leaves the list when ctx ends, so that the others take over this node's
		// addresses at once rather than after detecting a failure.
		if err := mem.Run(ctx); err != nil {
			s.o.Log.Error(err, "leaving the member list")
		}
	})
	return mem, nil
}

// bindAddress is the configured address, or this Node's InternalIP once the Node has one.
func (s *Shared) bindAddress(ctx context.Context, get func(string) (*corev1.Node, error)) (string, error) {
	if s.o.BindAddress != "" {
		return s.o.BindAddress, nil
	}
	for {
		if n, err := get(s.o.Node); err == nil {
			if a := InternalIP(n); a != "" {
				return a, nil
			}
		}
		s.o.Log.Info("waiting for this Node to have an InternalIP (or set --memberlist-bind-address)", "node", s.o.Node)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// InternalIP is the address a speaker's list listens on: the Node's InternalIP, IPv4 preferred
// (the failure detector needs one address, and dual-stack nodes always have an IPv4 one).
func InternalIP(n *corev1.Node) string {
	var v6 string
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		if ip.Is4() {
			return ip.String()
		}
		if v6 == "" {
			v6 = ip.String()
		}
	}
	return v6
}

func peerAddresses(nodes []*corev1.Node) map[string]string {
	out := map[string]string{}
	for _, n := range nodes {
		if a := InternalIP(n); a != "" {
			out[n.Name] = a
		}
	}
	return out
}
