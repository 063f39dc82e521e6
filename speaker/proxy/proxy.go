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
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
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
// +kubebuilder:rbac:groups=networking.k8s.io,resources=servicecidrs,verbs=get;list;watch

// TableName is the nftables table (family inet) the proxy owns.
const TableName = "fairlead"

// LabelServiceProxyName on a Service hands it to another proxy: like kube-proxy, this proxy
// leaves such Services alone, whatever the value.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// ProxierOptions configure a Proxier.
type ProxierOptions struct {
	NodeName string
	// Rules is the static part of the rules' configuration. The service CIDRs of the
	// cluster's ServiceCIDR objects are added to Rules.ServiceCIDRs.
	Rules rules.Config
	// NodePortsPrimary limits NodePorts to the node's primary addresses (its Node's first
	// InternalIP of each family, else ExternalIP), as kube-proxy's --nodeport-addresses
	// primary; Rules.NodePortCIDRs is then ignored. Until the Node has an address NodePorts
	// answer on every node address.
	NodePortsPrimary bool
	// PodCIDRsFromNode takes the pods' networks (Rules.ClusterCIDRs) from the Node's
	// spec.podCIDRs: kube-proxy's --detect-local-mode NodeCIDR.
	PodCIDRsFromNode bool
	// MinSyncInterval is the least time between two syncs: changes arriving meanwhile are
	// batched into the next one.
	MinSyncInterval time.Duration
	// SyncPeriod is how often a full sync rewrites everything (repairing drift).
	SyncPeriod time.Duration
	// HealthTimeout: the proxy is unhealthy while a change has waited this long without a
	// successful sync (kube-proxy's rule; its default is twice its 30 s sync period).
	HealthTimeout time.Duration
}

// TaintToBeDeleted is the cluster autoscaler's taint on a node it is about to remove: as
// kube-proxy (KEP-3836), /healthz then fails so that load balancers drain the node first.
const TaintToBeDeleted = "ToBeDeletedByClusterAutoscaler"

// Proxier keeps the node's nftables table in line with the cluster's Services.
type Proxier struct {
	opts         ProxierOptions
	nft          knftables.Interface
	syncer       *nftsync.Syncer
	nodeFactory  informers.SharedInformerFactory
	services     corelisters.ServiceLister
	slices       cache.Indexer // EndpointSlices, indexed by Service
	nodes        corelisters.NodeLister
	serviceCIDRs networkinglisters.ServiceCIDRLister // nil when the API has no ServiceCIDRs
	synced       []cache.InformerSynced
	healthServer *healthcheck.Server
	recorder     record.EventRecorder
	bcast        record.EventBroadcaster
	metrics      *metrics

	mu       sync.Mutex
	dirty    map[types.NamespacedName]bool
	needFull bool
	kick     chan struct{}
	// fams are the families for kube-proxy's ip_family label, from the last config.
	fams atomic.Pointer[[]string]
	// pendingSince is when the oldest change not yet synced arrived (zero: none).
	pendingSince time.Time
	// triggers are the EndpointSlices' last-change-trigger-times not yet synced, for
	// kubeproxy_network_programming_duration_seconds.
	triggers []time.Time

	// Only the sync loop touches what follows.
	zone      string
	ports     map[types.NamespacedName]map[string]*model.ServicePort
	reported  map[types.NamespacedName]string
	conflicts map[string]bool
	health    map[types.NamespacedName]healthcheck.Service // what the health check server serves
	// noLocal counts ServicePorts with a Local policy and no local endpoint, by family and
	// policy, and noLocalBy each Service's share, so a partial sync recounts only its own.
	noLocal   map[[2]string]int
	noLocalBy map[types.NamespacedName]map[[2]string]int
	started   bool // a sync succeeded: ports holds what is programmed
	lastSync  time.Time
	healthyAt time.Time
}

