// Package proxy is the speaker's nftables service proxy (fairlead-speaker --proxy), a
// replacement for kube-proxy on the node. It watches Services, EndpointSlices and its own
// Node, turns them into per-port models (speaker/proxy/model), renders them
// (speaker/proxy/rules) and programs one nftables table, `inet fairlead`
// (speaker/proxy/nftsync).
//
// # Table layout
//
// Base chains hook netfilter; Services are found through maps keyed on (address . protocol
// . port), or (protocol . port) for NodePorts, one set of maps per family, so the
// per-packet cost is a few hash lookups whatever the number of Services:
//
//	filter-prerouting, filter-output (priority -110, new connections only)
//	  firewall-check   @firewall-ips-N          → fwN-<svc>: loadBalancerSourceRanges, drop others
//	  endpoints-check  @no-endpoint-services-N,
//	                   @no-endpoint-nodeports-N → reject-chain (TCP reset, ICMP otherwise)
//	nat-prerouting, nat-output (-100) → services
//	  services   @external-local-ips-N  (externalTrafficPolicy Local, external clients)
//	                                    → spread-localN-<n>, or drop without local endpoints
//	             @masq-outside-cluster-N, @masq-always-N, @masq-from-node-N → mark for masquerade
//	             @service-ips-N, @service-nodeports-N → spreadN-<n> / spread-npN-<n>
//	  spreadN-<n>  dnat to (address . protocol . port . numgen random mod n) map @endpoints-N
//	nat-postrouting (100) → masquerading: hairpin (@hairpin-N), then packets carrying 0x4000
//
// The spread chains are shared: one per endpoint count up to rules.MaxSpread. A Service is
// then only map and set elements, and changing it touches nothing else. Services with
// session affinity or more endpoints get chains of their own instead (svcN-, extN-, cluN-,
// locN-, epN-<svc>), reached from the same maps. <svc> is "namespace/name/protocol/port-name";
// N is the family (4 or 6).
//
// # Syncing
//
// A change to one Service or its EndpointSlices is a partial sync: one transaction touching
// only that Service's chains, sets and map elements. Changes are batched: syncs are at least
// MinSyncInterval apart. A full sync (at start, every SyncPeriod, when the node's zone
// changes, and after any failed sync) rewrites the whole table in one transaction, so a
// restarting proxy replaces its predecessor's rules atomically and drift is repaired. The
// rules stay in place when the proxy exits.
package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"

	"github.com/fairlead-lb/fairlead/speaker/proxy/conntrack"
	"github.com/fairlead-lb/fairlead/speaker/proxy/healthcheck"
	"github.com/fairlead-lb/fairlead/speaker/proxy/model"
	"github.com/fairlead-lb/fairlead/speaker/proxy/nftsync"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
)

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// TableName is the nftables table (family inet) the proxy owns.
const TableName = "fairlead"

// Options configure a Proxier.
type Options struct {
	NodeName string
	Rules    rules.Config
	// MinSyncInterval is the least time between two syncs: changes arriving meanwhile are
	// batched into the next one.
	MinSyncInterval time.Duration
	// SyncPeriod is how often a full sync rewrites everything (repairing drift).
	SyncPeriod time.Duration
}

// Proxier keeps the node's nftables table in line with the cluster's Services.
type Proxier struct {
	opts         Options
	nft          knftables.Interface
	syncer       *nftsync.Syncer
	nodeFactory  informers.SharedInformerFactory
	services     corelisters.ServiceLister
	slices       cache.Indexer // EndpointSlices, indexed by Service
	nodes        corelisters.NodeLister
	synced       []cache.InformerSynced
	healthServer *healthcheck.Server
	recorder     record.EventRecorder
	bcast        record.EventBroadcaster
	metrics      *metrics

	mu       sync.Mutex
	dirty    map[types.NamespacedName]bool
	needFull bool
	kick     chan struct{}

	// Only the sync loop touches what follows.
	zone      string
	ports     map[types.NamespacedName]map[string]*model.ServicePort
	reported  map[types.NamespacedName]string
	conflicts map[string]bool
	health    map[types.NamespacedName]healthcheck.Service // what the health check server serves
	started   bool                                         // a sync succeeded: ports holds what is programmed
	lastSync  time.Time
	healthyAt time.Time
}

