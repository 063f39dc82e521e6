// Package service reconciles LoadBalancer Services, whichever provider gives them their load
// balancer: the local pools (providers/ipam) and pools of Elastic IPs for Fairlead's class,
// picked by the Service's pool, or a cloud load balancer per Service (an AWS NLB) for its
// class. One reconciler does it all: it picks the provider, writes status.loadBalancer, the
// IPAllocated condition and the finalizer in one write, and releases everything when the
// Service stops being its own.
package service

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
	"github.com/fairlead-lb/fairlead/providers/ipam"
)

// Reconciler gives the LoadBalancer Services it owns their addresses or load balancers.
//
// A Reconciler serves one class of Services, so that each class has its own work queue (a
// slow cloud API never holds up the local pools): with Cloud unset, Fairlead's own class, from
// the local pools or, for Services naming one, a pool of Elastic IPs; with Cloud set, the
// Services of Class, a load balancer each.
type Reconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder

	// State is the local pools' allocation state (Fairlead's class).
	State *ipam.State
	// DefaultClass: Services without spec.loadBalancerClass are Fairlead's.
	DefaultClass bool
	// MetalLBPoolAnnotation: record the pool in MetalLB's annotation too, for dashboards and
	// tools of a MetalLB installation that read it.
	MetalLBPoolAnnotation bool
	// ElasticIPs returns the provider for a pool of Elastic IPs (pool name and settings); nil
	// when the controller runs without them. Release and Owned do not depend on the pool.
	ElasticIPs func(pool string, spec *v1alpha1.ElasticIPs) (providers.Provider, error)

	// Cloud, when set, gives every Service of Class a load balancer of its own.
	Cloud providers.Provider
	Class string
	// Resync re-ensures a converged cloud load balancer this often, repairing changes made in
	// the cloud behind the controller's back (0: never).
	Resync time.Duration

	warned sync.Map // Service key → the warnings last reported for it
}

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Owns reports whether this reconciler is the load balancer for svc.
func (r *Reconciler) Owns(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if r.Cloud != nil {
		return svc.Spec.LoadBalancerClass != nil && *svc.Spec.LoadBalancerClass == r.Class
	}
	if svc.Spec.LoadBalancerClass == nil {
		return r.DefaultClass
	}
	return *svc.Spec.LoadBalancerClass == v1alpha1.LoadBalancerClass
}

// Finalizer is the finalizer this reconciler puts on the Services it serves, and removes once
// it has released what they held.
func (r *Reconciler) Finalizer() string {
	if r.Cloud != nil {
		return v1alpha1.ProviderFinalizer
	}
	return v1alpha1.ServiceFinalizer
}

// finalizerFirst is the one finalizer rule: the finalizer rides along with the status write
// (one write per Service), unless the provider creates a load balancer of its own before that
// write; then it goes on first, so that a Service deleted at any later point is released.
func (r *Reconciler) finalizerFirst() bool { return r.Cloud != nil }

// Claim is the controller's rule for rebuilding the allocation state (ipam.Hooks.Claim): a
// Service holding its finalizer has the status it wrote; one of its class whose status another
// implementation wrote is adopted; one naming a pool of Elastic IPs holds the cloud's address,
// not a local pool's.
func (r *Reconciler) Claim(svc *corev1.Service, req ipam.Request) ipam.Claim {
	if _, elastic := r.State.ElasticPool(req.Pool); elastic {
		return ipam.NotHeld
	}
	switch {
	case controllerutil.ContainsFinalizer(svc, v1alpha1.ServiceFinalizer):
		return ipam.Wrote
	case svc.DeletionTimestamp.IsZero() && r.Owns(svc):
		return ipam.Adopted
	}
	return ipam.NotHeld
}

// Reconcile converges one Service; running it twice changes nothing.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.Cloud == nil {
		if err := r.State.LoadFromAPI(ctx, r.Client); err != nil {
			return ctrl.Result{}, err
		}
	}
	key := req.String()
	var svc corev1.Service
	if err := r.Client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone without our finalizer (or after we removed it): nothing left to keep. What
			// a crash left in a cloud is the Collector's.
			if r.Cloud == nil {
				r.release(key)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !svc.DeletionTimestamp.IsZero() || !r.Owns(&svc) {
		return ctrl.Result{}, r.letGo(ctx, &svc)
	}
	if r.finalizerFirst() && !controllerutil.ContainsFinalizer(&svc, r.Finalizer()) {
		if err := r.addFinalizer(ctx, &svc); err != nil {
			return ctrl.Result{}, err
		}
	}
	if r.Cloud != nil {
		return r.ensureCloud(ctx, &svc)
	}
	return r.allocate(ctx, &svc, key)
}