// NewProxier wires a Proxier to the informer factory (which the caller starts) and the registry.
func NewProxier(client kubernetes.Interface, factory informers.SharedInformerFactory, reg prometheus.Registerer,
	nft knftables.Interface, opts ProxierOptions) (*Proxier, error) {
	if opts.NodeName == "" {
		return nil, fmt.Errorf("node name is required")
	}
	if opts.MinSyncInterval <= 0 {
		opts.MinSyncInterval = time.Second
	}
	if opts.SyncPeriod <= 0 {
		opts.SyncPeriod = time.Hour
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = time.Minute
	}
	p := &Proxier{
		opts: opts, nft: nft, syncer: nftsync.New(nft, TableName, opts.Rules),
		health: map[types.NamespacedName]healthcheck.Service{},
		dirty:  map[types.NamespacedName]bool{}, needFull: true, kick: make(chan struct{}, 1),
		ports: map[types.NamespacedName]map[string]*model.ServicePort{}, reported: map[types.NamespacedName]string{},
		noLocal: map[[2]string]int{}, noLocalBy: map[types.NamespacedName]map[[2]string]int{},
	}
	p.healthServer = healthcheck.New(func() bool { ok, _ := p.Healthy(); return ok })
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	p.metrics = m

	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	// ServiceCIDR objects (Kubernetes 1.33 and later) say which ranges ClusterIPs come from;
	// older clusters have none, and the ranges can only be given by flag.
	served, err := servesResource(client, "networking.k8s.io/v1", "servicecidrs")
	if err != nil {
		return nil, err
	}
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
			p.metrics.kpServiceChanges.Inc()
			p.metrics.kpServicePending.Inc()
			p.markDirty(types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
		}
	}
	onSlice := func(obj any) {
		if s, ok := unwrap[*discoveryv1.EndpointSlice](obj); ok {
			if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
				p.metrics.kpEndpointChanges.Inc()
				p.metrics.kpEndpointPending.Inc()
				if t, err := time.Parse(time.RFC3339Nano, s.Annotations[corev1.EndpointsLastChangeTriggerTime]); err == nil {
					p.mu.Lock()
					p.triggers = append(p.triggers, t)
					p.mu.Unlock()
				}
				p.markDirty(types.NamespacedName{Namespace: s.Namespace, Name: name})
			}
		}
	}
	// The zone decides topology for every Service, and the addresses and pod CIDRs the base
	// rules: a change means a full sync. Nothing else of the Node matters to the rules, and
	// its status changes often.
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.requestFull() },
		UpdateFunc: func(o, n any) {
			on, ok1 := o.(*corev1.Node)
			nn, ok2 := n.(*corev1.Node)
			if ok1 && ok2 && (!p.nodeConfig(on).Equal(p.nodeConfig(nn)) || on.Labels[corev1.LabelTopologyZone] != nn.Labels[corev1.LabelTopologyZone]) {
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
	if served {
		inf := factory.Networking().V1().ServiceCIDRs()
		p.serviceCIDRs = inf.Lister()
		reg, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { p.requestFull() },
			UpdateFunc: func(any, any) { p.requestFull() },
			DeleteFunc: func(any) { p.requestFull() },
		})
		if err != nil {
			return nil, err
		}
		p.synced = append(p.synced, inf.Informer().HasSynced, reg.HasSynced)
	}
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