// New wires a Proxier to the informer factory (which the caller starts) and the registry.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, reg prometheus.Registerer,
	nft knftables.Interface, opts Options) (*Proxier, error) {
	if opts.NodeName == "" {
		return nil, fmt.Errorf("node name is required")
	}
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = time.Second
	}
	if opts.SyncPeriod <= 0 {
		opts.SyncPeriod = time.Hour
	}
	p := &Proxier{
		opts: opts, nft: nft, syncer: nftsync.New(nft, TableName, opts.Rules), healthServer: healthcheck.New(),
		health: map[types.NamespacedName]healthcheck.Service{},
		dirty:  map[types.NamespacedName]bool{}, needFull: true, kick: make(chan struct{}, 1),
		ports: map[types.NamespacedName]map[string]*model.ServicePort{}, reported: map[types.NamespacedName]string{},
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	p.metrics = m

	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	// Only our own Node, and in a factory of its own: watching every Node of a large
	// cluster (status updates every few seconds each) would cost far more than it tells.
	p.nodeFactory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", opts.NodeName).String()
		}))
	nodeInf := p.nodeFactory.Core().V1().Nodes()
	p.services, p.nodes = svcInf.Lister(), nodeInf.Lister()
	// Slices by their Service: listing a namespace's slices with a label selector for each
	// Service would make a full sync quadratic in the Services of a namespace.
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{sliceIndex: sliceService}); err != nil {
		return nil, err
	}
	p.slices = sliceInf.Informer().GetIndexer()

	onService := func(obj any) {
		if s, ok := unwrap[*corev1.Service](obj); ok {
			p.markDirty(types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
		}
	}
	onSlice := func(obj any) {
		if s, ok := unwrap[*discoveryv1.EndpointSlice](obj); ok {
			if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
				p.markDirty(types.NamespacedName{Namespace: s.Namespace, Name: name})
			}
		}
	}
	// The zone decides topology for every Service: a change means a full sync. Nothing
	// else of the Node matters, and its status changes often.
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.requestFull() },
		UpdateFunc: func(o, n any) {
			on, ok1 := o.(*corev1.Node)
			nn, ok2 := n.(*corev1.Node)
			if ok1 && ok2 && on.Labels[corev1.LabelTopologyZone] != nn.Labels[corev1.LabelTopologyZone] {
				p.requestFull()
			}
		},
	}); err != nil {
		return nil, err
	}
	// The first sync waits until our handlers have seen every initial object, not only
	// until the caches are filled: otherwise the initial adds still being delivered would
	// make a huge "partial" sync right after the full one.
	p.synced = []cache.InformerSynced{nodeInf.Informer().HasSynced}
	for inf, fn := range map[cache.SharedIndexInformer]func(any){
		svcInf.Informer(): onService, sliceInf.Informer(): onSlice,
	} {
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    fn,
			UpdateFunc: func(_, n any) { fn(n) },
			DeleteFunc: fn,
		})
		if err != nil {
			return nil, err
		}
		p.synced = append(p.synced, inf.HasSynced, reg.HasSynced)
	}

	p.bcast = record.NewBroadcaster()
	p.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	p.recorder = p.bcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "fairlead-proxy", Host: opts.NodeName})
	return p, nil
}

const sliceIndex = "service"

// sliceService indexes an EndpointSlice under "namespace/service".
func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
}

func unwrap[T any](obj any) (T, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	t, ok := obj.(T)
	return t, ok
}

