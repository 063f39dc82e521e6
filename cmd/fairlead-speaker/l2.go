package main

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
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/l2"
	"github.com/fairlead-lb/fairlead/speaker/l2/plan"
	"github.com/fairlead-lb/fairlead/speaker/l2/report"
	"github.com/fairlead-lb/fairlead/speaker/members"
)

// setupL2 wires layer 2: the speaker's snapshot and the failure detector's live set feed
// plan.Compute, whose answer for this node goes to the ARP/NDP responder and to the
// ServiceAnnouncement reporter.
func setupL2(s *speaker) (func(context.Context) error, error) {
	ml, err := s.memberList()
	if err != nil {
		return nil, err
	}
	src, err := s.snapshots()
	if err != nil {
		return nil, err
	}
	log := klog.Background().WithName("l2")
	// controller-runtime's cache and client log through their own global logger; without one
	// they complain on stderr and drop their messages.
	ctrllog.SetLogger(klog.Background().WithName("controller-runtime"))

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// What is announced comes from the snapshot; the reporter reads ServiceAnnouncements from
	// a typed cache. Both keep their last state while the apiserver is away, which is what
	// makes the speaker fail static.
	crds, err := cache.New(s.config, cache.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	writer, err := client.New(s.config, client.Options{Scheme: scheme, Cache: &client.CacheOptions{Reader: crds}})
	if err != nil {
		return nil, err
	}

	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	snapChanges := src.Changes()

	m := newL2Metrics(s.metrics)
	responder := l2.New(l2.Options{Metrics: s.metrics, Log: log.WithName("responder")})

	return func(ctx context.Context) error {
		inf, err := crds.GetInformer(ctx, &v1alpha1.ServiceAnnouncement{})
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		go func() {
			if err := crds.Start(ctx); err != nil {
				log.Error(err, "cache stopped")
			}
		}()
		if !crds.WaitForCacheSync(ctx) {
			return ctx.Err()
		}
		for typ, ok := range s.informer.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("cache of %v did not sync", typ)
			}
		}
		if !src.WaitForCacheSync(ctx) {
			return ctx.Err()
		}

		mem, err := ml.get(ctx)
		if err != nil {
			return err
		}
		changes := mem.Changes()
		var stopping sync.WaitGroup
		defer stopping.Wait()
		stopping.Go(func() { _ = responder.Run(ctx) })

		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "fairlead-speaker", Host: s.node})
		rep := &report.Reporter{
			Node:      s.node,
			Client:    writer,
			Service:   src.Service,
			Announced: responder.Announced,
			Recorder:  recorder,
			Log:       log.WithName("report"),
		}
		go func() { _ = rep.Run(ctx) }()

		reported := map[string]bool{}
		owned := map[netip.Addr]bool{}
		var wasAlive map[string]bool
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			as, problems := plan.Compute(plan.Input{Snapshot: src.Snapshot(), Alive: mem.Alive})
			reportProblems(problems, reported, mem, s.node, recorder, log)

			want := map[netip.Addr][]string{}
			now := map[netip.Addr]bool{}
			for _, a := range as {
				if a.Owner == s.node {
					want[a.IP] = a.Interfaces
					now[a.IP] = true
					if !owned[a.IP] {
						m.takeovers.Inc()
						log.Info("taking over", "ip", a.IP, "services", a.Services, "interfaces", a.Interfaces)
					}
				}
			}
			for a := range owned {
				if !now[a] {
					log.Info("releasing", "ip", a)
				}
			}
			owned = now
			responder.Set(want)
			m.owned.Set(float64(len(want)))
			m.setPlan(as)
			alive := mem.AliveSet()
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
			case <-kick:
			case <-snapChanges:
			case <-changes:
			case <-tick.C:
			}
		}
	}, nil
}

// reportProblems logs each invalid input once, and records a Warning Event on the object from
// one speaker only (the rendezvous owner of the object among the live speakers), so that N
// nodes do not file N copies.
func reportProblems(problems []plan.Problem, reported map[string]bool, mem *members.Members, self string,
	recorder record.EventRecorder, log logr.Logger) {
	now := map[string]bool{}
	alive := slices.Sorted(maps.Keys(mem.AliveSet()))
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
		if o, _ := election.Owner("problem/"+p.String(), alive); o == self {
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
