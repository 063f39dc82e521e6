// Package announcer is the speaker's layer 2 component: from the speaker's snapshot and the
// failure detector's live set it computes the plan (speaker/l2/plan), hands this node's share
// to the ARP/NDP responder (speaker/l2) and to the ServiceAnnouncement reporter
// (speaker/l2/report), and counts what it does.
package announcer

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/announcements"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/l2"
	"github.com/fairlead-lb/fairlead/speaker/l2/plan"
	"github.com/fairlead-lb/fairlead/speaker/l2/report"
	"github.com/fairlead-lb/fairlead/speaker/members"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// Options wire an Announcer.
type Options struct {
	Node   string
	Config *rest.Config // for the ServiceAnnouncement cache and writer
	Client kubernetes.Interface
	// Informers is the speaker's shared factory; the caller starts it.
	Informers informers.SharedInformerFactory
	// Snapshots is the speaker's view of the cluster; the caller starts it.
	Snapshots *snapshot.Source
	Members   *members.Shared
	// Announcements is the speaker's one ServiceAnnouncement writer, shared with BGP.
	Announcements *announcements.Writer
	Metrics       prometheus.Registerer
	Log           logr.Logger
}

// Announcer answers ARP/NDP for the addresses this node is elected for.
type Announcer struct {
	o         Options
	scheme    *runtime.Scheme
	crds      cache.Cache
	kick      chan struct{}
	snapshots <-chan struct{}
	responder *l2.Responder
	m         *l2Metrics
}

// New wires the announcer; call it before the informers start.
func New(o Options) (*Announcer, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// The reporter finds the ServiceAnnouncements listing this node in a typed cache; what is
	// announced comes from the snapshot. Both keep their last state while the apiserver is
	// away, which is what makes the speaker fail static.
	crds, err := cache.New(o.Config, cache.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return &Announcer{o: o, scheme: scheme, crds: crds,
		kick:      make(chan struct{}, 1),
		snapshots: o.Snapshots.Changes(),
		responder: l2.New(l2.Options{Metrics: o.Metrics, Log: o.Log.WithName("responder")}),
		m:         newL2Metrics(o.Metrics),
	}, nil
}

func (a *Announcer) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run announces until ctx ends.
func (a *Announcer) Run(ctx context.Context) error {
	log := a.o.Log
	inf, err := a.crds.GetInformer(ctx, &v1alpha1.ServiceAnnouncement{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.poke() },
		UpdateFunc: func(any, any) { a.poke() },
		DeleteFunc: func(any) { a.poke() },
	}); err != nil {
		return err
	}
	go func() {
		if err := a.crds.Start(ctx); err != nil {
			log.Error(err, "cache stopped")
		}
	}()
	if !a.crds.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	for typ, ok := range a.o.Informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache of %v did not sync", typ)
		}
	}
	src := a.o.Snapshots
	if !src.WaitForCacheSync(ctx) {
		return ctx.Err()
	}

	mem, err := a.o.Members.Get(ctx)
	if err != nil {
		return err
	}
	changes := mem.Changes()
	var stopping sync.WaitGroup
	defer stopping.Wait()
	responder := a.responder
	stopping.Go(func() { _ = responder.Run(ctx) })

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.o.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(a.scheme, corev1.EventSource{Component: "fairlead-speaker", Host: a.o.Node})
	rep := &report.Reporter{
		Node:      a.o.Node,
		Client:    a.crds,
		Writer:    a.o.Announcements,
		Service:   src.Service,
		Announced: responder.Announced,
		Recorder:  recorder,
		Log:       log.WithName("report"),
	}
	go func() { _ = rep.Run(ctx) }()

	m := a.m
	reported := map[string]bool{}
	owned := map[netip.Addr]bool{}
	var wasAlive map[string]bool
	// The plan is a pure function of the snapshot and the live set: when neither changed (the
	// periodic pass, or a ServiceAnnouncement event), the last one is reused, which keeps an
	// idle speaker idle however many Services there are.
	var (
		lastSnap  *snapshot.Snapshot
		lastAlive map[string]bool
		as        []plan.Announcement
		problems  []plan.Problem
	)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		snap, alive := src.Snapshot(), mem.AliveSet()
		if snap != lastSnap || !maps.Equal(alive, lastAlive) {
			as, problems = plan.Compute(plan.Input{Snapshot: snap, Alive: func(n string) bool { return alive[n] }})
			lastSnap, lastAlive = snap, alive
		}
		reportProblems(problems, reported, alive, a.o.Node, recorder, log)

		want := map[netip.Addr][]string{}
		now := map[netip.Addr]bool{}
		for _, an := range as {
			if an.Owner == a.o.Node {
				want[an.IP] = an.Interfaces
				now[an.IP] = true
				if !owned[an.IP] {
					m.takeovers.Inc()
					log.Info("taking over", "ip", an.IP, "services", an.Services, "interfaces", an.Interfaces)
				}
			}
		}
		for ip := range owned {
			if !now[ip] {
				log.Info("releasing", "ip", ip)
			}
		}
		owned = now
		responder.Set(want)
		m.owned.Set(float64(len(want)))
		m.setPlan(as)
		for n := range alive {
			if !wasAlive[n] && wasAlive != nil {
				// A speaker appeared (started, or a partition healed): clients may hold the
				// address of a node that answered while we could not see each other.
				responder.Reannounce(500 * time.Millisecond)
				break
			}
		}
		wasAlive = alive
		rep.Update(as)

		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
		case <-a.snapshots:
		case <-changes:
		case <-tick.C:
		}
	}
}