func (p *Proxier) markDirty(nn types.NamespacedName) {
	p.mu.Lock()
	p.dirty[nn] = true
	p.mu.Unlock()
	p.poke()
}

func (p *Proxier) requestFull() {
	p.mu.Lock()
	p.needFull = true
	p.mu.Unlock()
	p.poke()
}

func (p *Proxier) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Healthy reports whether the proxy has synced recently (for the healthz endpoint).
func (p *Proxier) Healthy() (bool, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := p.healthyAt
	return !at.IsZero() && time.Since(at) < 2*p.opts.SyncPeriod+time.Minute, at
}

// Run syncs until ctx ends. The rules stay in place when it returns: a restarting proxy
// replaces them atomically, so traffic keeps flowing meanwhile.
func (p *Proxier) Run(ctx context.Context) error {
	defer p.bcast.Shutdown()
	defer p.healthServer.Close()
	p.nodeFactory.Start(ctx.Done())
	defer p.nodeFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return ctx.Err()
	}
	full := time.NewTicker(p.opts.SyncPeriod)
	defer full.Stop()
	retry := time.NewTimer(0)
	<-retry.C
	backoff := time.Duration(0)
	for {
		if err := p.syncOnce(ctx); err != nil {
			// Back off while the kernel keeps refusing, up to a minute between attempts.
			backoff = min(max(2*backoff, p.opts.MinSyncInterval, 100*time.Millisecond), time.Minute)
			klog.ErrorS(err, "proxy sync failed; retrying with a full sync", "in", backoff)
			p.mu.Lock()
			p.needFull = true
			p.mu.Unlock()
			retry.Reset(backoff)
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-full.C:
			p.requestFull()
		case <-retry.C:
		}
		// Batch: whatever arrives before the minimum interval has passed joins this sync.
		if wait := time.Until(p.lastSync.Add(p.opts.MinSyncInterval)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	}
}

func (p *Proxier) syncOnce(ctx context.Context) error {
	p.mu.Lock()
	dirty, full := p.dirty, p.needFull
	p.dirty, p.needFull = map[types.NamespacedName]bool{}, false
	p.mu.Unlock()
	if !full && len(dirty) == 0 {
		return nil
	}
	start := time.Now()
	p.lastSync = start
	kind := "partial"
	if full {
		kind = "full"
	}
	err := p.sync(ctx, dirty, full)
	p.metrics.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if err != nil {
		p.metrics.errors.WithLabelValues(kind).Inc()
		return err
	}
	r, e := p.syncer.Counts()
	p.metrics.rules.Set(float64(r))
	p.metrics.elements.Set(float64(e))
	p.mu.Lock()
	p.healthyAt = time.Now()
	p.mu.Unlock()
	p.metrics.lastSync.SetToCurrentTime()
	klog.V(2).InfoS("proxy synced", "kind", kind, "services", len(dirty), "took", time.Since(start))
	return nil
}

