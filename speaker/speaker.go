// Package speaker makes fairlead-speaker's components (the proxy, layer 2, BGP, Elastic IPs:
// each New(Options) and Run(ctx) in a package of its own) on what they share, as controllers
// does for the controller's reconcilers. They share the API connection, one informer factory
// (a Service is watched once however many components read it) and one metrics registry; the
// components that elect and announce also share one failure detector (speaker/members), one
// view of the cluster (speaker/snapshot) and one ServiceAnnouncement writer
// (speaker/announcements). Each of these is made by the first component that needs it, so a
// speaker that only proxies watches none of Fairlead's objects.
package speaker

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/fairlead-lb/fairlead/speaker/announcements"
	"github.com/fairlead-lb/fairlead/speaker/bgp"
	"github.com/fairlead-lb/fairlead/speaker/eip"
	"github.com/fairlead-lb/fairlead/speaker/l2/announcer"
	"github.com/fairlead-lb/fairlead/speaker/members"
	"github.com/fairlead-lb/fairlead/speaker/proxy"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// Cluster is what every component is given: this node, the API connection and the metrics
// registry.
type Cluster struct {
	Node    string
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Informers is the shared factory: the components register their informers when made,
	// and Start starts it.
	Informers informers.SharedInformerFactory
	Metrics   *prometheus.Registry
}

// Options say which components run, and with what; the speaker's flags set them.
type Options struct {
	Proxy, L2, BGP, ElasticIPs bool
	// DefaultClass: Services without spec.loadBalancerClass are Fairlead's.
	DefaultClass bool

	ProxyOptions  proxy.Options
	MemberOptions members.Options
	BGPOptions    bgp.Options
	AWS           eip.AWS
}

// Component is one made component.
type Component struct {
	Name string
	Run  func(context.Context) error
}

// Speaker is the components made, and what they share.
type Speaker struct {
	c          Cluster
	o          Options
	components []Component
	members    *members.Shared
	snapshots  *snapshot.Source
	writer     *announcements.Writer
}

// New makes the components that are on, in a fixed order (proxy, layer 2, BGP, Elastic
// IPs); an error names the component whose options were wrong.
func New(c Cluster, o Options) (*Speaker, error) {
	s := &Speaker{c: c, o: o}
	for _, m := range []struct {
		name string
		on   bool
		make func() (func(context.Context) error, error)
	}{
		{"proxy", o.Proxy, s.proxy},
		{"l2", o.L2, s.l2},
		{"bgp", o.BGP, s.bgp},
		{"eip", o.ElasticIPs, s.eip},
	} {
		if !m.on {
			continue
		}
		run, err := m.make()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		s.components = append(s.components, Component{m.name, run})
		klog.InfoS("component enabled", "component", m.name, "node", c.Node)
	}
	return s, nil
}

// Components are the components made, to run until ctx ends.
func (s *Speaker) Components() []Component { return s.components }

// Start starts the informers the components registered.
func (s *Speaker) Start(ctx context.Context) {
	s.c.Informers.Start(ctx.Done())
	if s.snapshots != nil {
		s.snapshots.Start(ctx)
	}
}

// WaitForCacheSync waits until every informer has synced; false if ctx ended first.
func (s *Speaker) WaitForCacheSync(ctx context.Context) bool {
	s.c.Informers.WaitForCacheSync(ctx.Done())
	if s.snapshots != nil {
		s.snapshots.WaitForCacheSync(ctx)
	}
	return ctx.Err() == nil
}

// Wait returns, once the components have stopped, when the other speakers were told this
// one left the member list.
func (s *Speaker) Wait() {
	if s.members != nil {
		s.members.Wait()
	}
}

// shared makes what the announcing components share, on first use: the member list and the
// snapshot source, and the writer when announces.
func (s *Speaker) shared(announces bool) (err error) {
	if s.members == nil {
		mo := s.o.MemberOptions
		mo.Node, mo.Nodes, mo.Metrics, mo.Log = s.c.Node, s.c.Informers.Core().V1().Nodes(), s.c.Metrics, klog.Background().WithName("members")
		if s.members, err = members.New(mo); err != nil {
			return err
		}
	}
	if s.snapshots == nil {
		so := snapshot.SourceOptions{Informers: s.c.Informers, Dynamic: s.c.Dynamic, DefaultClass: s.o.DefaultClass}
		if s.snapshots, err = snapshot.NewSource(so); err != nil {
			return err
		}
	}
	if announces && s.writer == nil {
		s.writer, err = announcements.New(s.c.Config)
	}
	return err
}

func (s *Speaker) proxy() (func(context.Context) error, error) {
	po := s.o.ProxyOptions
	po.Node, po.Client, po.Informers, po.Metrics = s.c.Node, s.c.Client, s.c.Informers, s.c.Metrics
	return runOf(proxy.New(po))
}

// l2: the snapshot and the failure detector's live set decide what this node answers ARP and
// NDP for.
func (s *Speaker) l2() (func(context.Context) error, error) {
	if err := s.shared(true); err != nil {
		return nil, err
	}
	return runOf(announcer.New(announcer.Options{Node: s.c.Node, Config: s.c.Config, Client: s.c.Client,
		Informers: s.c.Informers, Snapshots: s.snapshots, Members: s.members, Announcements: s.writer,
		Metrics: s.c.Metrics, Log: klog.Background().WithName("l2")}))
}

// bgp: sessions from BGPPeers, paths from BGPAdvertisements.
func (s *Speaker) bgp() (func(context.Context) error, error) {
	if err := s.shared(true); err != nil {
		return nil, err
	}
	bo := s.o.BGPOptions
	bo.Node, bo.Client, bo.Dynamic, bo.Snapshots, bo.Announcements = s.c.Node, s.c.Client, s.c.Dynamic, s.snapshots, s.writer
	bo.Members = func(ctx context.Context) (bgp.Members, error) {
		m, err := s.members.Get(ctx)
		return m, err
	}
	bo.Metrics, bo.Log = s.c.Metrics, klog.Background().WithName("bgp")
	return runOf(bgp.New(bo))
}

// eip: the speaker of the node elected for an Elastic IP associates it with this node's
// interface. It elects from the same member list as layer 2, so a dead speaker's addresses
// move within a second, not when its Node goes NotReady.
func (s *Speaker) eip() (func(context.Context) error, error) {
	mover, err := s.o.AWS.Mover(context.Background())
	if err != nil {
		return nil, err
	}
	if err := s.shared(false); err != nil {
		return nil, err
	}
	return eip.New(eip.Options{Node: s.c.Node, Mover: mover, Snapshots: s.snapshots, Members: s.members,
		Metrics: s.c.Metrics, Client: s.c.Client, Log: klog.Background().WithName("eip")}).Run, nil
}

// runOf is a component's Run, once it is made.
func runOf[C interface{ Run(context.Context) error }](c C, err error) (func(context.Context) error, error) {
	if err != nil {
		return nil, err
	}
	return c.Run, nil
}
