package soak

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/fairlead-lb/fairlead/test/lab"
)

// readinessWatcher records, as the apiserver reports them, every change of a Node's Ready
// condition and of the ready endpoints of the demo namespace's Services: the cluster itself
// (kube-controller-manager's node lifecycle, the kubelets) can take endpoints away under
// the proxy and the announcers, and a lost connection is only explained next to that.
type readinessWatcher struct {
	mu     sync.Mutex
	events []Event
	nodes  map[string]string   // node → "Ready status (reason)"
	slices map[string][]string // slice → its endpoints that are not ready
}

func (w *readinessWatcher) record(what string) {
	w.events = append(w.events, Event{At: time.Now(), What: what})
}

// start watches until ctx ends; what it saw before the informers synced is the baseline,
// not a change.
func (w *readinessWatcher) start(ctx context.Context, cs kubernetes.Interface) {
	w.nodes, w.slices = map[string]string{}, map[string][]string{}
	all := informers.NewSharedInformerFactory(cs, 0)
	demo := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(lab.DemoNamespace))
	nodes := all.Core().V1().Nodes().Informer()
	eps := demo.Discovery().V1().EndpointSlices().Informer()
	_, _ = nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { w.node(o.(*corev1.Node)) }, UpdateFunc: func(_, o any) { w.node(o.(*corev1.Node)) },
	})
	_, _ = eps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { w.slice(o.(*discoveryv1.EndpointSlice)) }, UpdateFunc: func(_, o any) { w.slice(o.(*discoveryv1.EndpointSlice)) },
	})
	all.Start(ctx.Done())
	demo.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), nodes.HasSynced, eps.HasSynced)
	w.mu.Lock()
	w.events = nil
	w.mu.Unlock()
}

func (w *readinessWatcher) node(n *corev1.Node) {
	state := "no Ready condition"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			state = fmt.Sprintf("Ready=%s (%s)", c.Status, c.Reason)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.nodes[n.Name]; ok && old != state {
		w.record(fmt.Sprintf("node %s: %s → %s", n.Name, old, state))
	}
	w.nodes[n.Name] = state
}

func (w *readinessWatcher) slice(s *discoveryv1.EndpointSlice) {
	var notReady []string
	for _, e := range s.Endpoints {
		if e.Conditions.Ready == nil || !*e.Conditions.Ready {
			name := strings.Join(e.Addresses, ",")
			if e.TargetRef != nil {
				name = e.TargetRef.Name
			}
			notReady = append(notReady, name)
		}
	}
	slices.Sort(notReady)
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.slices[s.Name]; ok && !slices.Equal(old, notReady) {
		w.record(fmt.Sprintf("EndpointSlice %s/%s (%d endpoints): not ready %v → %v", s.Namespace, s.Name, len(s.Endpoints), old, notReady))
	}
	w.slices[s.Name] = notReady
}

func (w *readinessWatcher) snapshot() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}