// allocate picks the provider of a Service of Fairlead's class by its pool: a pool of Elastic
// IPs, or the local pools.
func (r *Reconciler) allocate(ctx context.Context, svc *corev1.Service, key string) (ctrl.Result, error) {
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, types.NamespacedName{Name: svc.Namespace}, &ns); err != nil {
		return ctrl.Result{}, err
	}
	d := describe.Spec(svc, ns.Labels)
	if pool := ipam.PoolName(d.Annotations); pool != "" {
		if spec, ok := r.State.ElasticPool(pool); ok {
			// A request that does not parse stays with the local pools, which report it and
			// keep what the Service holds.
			if request, err := ipam.RequestOf(d); err == nil {
				r.warn(ctx, svc, key, request.Warnings)
				return r.allocateElastic(ctx, svc, key, request, spec)
			}
		}
	}
	ing, err := ipam.Pools{State: r.State}.Ensure(ctx, d)
	r.warn(ctx, svc, key, ing.Warnings)
	ips := ing.IPs
	ipam.PendingServices.Set(float64(len(r.State.Pending())))
	if r.ElasticIPs != nil {
		if err := r.leaveElastic(ctx, svc, key, ips, err); err != nil {
			return ctrl.Result{}, err
		}
		if err != nil && len(ips) == 0 {
			// Whatever address the status shows is not the local pools' (an Elastic IP whose pool
			// is gone or being renamed): keep it rather than leave the Service without one.
			ips = ipam.IngressIPs(svc)
		}
	}
	if cur := ipam.IngressIPs(svc); sameSet(ips, cur) {
		// Keep the order the status has: another implementation's (MetalLB writes IPv4 first
		// whatever the primary family), taken over, is not ours to rewrite.
		ips = cur
	}
	out := outcome{IPs: ips, Err: err, Strays: r.State.Strays(key)}
	if len(ips) > 0 && r.State.Held(key) != nil {
		out.Pools = r.State.PoolsOf(ips)
	}
	return ctrl.Result{}, r.write(ctx, svc, out)
}

// warn reports suspicious but usable input (a Fairlead and a MetalLB annotation that disagree)
// once per distinct set of warnings, not on every reconcile.
func (r *Reconciler) warn(ctx context.Context, svc *corev1.Service, key string, warnings []string) {
	joined := strings.Join(warnings, "\n")
	if prev, _ := r.warned.Load(key); prev == joined || (prev == nil && joined == "") {
		return
	}
	r.warned.Store(key, joined)
	for _, w := range warnings {
		log.FromContext(ctx).Info("conflicting annotations", "warning", w)
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, ipam.ReasonConflictingAnnotations, "Allocate", "%s", w)
	}
}

func (r *Reconciler) release(key string) []netip.Addr {
	r.warned.Delete(key)
	released := r.State.Release(key)
	ipam.Releases.Add(float64(len(released)))
	return released
}

// letGo releases a Service that is being deleted or is no longer ours, clears the status we
// wrote and drops our finalizer.
func (r *Reconciler) letGo(ctx context.Context, svc *corev1.Service) error {
	key := svc.Namespace + "/" + svc.Name
	fin := r.Finalizer()
	var released []netip.Addr
	if r.Cloud == nil {
		// Even without our finalizer: addresses adopted from another implementation go back.
		released = r.release(key)
	}
	if !controllerutil.ContainsFinalizer(svc, fin) {
		return nil
	}
	switch {
	case r.Cloud != nil:
		if err := r.Cloud.Release(ctx, key); err != nil {
			r.report(ctx, svc, "ReleaseFailed", "Release", err)
			return fmt.Errorf("releasing %s: %w", key, err)
		}
	case r.ElasticIPs != nil && len(released) == 0:
		// Its addresses, if any, were not the local pools': they are Elastic IPs.
		eips, err := r.releaseElastic(ctx, svc, key)
		if err != nil {
			return err
		}
		released = eips
	}
	var extra []string
	if r.MetalLBPoolAnnotation && r.Cloud == nil {
		extra = append(extra, v1alpha1.MetalLBAnnotationAllocatedFromPool)
	}
	if err := LetGo(ctx, r.Client, svc, fin, extra...); err != nil {
		return err
	}
	if r.Cloud != nil {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "LoadBalancerReleased", "Release", "Released the load balancer")
		log.FromContext(ctx).Info("released")
		return nil
	}
	if len(released) > 0 {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "IPReleased", "Release", "Released %s", joinAddrs(released))
	}
	log.FromContext(ctx).Info("released", "ips", joinAddrs(released))
	return nil
}
