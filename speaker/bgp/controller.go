package bgp

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/describe"
	"github.com/fairlead-lb/fairlead/speaker/announcements"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

var gvrPeers = v1alpha1.GroupVersion.WithResource("bgppeers")

// Options wire a Controller to the API.
type Options struct {
	Node   string
	Client kubernetes.Interface
	// Dynamic writes BGPPeer status.
	Dynamic dynamic.Interface
	// Announcements is the speaker's one ServiceAnnouncement writer, shared with layer 2.
	Announcements *announcements.Writer
	// Snapshots is the speaker's one view of the cluster (speaker/snapshot), shared with the
	// other components; the caller starts it.
	Snapshots *snapshot.Source
	// SecretNamespace is where passwordSecrets live by default (the speaker's own namespace).
	SecretNamespace string
	// ExtraSecretNamespaces are other namespaces a passwordSecret may name: granted by the
	// chart explicitly (speaker.bgpSecretNamespaces). Only these namespaces' Secrets are
	// watched; a reference to any other makes its BGPPeer Invalid.
	ExtraSecretNamespaces []string
	// extraSecretNamespaces is --bgp-extra-secret-namespaces as given (AddFlags): New adds
	// its comma-separated namespaces to ExtraSecretNamespaces.
	extraSecretNamespaces string
	// Members returns the speakers' failure detector (joined): with it, the lowest-named live
	// speaker removes dead speakers' BGP entries from ServiceAnnouncements (reaper.go). Nil:
	// nobody does.
	Members func(context.Context) (Members, error)
	Metrics prometheus.Registerer
	Log     logr.Logger
}

// What the BGP part of the speaker reads, and what it writes besides Events: each node's
// entry in a BGPPeer's status (server-side apply on the status subresource), and each node's
// BGP entries in ServiceAnnouncements (announcements.go). Secrets
// holding session passwords are read only in the speaker's own namespace; the chart grants
// that with a namespaced Role, so there is no cluster-wide marker for them. Events are
// created, and patched when the recorder aggregates a repeated one.
//
// +kubebuilder:rbac:groups=fairlead.dev,resources=bgppeers;bgpadvertisements;ippools,verbs=list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=bgppeers/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Controller feeds the API's state to the session Manager and publishes what the sessions do.
type Controller struct {
	o       Options
	log     logr.Logger
	mgr     *Manager
	secrets []informers.SharedInformerFactory
	rec     record.EventRecorder
	bcast   record.EventBroadcaster

	snapChanges <-chan struct{}                      // from Snapshots
	secretInf   map[string]cache.SharedIndexInformer // by namespace

	syncCh     chan struct{}
	statusCh   chan struct{}
	announceCh chan struct{}
	reported   map[types.NamespacedName]string // ServiceAnnouncements listing this node: what was written (announceLoop's)

	mu       sync.Mutex
	desired  map[string]*Session // last desired state, for status
	problems map[Problem]bool    // reported already: one Event per distinct problem

	published map[string]v1alpha1.BGPSessionStatus // last status applied per peer

	up       *prometheus.GaugeVec
	prefixes *prometheus.GaugeVec
	changes  *prometheus.CounterVec
}