func (p *Proxier) sync(ctx context.Context, dirty map[types.NamespacedName]bool, full bool) error {
	node := model.Node{Name: p.opts.NodeName}
	if n, err := p.nodes.Get(p.opts.NodeName); err == nil {
		node.Zone = n.Labels[corev1.LabelTopologyZone]
	}
	if node.Zone != p.zone {
		p.zone, full = node.Zone, true
	}

	if full {
		dirty = map[types.NamespacedName]bool{}
		for nn := range p.ports {
			dirty[nn] = true
		}
		svcs, err := p.services.List(labels.Everything())
		if err != nil {
			return err
		}
		for _, s := range svcs {
			dirty[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = true
		}
	}

	newPorts := map[types.NamespacedName]map[string]*model.ServicePort{}
	for nn := range dirty {
		newPorts[nn] = p.build(nn, node)
	}

	var res nftsync.Result
	var err error
	if full {
		desired := map[string]*rules.Service{}
		for _, ports := range p.mergedPorts(newPorts) {
			for key, sp := range ports {
				desired[key] = rules.Render(sp, p.opts.Rules)
			}
		}
		res, err = p.syncer.Full(ctx, desired)
	} else {
		changes := map[string]*rules.Service{}
		for nn, ports := range newPorts {
			for key := range p.ports[nn] {
				changes[key] = nil
			}
			for key, sp := range ports {
				changes[key] = rules.Render(sp, p.opts.Rules)
			}
		}
		res, err = p.syncer.Partial(ctx, changes)
	}
	if err != nil {
		return err
	}
	if res.Replaced != nil {
		klog.InfoS("replaced the nftables table: it could not be updated in place", "reason", res.Replaced.Error())
	}
	// Only the changed Services are touched: a partial sync must not cost as much as the
	// number of Services.
	old := make(map[types.NamespacedName]map[string]*model.ServicePort, len(newPorts))
	for nn := range newPorts {
		old[nn] = p.ports[nn]
	}
	if full {
		p.ports = p.mergedPorts(newPorts)
		p.health = map[types.NamespacedName]healthcheck.Service{}
	} else {
		for nn, ports := range newPorts {
			if len(ports) == 0 {
				delete(p.ports, nn)
			} else {
				p.ports[nn] = ports
			}
		}
	}
	p.reportConflicts(res.Conflicts)
	p.clearConntrack(ctx, old, newPorts)
	p.started = true
	p.syncHealth(newPorts)
	return nil
}

// mergedPorts returns the programmed ports with the changed Services replaced.
func (p *Proxier) mergedPorts(changed map[types.NamespacedName]map[string]*model.ServicePort) map[types.NamespacedName]map[string]*model.ServicePort {
	out := make(map[types.NamespacedName]map[string]*model.ServicePort, len(p.ports)+len(changed))
	for nn, ports := range p.ports {
		out[nn] = ports
	}
	for nn, ports := range changed {
		if len(ports) == 0 {
			delete(out, nn)
		} else {
			out[nn] = ports
		}
	}
	return out
}

// build computes a Service's ports from the caches, reporting invalid parts once.
func (p *Proxier) build(nn types.NamespacedName, node model.Node) map[string]*model.ServicePort {
	svc, err := p.services.Services(nn.Namespace).Get(nn.Name)
	if err != nil {
		delete(p.reported, nn)
		return nil
	}
	objs, err := p.slices.ByIndex(sliceIndex, nn.String())
	if err != nil {
		return nil
	}
	eps := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			eps = append(eps, s)
		}
	}
	ports, problems := model.Build(svc, eps, node)
	p.report(svc, problems)
	out := make(map[string]*model.ServicePort, len(ports))
	for i := range ports {
		out[ports[i].Key()] = &ports[i]
	}
	return out
}

// report logs and records an Event for each invalid part of a Service or its slices, once
// per distinct set of problems, so that resyncs do not repeat them.
func (p *Proxier) report(svc *corev1.Service, problems []model.Problem) {
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	if len(problems) == 0 {
		delete(p.reported, nn)
		return
	}
	var msgs []string
	for _, pr := range problems {
		msgs = append(msgs, pr.Error())
	}
	key := strings.Join(msgs, "\n")
	if p.reported[nn] == key {
		return
	}
	p.reported[nn] = key
	for _, pr := range problems {
		p.metrics.invalid.Inc()
		klog.InfoS("skipping invalid part of an object", "service", klog.KObj(svc), "problem", pr.Error())
		p.recorder.Event(pr.Object, corev1.EventTypeWarning, "ProxyInvalid", pr.Error())
	}
}

