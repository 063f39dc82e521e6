package eip

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/speaker/members"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// Mover is the cloud side: *aws.EIP from aws.NewAssociator.
type Mover interface {
	// Held lists the Elastic IPs this cluster holds, with the Service each is tagged for.
	Held(ctx context.Context) (map[netip.Addr]string, error)
	// InterfaceFor finds the network interface of the instance holding privateIP.
	InterfaceFor(ctx context.Context, instanceID string, privateIP netip.Addr) (fairaws.Attachment, error)
	// Associate points ip at the attachment (a no-op when it already points there), taking it
	// from wherever it was.
	Associate(ctx context.Context, ip netip.Addr, to fairaws.Attachment) error
}

// Options configure a Loop.
type Options struct {
	// Node is this speaker's node.
	Node  string
	Mover Mover
	// Snapshots is the speaker's view of the cluster; the caller starts it. Every change
	// kicks the loop.
	Snapshots *snapshot.Source
	// Members is the speaker's failure detector, shared with layer 2; nil treats every
	// speaker as alive.
	Members *members.Shared
	// Resync re-checks every owned address this often, so that an association changed behind
	// the speaker's back is repaired (default 1 minute).
	Resync time.Duration
	// Metrics, when set, receives the loop's metrics.
	Metrics prometheus.Registerer
	// Recorder, when set, records an ElasticIPAssociated Event on the Service when this node
	// takes its address: where the address went, and when, is on the Service.
	Recorder record.EventRecorder
	// Client, when set and Recorder is not, is where the Loop records those Events through a
	// recorder of its own (as fairlead-speaker).
	Client kubernetes.Interface
	Log    logr.Logger
}

// Loop associates the Elastic IPs this node owns with its interface.
type Loop struct {
	o       Options
	bcast   record.EventBroadcaster // the recorder's, when the Loop made it
	kick    chan struct{}
	changes <-chan struct{}
	m       *metrics
}

// New returns a Loop; Run starts it.
func New(o Options) *Loop {
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	l := &Loop{o: o, kick: make(chan struct{}, 1), changes: o.Snapshots.Changes(), m: newMetrics(o.Metrics)}
	if o.Recorder == nil && o.Client != nil {
		l.bcast = record.NewBroadcaster()
		l.o.Recorder = l.bcast.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "fairlead-speaker", Host: o.Node})
	}
	return l
}

