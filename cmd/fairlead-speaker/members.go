package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/fairlead-lb/fairlead/speaker/members"
)

var (
	memberlistBind = flag.String("memberlist-bind-address", "",
		"Address the speakers' failure detector listens on (default: this Node's InternalIP).")
	memberlistPort = flag.Int("memberlist-port", 7946, "Port (UDP and TCP) of the speakers' failure detector.")
	memberlistKey  = flag.String("memberlist-secret-file", "",
		"File holding a 16, 24 or 32 byte key that encrypts the failure detector's traffic (default: none).")
)

// memberList is the failure detector every electing component shares (layer 2 and the Elastic
// IP mover): one member list per speaker, so both elect from the same live set, and a speaker
// running both is one member, not two.
type memberList struct {
	s    *speaker
	key  []byte
	once sync.Once
	mem  *members.Members
	err  error
	// stopped is done once the list has been left (at shutdown), so that the process exits
	// only after the others were told.
	stopped sync.WaitGroup
}

// memberList returns the speaker's shared list, checking its flags on first use (in setup, so a
// bad flag fails fast).
func (s *speaker) memberList() (*memberList, error) {
	if s.members != nil {
		return s.members, nil
	}
	ml := &memberList{s: s}
	if *memberlistKey != "" {
		b, err := os.ReadFile(*memberlistKey)
		if err != nil {
			return nil, fmt.Errorf("--memberlist-secret-file: %w", err)
		}
		ml.key = []byte(strings.TrimSpace(string(b)))
		if n := len(ml.key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("--memberlist-secret-file %s: key is %d bytes, want 16, 24 or 32", *memberlistKey, n)
		}
	}
	if *memberlistBind != "" {
		if _, err := netip.ParseAddr(*memberlistBind); err != nil {
			return nil, fmt.Errorf("--memberlist-bind-address: %w", err)
		}
	}
	s.informer.Core().V1().Nodes().Informer() // registered before the factory starts
	s.members = ml
	return ml, nil
}

// get starts the list on first call (the Node informer must have synced: the bind address
// and the peers come from Node objects) and returns it once this speaker has tried to join
// every known peer. A speaker that elected alone would claim every address.
func (ml *memberList) get(ctx context.Context) (*members.Members, error) {
	ml.once.Do(func() { ml.mem, ml.err = ml.start(ctx) })
	return ml.mem, ml.err
}

func (ml *memberList) start(ctx context.Context) (*members.Members, error) {
	nodes := ml.s.informer.Core().V1().Nodes()
	bind, err := bindAddress(ctx, nodes.Lister().Get, ml.s.node)
	if err != nil {
		return nil, err
	}
	mem, err := members.Start(members.Config{Name: ml.s.node, BindAddr: bind, Port: *memberlistPort, SecretKey: ml.key,
		Log: klog.Background().WithName("members")})
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
			if !ok1 || !ok2 || internalIP(o) != internalIP(c) {
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
	if err := ml.s.metrics.Register(alive); err != nil {
		return nil, err
	}
	alive.Set(float64(len(mem.AliveSet())))
	mem.OnChange(ctx, func() { alive.Set(float64(len(mem.AliveSet()))) })
	ml.stopped.Go(func() {
		// Run leaves the list when ctx ends, so that the others take over this node's
		// addresses at once rather than after detecting a failure.
		if err := mem.Run(ctx); err != nil {
			klog.ErrorS(err, "leaving the member list")
		}
	})
	return mem, nil
}

// wait returns once the list (if started) has been left.
func (ml *memberList) wait() { ml.stopped.Wait() }

// bindAddress is --memberlist-bind-address, or this Node's InternalIP once the Node has one.
func bindAddress(ctx context.Context, get func(string) (*corev1.Node, error), name string) (string, error) {
	if *memberlistBind != "" {
		return *memberlistBind, nil
	}
	for {
		if n, err := get(name); err == nil {
			if a := internalIP(n); a != "" {
				return a, nil
			}
		}
		klog.InfoS("waiting for this Node to have an InternalIP (or set --memberlist-bind-address)", "node", name)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// internalIP prefers IPv4: the failure detector needs one address, and dual-stack nodes
// always have an IPv4 InternalIP.
func internalIP(n *corev1.Node) string {
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
		if a := internalIP(n); a != "" {
			out[n.Name] = a
		}
	}
	return out
}
