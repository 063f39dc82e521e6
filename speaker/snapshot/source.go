package snapshot

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// What every snapshot is built from.
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools;l2advertisements;bgppeers;bgpadvertisements;bfdprofiles;communities,verbs=list;watch

// SourceOptions wire a Source to the API.
type SourceOptions struct {
	// Informers is the speaker's shared factory: Services, EndpointSlices and Nodes are
	// watched once for every component (the proxy reads them too). The caller starts it.
	Informers informers.SharedInformerFactory
	// Dynamic reads Fairlead's own objects.
	Dynamic dynamic.Interface
	// DefaultClass: Services without spec.loadBalancerClass are Fairlead's.
	DefaultClass bool
}

// Source keeps the current Snapshot of one set of informers: it rebuilds it once after any
// change, when asked, and tells its subscribers that something changed. Every component of a
// speaker reads the same Source, so they see the same Snapshot.
type Source struct {
	o        SourceOptions
	dyn      dynamicinformer.DynamicSharedInformerFactory
	services listerscorev1.ServiceLister
	slices   listersdiscoveryv1.EndpointSliceLister
	nodes    listerscorev1.NodeLister
	crds     map[string]cache.SharedIndexInformer // by resource
	synced   []cache.InformerSynced

	mu      sync.Mutex
	changed uint64 // events seen
	built   uint64 // events seen when snap was built
	snap    *Snapshot
	subs    []chan struct{}
}

// crdResources are the Fairlead objects a Snapshot holds.
var crdResources = []string{"ippools", "l2advertisements", "bgppeers", "bgpadvertisements", "bfdprofiles", "communities"}

// NewSource registers the informers; call it before the shared factory starts.
func NewSource(o SourceOptions) (*Source, error) {
	s := &Source{o: o, crds: map[string]cache.SharedIndexInformer{}}
	s.dyn = dynamicinformer.NewDynamicSharedInformerFactory(o.Dynamic, 0)
	services := o.Informers.Core().V1().Services()
	slices := o.Informers.Discovery().V1().EndpointSlices()
	nodes := o.Informers.Core().V1().Nodes()
	s.services, s.slices, s.nodes = services.Lister(), slices.Lister(), nodes.Lister()
	infs := []cache.SharedIndexInformer{services.Informer(), slices.Informer(), nodes.Informer()}
	for _, r := range crdResources {
		inf := s.dyn.ForResource(v1alpha1.GroupVersion.WithResource(r)).Informer()
		s.crds[r] = inf
		infs = append(infs, inf)
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.touch() },
		UpdateFunc: func(any, any) { s.touch() },
		DeleteFunc: func(any) { s.touch() },
	}
	for _, inf := range infs {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, err
		}
		s.synced = append(s.synced, inf.HasSynced)
	}
	return s, nil
}

// Start starts the informers of Fairlead's objects (the shared factory is the caller's).
func (s *Source) Start(ctx context.Context) { s.dyn.Start(ctx.Done()) }

// WaitForCacheSync waits until every informer has synced; false if ctx ended first.
func (s *Source) WaitForCacheSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), s.synced...)
}

// Changes returns a channel that receives (without blocking the sender; changes coalesce)
// after any object the Snapshot depends on changed. Each call makes a new subscription.
func (s *Source) Changes() <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs = append(s.subs, ch)
	s.mu.Unlock()
	return ch
}

func (s *Source) touch() {
	s.mu.Lock()
	s.changed++
	subs := s.subs
	s.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Snapshot returns the current Snapshot, built anew only if something changed since the last
// one. It is shared: callers must not modify it.
func (s *Source) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil && s.built == s.changed {
		return s.snap
	}
	// Events arriving while building bump changed again, so the next call rebuilds.
	mark := s.changed
	in := Input{DefaultClass: s.o.DefaultClass}
	in.Services, _ = s.services.List(labels.Everything())
	in.EndpointSlices, _ = s.slices.List(labels.Everything())
	in.Nodes, _ = s.nodes.List(labels.Everything())
	var problems []Problem
	decodeAll(s.crds["ippools"], &in.Pools, &problems)
	decodeAll(s.crds["l2advertisements"], &in.L2Advertisements, &problems)
	decodeAll(s.crds["bgppeers"], &in.BGPPeers, &problems)
	decodeAll(s.crds["bgpadvertisements"], &in.BGPAdvertisements, &problems)
	decodeAll(s.crds["bfdprofiles"], &in.BFDProfiles, &problems)
	decodeAll(s.crds["communities"], &in.Communities, &problems)
	snap := Build(in)
	snap.Problems = append(problems, snap.Problems...)
	s.snap, s.built = snap, mark
	return snap
}

// Service returns any Service in the informer's cache, ours or not.
func (s *Source) Service(namespace, name string) (*corev1.Service, error) {
	return s.services.Services(namespace).Get(name)
}

// decodeAll converts the informer's objects; one that does not decode (a schema the CRD
// does not enforce) is a Problem and left out, the others are used.
func decodeAll[T any](inf cache.SharedIndexInformer, out *[]*T, problems *[]Problem) {
	for _, o := range inf.GetStore().List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		t := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
			*problems = append(*problems, Problem{ref(u.GetKind(), u.GetAPIVersion(), u.GetNamespace(), u.GetName()), fmt.Errorf("decoding: %w", err)})
			continue
		}
		*out = append(*out, t)
	}
}
