// Package controllers wires Fairlead's reconcilers into a controller-runtime Manager. The
// reconcilers themselves live in one package each (service, ippool); ipam holds the state
// they share.
package controllers

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers/bgpadvertisement"
	"github.com/fairlead-lb/fairlead/controllers/bgppeer"
	"github.com/fairlead-lb/fairlead/controllers/ippool"
	"github.com/fairlead-lb/fairlead/controllers/l2advertisement"
	"github.com/fairlead-lb/fairlead/controllers/service"
	"github.com/fairlead-lb/fairlead/providers/ipam"
)

// Options configure the controllers.
type Options struct {
	// DefaultClass: Services without a loadBalancerClass are Fairlead's.
	DefaultClass bool
	// MetalLBPoolAnnotation: also write MetalLB's metallb.io/ip-allocated-from-pool.
	MetalLBPoolAnnotation bool
	// Workers is the number of Services reconciled in parallel.
	Workers int
	// PoolStatusInterval bounds how often a pool's usage is written to its status.
	PoolStatusInterval time.Duration
	// AWS, when set, turns on the AWS providers (NLB Services, Elastic IP pools).
	AWS *AWSOptions
}

// Setup registers the Service and IPPool controllers on mgr.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.PoolStatusInterval <= 0 {
		o.PoolStatusInterval = time.Second
	}
	if err := l2advertisement.Setup(mgr, &l2advertisement.Reconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("fairlead-controller"),
	}); err != nil {
		return err
	}
	if err := bgpadvertisement.Setup(mgr, &bgpadvertisement.Reconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("fairlead-controller"),
	}); err != nil {
		return err
	}
	if err := bgppeer.Setup(mgr, &bgppeer.Reconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("fairlead-controller"),
	}); err != nil {
		return err
	}
	poolEvents := make(chan event.TypedGenericEvent[reconcile.Request], 1024)
	retryEvents := make(chan event.TypedGenericEvent[reconcile.Request], 1)
	svcR := &service.Reconciler{
		Client:                mgr.GetClient(),
		Recorder:              mgr.GetEventRecorder("fairlead-controller"),
		DefaultClass:          o.DefaultClass,
		MetalLBPoolAnnotation: o.MetalLBPoolAnnotation,
	}
	state := ipam.New(ipam.Hooks{
		Claim: svcR.Claim,
		PoolChanged: func(name string) {
			select {
			case poolEvents <- event.TypedGenericEvent[reconcile.Request]{Object: reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}}:
			default: // the queue already has work for the pools; a full resync follows
			}
		},
		Retry: func() {
			select {
			case retryEvents <- event.TypedGenericEvent[reconcile.Request]{}:
			default: // a retry is already queued
			}
		},
	})

	svcR.State = state
	if o.AWS != nil {
		nlb, eip, err := awsProviders(o.AWS)
		if err != nil {
			return err
		}
		if nlb != nil {
			if err := setupNLB(mgr, o.AWS, nlb); err != nil {
				return err
			}
		}
		if eip != nil {
			svcR.ElasticIPs = eip
			if err := addElasticCollector(mgr, o.AWS, eip); err != nil {
				return err
			}
		}
	}
	// Only Services that are ours, or still carry our finalizer, are worth a reconcile.
	relevant := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		svc, ok := obj.(*corev1.Service)
		return ok && (svcR.Owns(svc) || controllerutil.ContainsFinalizer(svc, v1alpha1.ServiceFinalizer))
	})
	retryPending := handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, reconcile.Request) []reconcile.Request {
		keys := state.Retryable()
		out := make([]reconcile.Request, 0, len(keys))
		for _, k := range keys {
			ns, name, _ := splitKey(k)
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
		}
		return out
	})
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("service").
		For(&corev1.Service{}, builder.WithPredicates(relevant)).
		WatchesRawSource(source.Channel(retryEvents, retryPending)).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.Workers}).
		Complete(svcR); err != nil {
		return err
	}

	poolR := &ippool.Reconciler{
		Client:         mgr.GetClient(),
		State:          state,
		Recorder:       mgr.GetEventRecorder("fairlead-controller"),
		StatusInterval: o.PoolStatusInterval,
		ElasticIPs:     svcR.ElasticIPs != nil,
	}
	// A pool's validity depends on the others (overlaps): any pool event reconciles them all.
	// The pool itself is always among them: when the last pool goes, the list is empty, and the
	// state must still learn that it went.
	allPools := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
		out := []reconcile.Request{{NamespacedName: types.NamespacedName{Name: obj.GetName()}}}
		var list v1alpha1.IPPoolList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			return out
		}
		for _, p := range list.Items {
			if p.Name != obj.GetName() {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
			}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("ippool").
		Watches(&v1alpha1.IPPool{}, allPools).
		WatchesRawSource(source.Channel(poolEvents, handler.TypedEnqueueRequestsFromMapFunc(
			func(_ context.Context, r reconcile.Request) []reconcile.Request { return []reconcile.Request{r} }))).
		Complete(poolR)
}

func splitKey(k string) (string, string, bool) {
	return strings.Cut(k, "/")
}