// New registers the informers the controller needs; call before the factories start.
func New(o Options) (*Controller, error) {
	if o.Node == "" {
		return nil, fmt.Errorf("node name is required")
	}
	if o.Snapshots == nil || o.Announcements == nil {
		return nil, fmt.Errorf("a snapshot source and a ServiceAnnouncement writer are required")
	}
	o.ExtraSecretNamespaces = slices.Concat(o.ExtraSecretNamespaces, splitList(o.extraSecretNamespaces))
	c := &Controller{
		o: o, log: o.Log,
		syncCh:     make(chan struct{}, 1),
		statusCh:   make(chan struct{}, 1),
		announceCh: make(chan struct{}, 1),
		reported:   map[types.NamespacedName]string{},
		problems:   map[Problem]bool{},
		published:  map[string]v1alpha1.BGPSessionStatus{},
	}
	c.mgr = NewManager(o.Log, func() { kick(c.statusCh); kick(c.announceCh) })
	c.secretInf = map[string]cache.SharedIndexInformer{}
	for _, ns := range append([]string{o.SecretNamespace}, o.ExtraSecretNamespaces...) {
		if _, dup := c.secretInf[ns]; dup || ns == "" {
			continue
		}
		f := informers.NewSharedInformerFactoryWithOptions(o.Client, 0, informers.WithNamespace(ns))
		c.secrets = append(c.secrets, f)
		c.secretInf[ns] = f.Core().V1().Secrets().Informer()
	}

	c.snapChanges = o.Snapshots.Changes()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick(c.syncCh) },
		UpdateFunc: func(any, any) { kick(c.syncCh) },
		DeleteFunc: func(any) { kick(c.syncCh) },
	}
	for _, inf := range c.secretInf {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, err
		}
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c.bcast = record.NewBroadcaster()
	c.rec = c.bcast.NewRecorder(scheme, corev1.EventSource{Component: "fairlead-speaker", Host: o.Node})

	c.up = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fairlead_bgp_session_up", Help: "1 when the BGP session to the peer is established.",
	}, []string{"peer"})
	c.prefixes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fairlead_bgp_prefixes_advertised", Help: "Prefixes advertised on the BGP session to the peer.",
	}, []string{"peer"})
	c.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fairlead_bgp_session_transitions_total", Help: "Changes of the BGP session's state, by new state.",
	}, []string{"peer", "state"})
	if o.Metrics != nil {
		for _, m := range []prometheus.Collector{c.up, c.prefixes, c.changes, bfdCollector{c.mgr}} {
			if err := o.Metrics.Register(m); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run converges until ctx ends, then withdraws everything at once: every session is closed
// with a Cease NOTIFICATION, so routers drop this node's next hops without waiting for the
// hold time.
func (c *Controller) Run(ctx context.Context) error {
	c.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.o.Client.CoreV1().Events("")})
	defer c.bcast.Shutdown()
	var synced []cache.InformerSynced
	for _, f := range c.secrets {
		f.Start(ctx.Done())
	}
	for _, inf := range c.secretInf {
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) || !c.o.Snapshots.WaitForCacheSync(ctx) {
		return nil // stopped before the caches filled: nothing was announced yet
	}
	var wg sync.WaitGroup
	statusCtx, stopStatus := context.WithCancel(context.Background())
	wg.Go(func() { c.statusLoop(statusCtx) })
	announceCtx, stopAnnounce := context.WithCancel(context.Background())
	var announceWG sync.WaitGroup
	announceWG.Go(func() { c.announceLoop(announceCtx) })
	announceWG.Go(func() { c.reapLoop(announceCtx) })

	kick(c.syncCh)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	backoff := time.Second
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-c.syncCh:
		case <-c.snapChanges:
		case <-retry.C:
		}
		if err := c.sync(ctx); err != nil {
			c.log.Error(err, "BGP sync failed, retrying", "after", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
	}

	c.mgr.Shutdown()
	c.log.Info("BGP sessions closed")
	stopAnnounce()
	announceWG.Wait()
	actx, cancelAnnounce := context.WithTimeout(context.Background(), 5*time.Second)
	c.withdrawAnnouncements(actx)
	cancelAnnounce()
	stopStatus()
	wg.Wait()
	// Say so in the status, briefly: the process is going away.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.mu.Lock()
	c.desired = nil
	c.mu.Unlock()
	c.publish(sctx)
	return nil
}

// sync computes the desired state from the informers' caches and applies it.
func (c *Controller) sync(ctx context.Context) error {
	in, err := c.snapshot()
	if err != nil {
		return err
	}
	desired, problems := Desired(in)
	c.mu.Lock()
	c.desired = desired
	fresh := map[Problem]bool{}
	for _, p := range problems {
		fresh[p] = true
		if !c.problems[p] {
			c.report(p)
		}
	}
	c.problems = fresh
	c.mu.Unlock()
	err = c.mgr.Apply(ctx, desired)
	kick(c.statusCh)
	kick(c.announceCh)
	return err
}

func (c *Controller) report(p Problem) {
	c.log.Info("invalid BGP configuration", "kind", p.Kind, "name", p.Name, "reason", p.Reason, "message", p.Message)
	// The controller reports invalid BGPAdvertisements (Accepted=False and one Event); N
	// speakers filing the same Event would only bury it.
	if p.Kind == "BGPAdvertisement" {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: p.Kind, Name: p.Name}
	c.rec.Event(ref, corev1.EventTypeWarning, p.Reason, p.Message)
}

func (c *Controller) snapshot() (Input, error) {
	snap := c.o.Snapshots.Snapshot()
	in := Input{Password: c.password, HasDevice: hasDevice}
	n, ok := snap.NodeObjects[c.o.Node]
	if !ok {
		// Not registered yet (or deleted): advertise nothing until it is.
		in.Node = Node{Node: election.Node{Name: c.o.Node}}
		return in, nil
	}
	in.Node = nodeOf(n)
	if !in.Node.Ready {
		// The node is not Ready: it still opens its sessions (they say whether the router
		// is reachable), but election keeps it from advertising.
		c.log.V(1).Info("node not ready, advertising nothing", "node", c.o.Node)
	}
	in.Peers, in.Advertisements, in.BFDProfiles, in.Communities = snap.BGPPeers, snap.BGPAdvertisements, snap.BFDProfiles, snap.Communities
	for _, p := range snap.PoolObjects {
		in.Pools = append(in.Pools, p)
	}
	in.Services = ServicesOf(snap)
	return in, nil
}

func (c *Controller) password(ref v1alpha1.SecretKeyRef) (string, error) {
	ns := cmp.Or(ref.Namespace, c.o.SecretNamespace)
	inf, ok := c.secretInf[ns]
	if !ok {
		return "", fmt.Errorf("Secret %s/%s: the speakers may not read Secrets in namespace %s (grant it with the chart value speaker.bgpSecretNamespaces)", ns, ref.Name, ns)
	}
	obj, ok, err := inf.GetStore().GetByKey(ns + "/" + ref.Name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("Secret %s/%s not found", ns, ref.Name)
	}
	v, ok := obj.(*corev1.Secret).Data[keyOf(ref)]
	if !ok {
		return "", fmt.Errorf("Secret %s/%s has no key %q", ns, ref.Name, keyOf(ref))
	}
	return string(v), nil
}