// servesResource reports whether the API serves resource in groupVersion.
func servesResource(client kubernetes.Interface, groupVersion, resource string) (bool, error) {
	list, err := client.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", groupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}

// nodeConfig is the part of the rules' configuration that comes from the Node.
func (p *Proxier) nodeConfig(n *corev1.Node) rules.Config {
	var cfg rules.Config
	if p.opts.NodePortsPrimary {
		for _, a := range PrimaryIPs(n) {
			cfg.NodePortCIDRs = append(cfg.NodePortCIDRs, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if p.opts.PodCIDRsFromNode && n != nil {
		cfg.ClusterCIDRs = []netip.Prefix{}
		for _, c := range n.Spec.PodCIDRs {
			if pr, err := netip.ParsePrefix(c); err == nil {
				cfg.ClusterCIDRs = append(cfg.ClusterCIDRs, pr.Masked())
			}
		}
	}
	return cfg
}

// PrimaryIPs returns the node's primary address of each family, as kubelet and kube-proxy
// pick them: the first InternalIP, else the first ExternalIP.
func PrimaryIPs(n *corev1.Node) []netip.Addr {
	if n == nil {
		return nil
	}
	var out []netip.Addr
	seen := map[model.Family]bool{}
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if a.Type != t || err != nil || seen[model.FamilyOf(ip.Unmap())] {
				continue
			}
			seen[model.FamilyOf(ip.Unmap())] = true
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// config is the rules' configuration now: the options, what the Node says, and the
// ServiceCIDR objects' ranges.
func (p *Proxier) config(n *corev1.Node) rules.Config {
	cfg := p.opts.Rules
	nc := p.nodeConfig(n)
	if nc.NodePortCIDRs != nil {
		cfg.NodePortCIDRs = nc.NodePortCIDRs
	}
	if nc.ClusterCIDRs != nil {
		cfg.ClusterCIDRs = nc.ClusterCIDRs
	}
	cfg.ServiceCIDRs = slices.Clone(cfg.ServiceCIDRs)
	if p.serviceCIDRs != nil {
		objs, _ := p.serviceCIDRs.List(labels.Everything())
		for _, o := range objs {
			for _, c := range o.Spec.CIDRs {
				if pr, err := netip.ParsePrefix(c); err == nil {
					cfg.ServiceCIDRs = append(cfg.ServiceCIDRs, pr.Masked())
				}
			}
		}
	}
	// Sorted, so that the same ranges compare equal whatever the listing order.
	slices.SortFunc(cfg.ServiceCIDRs, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	cfg.ServiceCIDRs = slices.Compact(cfg.ServiceCIDRs)
	return cfg
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
	p.queued()
	p.mu.Unlock()
	p.poke()
}

func (p *Proxier) requestFull() {
	p.mu.Lock()
	p.needFull = true
	p.queued()
	p.mu.Unlock()
	p.poke()
}

// queued notes that a change waits for a sync. p.mu is held.
func (p *Proxier) queued() {
	now := time.Now()
	if p.pendingSince.IsZero() {
		p.pendingSince = now
	}
	for _, f := range p.families() {
		p.metrics.kpLastQueued.WithLabelValues(f).Set(float64(now.UnixNano()) / 1e9)
	}
}

// families are the IP families kube-proxy would run a proxier for, as kube-proxy's
// ip_family label values: those of the service CIDRs, both when none is known.
func (p *Proxier) families() []string {
	if f := p.fams.Load(); f != nil {
		return *f
	}
	return []string{"IPv4", "IPv6"}
}

func familiesOf(cfg rules.Config) []string {
	var v4, v6 bool
	for _, c := range cfg.ServiceCIDRs {
		v4, v6 = v4 || c.Addr().Is4(), v6 || c.Addr().Is6()
	}
	switch {
	case v4 && !v6:
		return []string{"IPv4"}
	case v6 && !v4:
		return []string{"IPv6"}
	}
	return []string{"IPv4", "IPv6"}
}

func (p *Proxier) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Healthy reports whether the rules are current, as kube-proxy's healthz does: a sync has
// succeeded, and no change has waited HealthTimeout or longer for the next one. It also
// returns the time of the last successful sync.
func (p *Proxier) Healthy() (bool, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := p.healthyAt
	stale := !p.pendingSince.IsZero() && time.Since(p.pendingSince) >= p.opts.HealthTimeout
	return !at.IsZero() && !stale, at
}

// NodeEligible reports whether load balancers should keep sending this node traffic: not
// when its Node is being deleted or carries the cluster autoscaler's to-be-deleted taint.
func (p *Proxier) NodeEligible() bool {
	n, err := p.nodes.Get(p.opts.NodeName)
	if err != nil {
		return true // unknown: nothing says the node is going
	}
	if n.DeletionTimestamp != nil {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == TaintToBeDeleted {
			return false
		}
	}
	return true
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
	dirty, full, since, triggers := p.dirty, p.needFull, p.pendingSince, p.triggers
	p.dirty, p.needFull, p.pendingSince, p.triggers = map[types.NamespacedName]bool{}, false, time.Time{}, nil
	p.mu.Unlock()
	p.metrics.kpServicePending.Set(0)
	p.metrics.kpEndpointPending.Set(0)
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
	took := time.Since(start).Seconds()
	p.metrics.duration.WithLabelValues(kind).Observe(took)
	fams := p.families()
	if err != nil {
		p.metrics.errors.WithLabelValues(kind).Inc()
		for _, f := range fams {
			p.metrics.kpFailures.WithLabelValues(f).Inc()
		}
		// The changes still wait (the caller asks for a full sync), since they first came.
		p.mu.Lock()
		if p.pendingSince.IsZero() || since.Before(p.pendingSince) {
			p.pendingSince = since
		}
		p.triggers = append(p.triggers, triggers...)
		p.mu.Unlock()
		return err
	}
	now := time.Now()
	for _, f := range fams {
		p.metrics.kpDuration.WithLabelValues(f).Observe(took)
		if full {
			p.metrics.kpFull.WithLabelValues(f).Observe(took)
		} else {
			p.metrics.kpPartial.WithLabelValues(f).Observe(took)
		}
		p.metrics.kpLast.WithLabelValues(f).Set(float64(now.UnixNano()) / 1e9)
		for _, t := range triggers {
			if d := now.Sub(t); d >= 0 {
				p.metrics.kpProgramming.WithLabelValues(f).Observe(d.Seconds())
			}
		}
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
	n, err := p.nodes.Get(p.opts.NodeName)
	if err == nil {
		node.Zone = n.Labels[corev1.LabelTopologyZone]
	} else {
		n = nil
	}
	if node.Zone != p.zone {
		p.zone, full = node.Zone, true
	}
	cfg := p.config(n)
	if !cfg.Equal(p.syncer.Config()) {
		p.syncer.SetConfig(cfg)
		fams := familiesOf(cfg)
		p.fams.Store(&fams)
		full = true
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
	if full {
		desired := map[string]*rules.Service{}
		for _, ports := range p.mergedPorts(newPorts) {
			for key, sp := range ports {
				desired[key] = rules.Render(sp, cfg)
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
				changes[key] = rules.Render(sp, cfg)
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
	p.countNoLocal(newPorts, full)
	p.reportConflicts(res.Conflicts)
	p.clearConntrack(ctx, old, newPorts)
	p.started = true
	p.syncHealth(newPorts, n)
	return nil
}

// countNoLocal updates kubeproxy_sync_proxy_rules_no_local_endpoints_total for the changed
// Services (all of them in a full sync).
func (p *Proxier) countNoLocal(changed map[types.NamespacedName]map[string]*model.ServicePort, full bool) {
	if full {
		for k := range p.noLocal {
			p.noLocal[k] = 0
		}
		clear(p.noLocalBy)
	}
	for nn, ports := range changed {
		for k, v := range p.noLocalBy[nn] {
			p.noLocal[k] -= v
		}
		delete(p.noLocalBy, nn)
		for _, sp := range ports {
			if len(sp.LocalEndpoints) > 0 {
				continue
			}
			fam := fmt.Sprintf("IPv%d", sp.Family)
			for policy, local := range map[string]bool{"internal": sp.InternalLocal, "external": sp.ExternalLocal} {
				if !local {
					continue
				}
				k := [2]string{fam, policy}
				if p.noLocalBy[nn] == nil {
					p.noLocalBy[nn] = map[[2]string]int{}
				}
				p.noLocalBy[nn][k]++
				p.noLocal[k]++
			}
		}
	}
	for k, v := range p.noLocal {
		p.metrics.kpNoLocal.WithLabelValues(k[0], k[1]).Set(float64(v))
	}
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
	if err == nil {
		if _, other := svc.Labels[LabelServiceProxyName]; other {
			err = fmt.Errorf("service %s is for another proxy", nn)
		}
	}
	if err != nil {
		// kube-proxy filters these out in its informers (which ours are not: the speaker's
		// other components share them), so to it they look deleted; so they must here.
		delete(p.reported, nn)
		return nil
	}
	objs, err := p.slices.ByIndex(sliceIndex, nn.String())
	if err != nil {
		return nil
	}
	eps := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if _, headless := s.Labels[corev1.IsHeadlessService]; ok && !headless {
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
		// The Event is read by the Service's namespace: it must not name another tenant's
		// Service (the log line, for the cluster's operators, does).
		note := msg
		if owner, ok := serviceOf(c.Owner); !ok || owner.Namespace != nn.Namespace {
			note = c.Element + " is already used by a Service in another namespace"
		}
		if svc, err := p.services.Services(nn.Namespace).Get(nn.Name); err == nil {
			p.recorder.Event(svc, corev1.EventTypeWarning, "ProxyAddressConflict", note)
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
			// An endpoint is its address and port: when a Service's targetPort changes, the
			// flows DNATed to the old port are stale although the Pod is the same.
			keep := map[netip.AddrPort]bool{}
			if now != nil {
				for _, e := range append(append([]model.Endpoint{}, now.ClusterEndpoints...), now.LocalEndpoints...) {
					keep[netip.AddrPortFrom(e.Addr, e.Port)] = true
				}
			}
			gone := map[netip.AddrPort]bool{}
			for _, e := range append(append([]model.Endpoint{}, was.ClusterEndpoints...), was.LocalEndpoints...) {
				if ep := netip.AddrPortFrom(e.Addr, e.Port); !keep[ep] {
					gone[ep] = true
				}
			}
			for ep := range gone {
				for _, vip := range serviceAddrs(was) {
					del(nn, conntrack.Flow{Dst: vip, DstPort: was.Port, Endpoint: ep.Addr(), EndpointPort: ep.Port()})
				}
				if was.NodePort != 0 {
					del(nn, conntrack.Flow{DstPort: was.NodePort, Endpoint: ep.Addr(), EndpointPort: ep.Port()})
				}
			}
		}
	}
}

// serviceAddrs are the addresses a ServicePort is reached at (NodePorts aside).
func serviceAddrs(sp *model.ServicePort) []netip.Addr {
	return append(append(append([]netip.Addr{}, sp.ClusterIPs...), sp.ExternalIPs...), sp.LoadBalancerIPs...)
}

// healthAddrs are the addresses the health check ports listen on: the node's NodePort
// addresses, as kube-proxy's; nil for all.
func (p *Proxier) healthAddrs(n *corev1.Node) []netip.Addr {
	cfg := p.syncer.Config()
	if p.opts.NodePortsPrimary {
		return PrimaryIPs(n)
	}
	if len(cfg.NodePortCIDRs) == 0 || slices.ContainsFunc(cfg.NodePortCIDRs, func(c netip.Prefix) bool { return c.Bits() == 0 }) {
		return nil
	}
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		klog.ErrorS(err, "listing the node's addresses for the health check ports")
		return nil
	}
	var out []netip.Addr
	for _, ia := range ifAddrs {
		ipn, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || a.Unmap().IsLinkLocalUnicast() {
			continue
		}
		a = a.Unmap()
		if slices.ContainsFunc(cfg.NodePortCIDRs, func(c netip.Prefix) bool { return c.Contains(a) }) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	if len(out) == 0 {
		// Nothing to bind to means no health check: say so rather than fall back to all.
		klog.InfoS("no node address inside --nodeport-addresses: health check ports stay closed", "cidrs", cfg.NodePortCIDRs)
		return []netip.Addr{}
	}
	return out
}

func (p *Proxier) syncHealth(changed map[types.NamespacedName]map[string]*model.ServicePort, n *corev1.Node) {
	for nn, ports := range changed {
		delete(p.health, nn)
		for _, sp := range ports {
			if sp.HealthCheckNodePort == 0 {
				continue
			}
			w := p.health[nn]
			w.Port = sp.HealthCheckNodePort
			w.LocalEndpoints = max(w.LocalEndpoints, sp.LocalReady)
			p.health[nn] = w
		}
	}
	var addrs []netip.Addr
	if len(p.health) > 0 {
		addrs = p.healthAddrs(n)
	}
	if err := p.healthServer.Sync(p.health, addrs); err != nil {
		klog.ErrorS(err, "health check server")
	}
}
