package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers/cloud"
	"github.com/fairlead-lb/fairlead/controllers/service"
	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/providers/describe"
)

// AWSOptions turn on the AWS providers.
type AWSOptions struct {
	// Config reaches AWS (region, endpoint override, retries); credentials come from the SDK's
	// default chain.
	Config fairaws.Config
	// ClusterName tags everything created in AWS.
	ClusterName string
	// NLB: Services of class fairlead.dev/aws-nlb get a Network Load Balancer each.
	NLB        bool
	NLBOptions fairaws.NLBOptions
	// ElasticIPs: IPPools with spec.aws.elasticIPs hand out Elastic IPs.
	ElasticIPs bool
	// Workers reconcile NLB Services in parallel (default 4).
	Workers int
	// Resync re-ensures each NLB this often, repairing drift (default 10 minutes).
	Resync time.Duration
	// CollectorBackoff is the first wait after a failed garbage collection pass (default 5s).
	CollectorBackoff time.Duration
}

// awsProviders builds what o asks for.
func awsProviders(o *AWSOptions) (nlb *fairaws.NLB, eip func(string, *v1alpha1.ElasticIPs) (providers.Provider, error), err error) {
	clients, err := fairaws.NewClients(context.Background(), o.Config)
	if err != nil {
		return nil, nil, err
	}
	if o.NLB {
		nlbOpts := o.NLBOptions
		nlbOpts.ClusterName = o.ClusterName
		if nlb, err = fairaws.NewNLB(clients, nlbOpts); err != nil {
			return nil, nil, err
		}
	}
	if o.ElasticIPs {
		cluster := o.ClusterName
		// Checked once here, so that a bad cluster name stops the controller rather than every
		// Service.
		if _, err := fairaws.NewEIP(clients, fairaws.EIPOptions{ClusterName: cluster, AllocateOnDemand: true}); err != nil {
			return nil, nil, err
		}
		eip = func(pool string, spec *v1alpha1.ElasticIPs) (providers.Provider, error) {
			return fairaws.NewEIP(clients, fairaws.EIPOptions{
				ClusterName:      cluster,
				Pool:             spec.AdoptTagged,
				AllocateOnDemand: spec.Allocate != v1alpha1.ElasticIPsNever,
				PublicIPv4Pool:   spec.PublicIPv4Pool,
			})
		}
	}
	return nlb, eip, nil
}

// setupNLB registers the reconciler of NLB Services and the collector of what deleted ones
// left behind. Nodes and EndpointSlices are watched only here: the local pools' path does not
// pay for them.
func setupNLB(mgr ctrl.Manager, o *AWSOptions, nlb *fairaws.NLB) error {
	workers := o.Workers
	if workers <= 0 {
		workers = 4
	}
	resync := o.Resync
	if resync <= 0 {
		resync = 10 * time.Minute
	}
	// The Service reconciler with the NLB as its provider, in a queue of its own: slow AWS
	// calls never hold up allocation from the pools.
	r := &service.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("fairlead-controller"),
		Cloud:    nlb,
		Class:    v1alpha1.AWSNLBClass,
		Resync:   resync,
	}
	relevant := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		svc, ok := obj.(*corev1.Service)
		return ok && (r.Owns(svc) || controllerutil.ContainsFinalizer(svc, r.Finalizer()))
	})
	// Every NLB Service's targets depend on the set of eligible nodes.
	allServices := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list corev1.ServiceList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			return nil
		}
		var out []reconcile.Request
		for i := range list.Items {
			if r.Owns(&list.Items[i]) {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
			}
		}
		return out
	})
	// Node status changes all the time (heartbeats, images); only what makes a target matters.
	nodeChanged := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Node)
			n, ok2 := e.ObjectNew.(*corev1.Node)
			return !ok1 || !ok2 || !slices.EqualFunc(describe.Nodes([]*corev1.Node{o}), describe.Nodes([]*corev1.Node{n}), providers.Node.Equal)
		},
	}
	// Endpoints matter only to Services whose targets are pod IPs.
	serviceOfSlice := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
		name := obj.GetLabels()[discoveryv1.LabelServiceName]
		if name == "" {
			return nil
		}
		var svc corev1.Service
		key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}
		if err := mgr.GetClient().Get(ctx, key, &svc); err != nil || !r.Owns(&svc) || !fairaws.UsesEndpoints(svc.Annotations) {
			return nil
		}
		return []reconcile.Request{{NamespacedName: key}}
	})
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("aws-nlb").
		For(&corev1.Service{}, builder.WithPredicates(relevant)).
		Watches(&corev1.Node{}, allServices, builder.WithPredicates(nodeChanged)).
		Watches(&discoveryv1.EndpointSlice{}, serviceOfSlice).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r); err != nil {
		return err
	}
	return mgr.Add(&cloud.Collector{
		Name: "aws-nlb", Provider: nlb, Reader: mgr.GetAPIReader(), Backoff: o.CollectorBackoff,
		Keep: func(svc *corev1.Service) bool {
			return r.Owns(svc) || controllerutil.ContainsFinalizer(svc, r.Finalizer())
		},
	})
}

// addElasticCollector releases Elastic IPs held for Services that are gone.
func addElasticCollector(mgr ctrl.Manager, o *AWSOptions, eip func(string, *v1alpha1.ElasticIPs) (providers.Provider, error)) error {
	p, err := eip("", &v1alpha1.ElasticIPs{Allocate: v1alpha1.ElasticIPsOnDemand})
	if err != nil {
		return fmt.Errorf("elastic IPs: %w", err)
	}
	return mgr.Add(&cloud.Collector{
		Name: "aws-eip", Provider: p, Reader: mgr.GetAPIReader(), Backoff: o.CollectorBackoff,
		// An existing Service releases its own Elastic IP when it is deleted or moves to
		// another pool (the Service reconciler does it).
		Keep: func(*corev1.Service) bool { return true },
	})
}