// Kick asks for a pass soon (an object changed); it never blocks.
func (l *Loop) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Run converges until ctx ends. Failed associations are retried with backoff (the SDK already
// retried throttling and 5xx within each call).
func (l *Loop) Run(ctx context.Context) error {
	if l.bcast != nil {
		l.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: l.o.Client.CoreV1().Events("")})
		defer l.bcast.Shutdown()
	}
	log := l.o.Log
	if !l.o.Snapshots.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	var alive func(string) bool
	if l.o.Members != nil {
		mem, err := l.o.Members.Get(ctx)
		if err != nil {
			return err
		}
		alive = mem.Alive
		mem.OnChange(ctx, l.Kick)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.changes:
				l.Kick()
			}
		}
	}()
	// done: addresses known to point at this node since the last resync; a pass does not ask
	// AWS about them again.
	done := map[netip.Addr]bool{}
	owned := map[netip.Addr]bool{}
	// told: addresses whose association by this node was recorded as an Event since it took
	// them over.
	told := map[netip.Addr]bool{}
	// held is AWS' answer to which addresses are this cluster's Elastic IPs; checked, the
	// addresses that answer covered. It is asked again only when a Service shows an address
	// it did not cover, and at every resync.
	var held map[netip.Addr]string
	checked := map[netip.Addr]bool{}
	var attachment *fairaws.Attachment
	var host Host
	retry := time.Second
	resync := time.NewTicker(l.o.Resync)
	defer resync.Stop()
	for {
		failed := false
		in := Input{Snapshot: l.o.Snapshots.Snapshot(), Alive: alive}
		if unknown := slices.DeleteFunc(Unexplained(in), func(ip netip.Addr) bool { return checked[ip] }); len(unknown) > 0 {
			h, err := l.o.Mover.Held(ctx)
			if err != nil {
				log.Error(err, "listing this cluster's Elastic IPs", "addresses", unknown)
				failed = true
			} else {
				held = h
				for _, ip := range unknown {
					checked[ip] = true
				}
			}
		}
		in.Held = held
		now := map[netip.Addr]bool{}
		for _, a := range Plan(in) {
			if a.Owner != l.o.Node {
				continue
			}
			now[a.IP] = true
			if !owned[a.IP] {
				log.Info("taking over Elastic IP", "ip", a.IP, "service", a.Service)
			}
			if done[a.IP] {
				continue
			}
			if attachment == nil || !hostIn(in, l.o.Node, host) {
				h, at, err := l.findSelf(ctx, in)
				if err != nil {
					log.Error(err, "finding this node's network interface", "node", l.o.Node)
					failed = true
					break
				}
				host, attachment = h, &at
			}
			if err := l.o.Mover.Associate(ctx, a.IP, *attachment); err != nil {
				log.Error(err, "associating Elastic IP", "ip", a.IP, "service", a.Service, "networkInterface", attachment.NetworkInterfaceID)
				l.m.associations.WithLabelValues("error").Inc()
				failed = true
				continue
			}
			l.m.associations.WithLabelValues("ok").Inc()
			done[a.IP] = true
			if !told[a.IP] && l.o.Recorder != nil {
				told[a.IP] = true
				l.o.Recorder.Eventf(&a.Ref, corev1.EventTypeNormal, "ElasticIPAssociated", "Elastic IP %s is associated with node %s (%s, %s)",
					a.IP, l.o.Node, attachment.NetworkInterfaceID, attachment.PrivateIP)
			}
		}
		for ip := range owned {
			if !now[ip] {
				// The new owner's association takes it over; detaching here could only race
				// with that one.
				log.Info("no longer the owner of Elastic IP", "ip", ip)
				delete(done, ip)
				delete(told, ip)
			}
		}
		owned = now
		l.m.owned.Set(float64(len(owned)))

		var wait <-chan time.Time
		if failed {
			wait = time.After(retry)
			retry = min(2*retry, time.Minute)
		} else {
			retry = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.kick:
		case <-wait:
		case <-resync.C:
			clear(done)
			clear(checked)
		}
	}
}

// findSelf looks up this node's instance and interface.
func (l *Loop) findSelf(ctx context.Context, in Input) (Host, fairaws.Attachment, error) {
	if n := in.Snapshot.NodeObjects[l.o.Node]; n != nil {
		h, ok := HostOf(n)
		if !ok {
			return Host{}, fairaws.Attachment{}, fmt.Errorf("node %s has no AWS providerID or no IPv4 InternalIP", n.Name)
		}
		at, err := l.o.Mover.InterfaceFor(ctx, h.InstanceID, h.PrivateIP)
		return h, at, err
	}
	return Host{}, fairaws.Attachment{}, fmt.Errorf("node %s not found", l.o.Node)
}

// hostIn reports whether this node is still the host found before (same instance and address).
func hostIn(in Input, node string, h Host) bool {
	if n := in.Snapshot.NodeObjects[node]; n != nil {
		got, ok := HostOf(n)
		return ok && got == h
	}
	return false
}

type metrics struct {
	associations *prometheus.CounterVec
	owned        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		associations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fairlead_eip_associations_total",
			Help: "Elastic IP associations this node asked for (or found in place), by result.",
		}, []string{"result"}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fairlead_eip_owned_addresses",
			Help: "Elastic IPs this node is the elected owner of.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.associations, m.owned)
	}
	// Both results are served from the start, so that increase() sees the first failure.
	m.associations.WithLabelValues("error")
	m.associations.WithLabelValues("ok")
	return m
}