// reportProblems logs each invalid input once, and records a Warning Event on the object from
// one speaker only (the rendezvous owner of the object among the live speakers), so that N
// nodes do not file N copies. alive is the set the plan was computed from, so that the owner
// chosen here agrees with the plan of the same pass.
func reportProblems(problems []plan.Problem, reported map[string]bool, alive map[string]bool, self string,
	recorder record.EventRecorder, log logr.Logger) {
	now := map[string]bool{}
	speakers := slices.Sorted(maps.Keys(alive))
	for _, p := range problems {
		msg := p.Err.Error()
		k := p.String() + ": " + msg
		now[k] = true
		if reported[k] {
			continue
		}
		log.Error(p.Err, "ignoring invalid input; everything else is announced", "object", p.String())
		// The controller reports invalid L2Advertisements (condition Accepted=False and an
		// Event); the speakers only log that they skip them.
		if p.Object.Kind == "L2Advertisement" {
			continue
		}
		if o, _ := election.Owner("problem/"+p.String(), speakers); o == self {
			recorder.Event(&p.Object, corev1.EventTypeWarning, "InvalidForL2", msg)
		}
	}
	// Forget what was fixed, so that breaking it again is reported again.
	for k := range reported {
		if !now[k] {
			delete(reported, k)
		}
	}
	for k := range now {
		reported[k] = true
	}
}

type l2Metrics struct {
	takeovers prometheus.Counter
	owned     prometheus.Gauge
	plan      *prometheus.GaugeVec
}

// setPlan counts the plan's addresses by whether a node was elected for them. Every speaker
// computes the same plan, so with fairlead_l2_announced (what each node really answers for)
// it tells an address that no node answers for, however that came about.
func (m *l2Metrics) setPlan(as []plan.Announcement) {
	var elected, unowned int
	for _, a := range as {
		if a.Owner == "" {
			unowned++
		} else {
			elected++
		}
	}
	m.plan.WithLabelValues("elected").Set(float64(elected))
	m.plan.WithLabelValues("unowned").Set(float64(unowned))
}

func newL2Metrics(reg prometheus.Registerer) *l2Metrics {
	m := &l2Metrics{
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fairlead_l2_takeovers_total",
			Help: "Addresses this node started answering for (elected owner).",
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fairlead_l2_owned_addresses",
			Help: "External addresses this node is the layer 2 owner of.",
		}),
		plan: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fairlead_l2_addresses",
			Help: "Addresses to announce by layer 2 in this speaker's plan, by state: elected (a node is elected to answer) or unowned (no node is eligible).",
		}, []string{"state"}),
	}
	reg.MustRegister(m.takeovers, m.owned, m.plan)
	return m
}