// hasDevice reports whether this node (the speaker's network namespace) has the device.
func hasDevice(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func nodeOf(n *corev1.Node) Node {
	// The same reading as layer 2's, so the two cannot disagree on a node.
	out := Node{Node: election.Node{Name: n.Name, Labels: n.Labels, Ready: describe.NodeReady(n)}}
	// InternalIP first: it is the address the node is reached at inside the site.
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if a.Type != t || err != nil {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() && !out.IPv4.IsValid() {
				out.IPv4 = ip
			} else if ip.Is6() && !out.IPv6.IsValid() {
				out.IPv6 = ip
			}
		}
	}
	return out
}

// statusLoop publishes session state (BGPPeer status, Events, metrics) when it changes,
// at most a few times a second.
func (c *Controller) statusLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.statusCh:
		}
		c.publish(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// publish writes this node's entry of every BGPPeer's status with server-side apply: each
// speaker owns its own entry of the list (keyed by node), so speakers never conflict.
func (c *Controller) publish(ctx context.Context) {
	running := c.mgr.Status()
	c.mu.Lock()
	want := map[string]v1alpha1.BGPSessionStatus{}
	for name, d := range c.desired {
		e := v1alpha1.BGPSessionStatus{Node: c.o.Node}
		switch st, ok := running[name]; {
		case d.Invalid != "":
			e.State, e.LastError = StateInvalid, d.Invalid
		case ok:
			e.State, e.LastError, e.PrefixesSent = st.State, st.LastError, int32(st.PrefixesSent)
			t := metav1.NewTime(st.Since.Truncate(time.Second))
			e.LastTransitionTime = &t
		default:
			e.State = "Idle"
		}
		want[name] = e
	}
	c.mu.Unlock()

	names := map[string]bool{}
	for n := range want {
		names[n] = true
	}
	for n := range c.published {
		names[n] = true
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		e, ok := want[name]
		old, had := c.published[name]
		if ok == had && equalStatus(e, old) {
			continue
		}
		if err := c.apply(ctx, name, e, ok); err != nil {
			if !apierrors.IsNotFound(err) {
				c.log.Error(err, "writing BGPPeer status", "peer", name)
				kick(c.statusCh) // try again on the next round
				continue
			}
		}
		c.transition(name, old, had, e, ok)
		if ok {
			c.published[name] = e
		} else {
			delete(c.published, name)
		}
	}
}

func equalStatus(a, b v1alpha1.BGPSessionStatus) bool {
	return a.State == b.State && a.LastError == b.LastError && a.PrefixesSent == b.PrefixesSent
}

// transition records Events and metrics for a change of one session's published state.
func (c *Controller) transition(name string, old v1alpha1.BGPSessionStatus, had bool, e v1alpha1.BGPSessionStatus, ok bool) {
	if !ok {
		c.up.DeleteLabelValues(name)
		c.prefixes.DeleteLabelValues(name)
		return
	}
	up := 0.0
	if e.State == StateEstablished {
		up = 1
	}
	c.up.WithLabelValues(name).Set(up)
	c.prefixes.WithLabelValues(name).Set(float64(e.PrefixesSent))
	if had && old.State == e.State && old.LastError == e.LastError {
		return
	}
	if !had || old.State != e.State {
		c.changes.WithLabelValues(name, e.State).Inc()
	}
	ref := &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "BGPPeer", Name: name}
	switch {
	case e.State == StateEstablished && (!had || old.State != StateEstablished):
		c.rec.Eventf(ref, corev1.EventTypeNormal, "SessionEstablished", "node %s: BGP session established", c.o.Node)
	case had && old.State == StateEstablished && e.State != StateEstablished:
		c.rec.Eventf(ref, corev1.EventTypeWarning, "SessionDown", "node %s: BGP session down: %s", c.o.Node, orUnknown(e.LastError))
	case e.LastError != "" && e.LastError != old.LastError && e.State != StateInvalid:
		// (Invalid configuration has its own InvalidConfig Event.)
		c.rec.Eventf(ref, corev1.EventTypeWarning, "SessionFailed", "node %s: %s", c.o.Node, e.LastError)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

func (c *Controller) apply(ctx context.Context, peer string, e v1alpha1.BGPSessionStatus, present bool) error {
	nodes := []v1alpha1.BGPSessionStatus{}
	if present {
		nodes = append(nodes, e)
	}
	body := map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "BGPPeer",
		"metadata":   map[string]any{"name": peer},
		"status":     map[string]any{"nodes": nodes},
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = c.o.Dynamic.Resource(gvrPeers).Patch(ctx, peer, types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager: "fairlead-speaker/" + c.o.Node, Force: ptrTrue(),
	}, "status")
	return err
}

func ptrTrue() *bool { t := true; return &t }