// reportConflicts logs, and records an Event on the Service, for each address and port it
// could not get because another Service holds it (externalIPs are not checked by the
// apiserver). A conflict is reported once per (re)appearance.
func (p *Proxier) reportConflicts(conflicts []nftsync.Conflict) {
	seen := map[string]bool{}
	for _, c := range conflicts {
		msg := c.String()
		nn, ok := serviceOf(c.Key)
		if !ok {
			continue
		}
		seen[nn.String()+" "+msg] = true
		if p.conflicts[nn.String()+" "+msg] {
			continue
		}
		klog.InfoS("skipping a Service address already used by another Service", "service", nn, "conflict", msg)
		if svc, err := p.services.Services(nn.Namespace).Get(nn.Name); err == nil {
			p.recorder.Event(svc, corev1.EventTypeWarning, "ProxyAddressConflict", msg)
		}
	}
	p.conflicts = seen
}

// serviceOf returns the Service of a ServicePort key ("4-namespace/name/protocol/port").
func serviceOf(key string) (types.NamespacedName, bool) {
	_, rest, ok := strings.Cut(key, "-")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: parts[0], Name: parts[1]}, true
}

// clearConntrack deletes UDP entries that still point at endpoints a Service no longer uses,
// and, when a Service gets its first endpoints, entries made while it had none (they would
// keep its clients' flows away from the new endpoints).
func (p *Proxier) clearConntrack(ctx context.Context, old, changed map[types.NamespacedName]map[string]*model.ServicePort) {
	del := func(nn types.NamespacedName, f conntrack.Flow) {
		if err := conntrack.Delete(ctx, f); err != nil {
			klog.ErrorS(err, "deleting stale UDP conntrack entries", "service", nn)
		}
	}
	for nn, ports := range changed {
		for key, now := range ports {
			if now.Protocol != corev1.ProtocolUDP || len(now.ClusterEndpoints) == 0 {
				continue
			}
			was := old[nn][key]
			// At start the previous state is unknown: clearing then would cut the live
			// flows the previous process programmed.
			if (was == nil && p.started) || (was != nil && len(was.ClusterEndpoints) == 0) {
				for _, vip := range serviceAddrs(now) {
					del(nn, conntrack.Flow{Dst: vip, DstPort: now.Port})
				}
			}
		}
		for key, was := range old[nn] {
			if was.Protocol != corev1.ProtocolUDP {
				continue
			}
			now := ports[key]
			keep := map[netip.Addr]bool{}
			if now != nil {
				for _, e := range append(append([]model.Endpoint{}, now.ClusterEndpoints...), now.LocalEndpoints...) {
					keep[e.Addr] = true
				}
			}
			gone := map[netip.Addr]bool{}
			for _, e := range append(append([]model.Endpoint{}, was.ClusterEndpoints...), was.LocalEndpoints...) {
				if !keep[e.Addr] {
					gone[e.Addr] = true
				}
			}
			for ep := range gone {
				for _, vip := range serviceAddrs(was) {
					del(nn, conntrack.Flow{Dst: vip, DstPort: was.Port, Endpoint: ep})
				}
				if was.NodePort != 0 {
					del(nn, conntrack.Flow{DstPort: was.NodePort, Endpoint: ep})
				}
			}
		}
	}
}

// serviceAddrs are the addresses a ServicePort is reached at (NodePorts aside).
func serviceAddrs(sp *model.ServicePort) []netip.Addr {
	return append(append(append([]netip.Addr{}, sp.ClusterIPs...), sp.ExternalIPs...), sp.LoadBalancerIPs...)
}

func (p *Proxier) syncHealth(changed map[types.NamespacedName]map[string]*model.ServicePort) {
	for nn, ports := range changed {
		delete(p.health, nn)
		for _, sp := range ports {
			if sp.HealthCheckNodePort == 0 {
				continue
			}
			w := p.health[nn]
			w.Port = sp.HealthCheckNodePort
			w.LocalEndpoints = max(w.LocalEndpoints, len(sp.LocalEndpoints))
			p.health[nn] = w
		}
	}
	if err := p.healthServer.Sync(p.health); err != nil {
		klog.ErrorS(err, "health check server")
	}
}
