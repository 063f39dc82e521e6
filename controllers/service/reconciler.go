// Package service reconciles LoadBalancer Services: it allocates their external addresses,
// writes status.loadBalancer, and releases the addresses when the Service stops being ours.
package service

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/ipam"
)

// Reconciler allocates addresses for the LoadBalancer Services Fairlead owns.
type Reconciler struct {
	Client   client.Client
	State    *ipam.State
	Recorder recorder.EventRecorder
	// DefaultClass: Services without spec.loadBalancerClass are Fairlead's.
	DefaultClass bool
	// MetalLBPoolAnnotation: record the pool in MetalLB's annotation too, for dashboards and
	// tools of a MetalLB installation that read it.
	MetalLBPoolAnnotation bool
	// ElasticIPs returns the provider for a pool of Elastic IPs (pool name and settings); nil
	// when the controller runs without them. Release and Owned do not depend on the pool.
	ElasticIPs func(pool string, spec *v1alpha1.ElasticIPs) (providers.Provider, error)

	warned sync.Map // Service key → the warnings last reported for it
}

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Owns reports whether Fairlead is the load balancer for svc.
func (r *Reconciler) Owns(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return r.DefaultClass
	}
	return *svc.Spec.LoadBalancerClass == v1alpha1.LoadBalancerClass
}

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
	if err := r.State.LoadFromAPI(ctx, r.Client); err != nil {
		return ctrl.Result{}, err
	}
	key := req.String()
	var svc corev1.Service
	if err := r.Client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone without our finalizer (or after we removed it): nothing left to keep.
			r.release(key)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !svc.DeletionTimestamp.IsZero() || !r.Owns(&svc) {
		return ctrl.Result{}, r.letGo(ctx, &svc)
	}

	return r.allocate(ctx, &svc, key)
}

func (r *Reconciler) allocate(ctx context.Context, svc *corev1.Service, key string) (ctrl.Result, error) {
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, types.NamespacedName{Name: svc.Namespace}, &ns); err != nil {
		return ctrl.Result{}, err
	}
	var ips []netip.Addr
	request, err := ipam.RequestFor(svc, labels.Set(ns.Labels))
	r.warn(ctx, svc, key, request.Warnings)
	if err == nil && request.Pool != "" {
		if spec, ok := r.State.ElasticPool(request.Pool); ok {
			return r.allocateElastic(ctx, svc, key, request, spec)
		}
	}
	if err != nil {
		// Bad input on the Service: report it, keep whatever it holds.
		ips = r.State.Held(key)
		err = &ipam.Error{Reason: ipam.ReasonInvalidRequest, Message: err.Error()}
	} else {
		ips, err = r.State.Ensure(request)
	}
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

// outcome is what one reconcile decided for a Service.
type outcome struct {
	IPs []netip.Addr
	// Pools the addresses came from, recorded in AnnotationAllocatedFromPool; nil leaves the
	// annotation as it is.
	Pools  []string
	Strays []ipam.Stray
	Err    error
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
	released := r.release(key)
	if r.ElasticIPs != nil && len(released) == 0 && controllerutil.ContainsFinalizer(svc, v1alpha1.ServiceFinalizer) {
		// Its addresses, if any, were not the local pools': they are Elastic IPs.
		eips, err := r.releaseElastic(ctx, svc, key)
		if err != nil {
			return err
		}
		released = eips
	}
	if !controllerutil.ContainsFinalizer(svc, v1alpha1.ServiceFinalizer) {
		return nil
	}
	var extra []string
	if r.MetalLBPoolAnnotation {
		extra = append(extra, v1alpha1.MetalLBAnnotationAllocatedFromPool)
	}
	if err := LetGo(ctx, r.Client, svc, v1alpha1.ServiceFinalizer, extra...); err != nil {
		return err
	}
	if len(released) > 0 {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "IPReleased", "Release", "Released %s", joinAddrs(released))
	}
	log.FromContext(ctx).Info("released", "ips", joinAddrs(released))
	return nil
}

func (r *Reconciler) writeStatus(ctx context.Context, svc *corev1.Service, ips []netip.Addr, allocErr error) error {
	return r.write(ctx, svc, outcome{IPs: ips, Err: allocErr})
}

func (r *Reconciler) write(ctx context.Context, svc *corev1.Service, out outcome) error {
	ips, allocErr := out.IPs, out.Err
	logger := log.FromContext(ctx)
	before := ipam.IngressIPs(svc)
	base := svc.DeepCopy()

	svc.Status.LoadBalancer.Ingress = nil
	for i, mode := range r.State.IPModesOf(ips) {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ips[i].String(), IPMode: &mode})
	}
	cond := metav1.Condition{
		Type:               v1alpha1.ConditionIPAllocated,
		Status:             metav1.ConditionTrue,
		Reason:             "Allocated",
		Message:            "Assigned " + joinAddrs(ips),
		ObservedGeneration: svc.Generation,
	}
	var failure *ipam.Error
	if allocErr != nil {
		failure = asError(allocErr)
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, failure.Reason, failure.Message
		if len(ips) > 0 {
			cond.Message += "; keeping " + joinAddrs(ips)
		}
		ipam.AllocationFailures.WithLabelValues(failure.Reason).Inc()
	}
	if failure == nil && len(out.Strays) > 0 {
		// Still allocated (and announced), but not as the pool now says: tell the owner.
		cond.Reason = ReasonOutsidePool
		var why []string
		for _, st := range out.Strays {
			why = append(why, st.Why)
		}
		cond.Message += "; kept although " + strings.Join(why, "; ") +
			": the address stays announced and is not handed to another Service; request another address or pool to move"
	}
	prev := meta.FindStatusCondition(base.Status.Conditions, v1alpha1.ConditionIPAllocated)
	meta.SetStatusCondition(&svc.Status.Conditions, cond)
	needAnnotation := r.setPoolAnnotations(svc, ips, out.Pools)

	// The finalizer and the pool annotation ride along with the status: a Service's status subresource keeps metadata
	// changes, so a new Service costs the apiserver one write instead of two (on a busy
	// apiserver, that is what keeps allocation in step with creation). The strategic merge
	// patch adds to the finalizer list instead of replacing it. Should an apiserver ever drop
	// metadata on /status, the answer shows it and a separate patch adds the finalizer.
	needFinalizer := controllerutil.AddFinalizer(svc, v1alpha1.ServiceFinalizer)
	if needFinalizer || needAnnotation || !equality.Semantic.DeepEqual(base.Status, svc.Status) {
		// Conditional on the version read: a write based on a stale view (another replica, or
		// the user, changed the Service meanwhile) fails and is retried on the fresh one.
		if err := r.Client.Status().Patch(ctx, svc, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("writing status: %w", err)
		}
	}
	lostFinalizer := needFinalizer && !controllerutil.ContainsFinalizer(svc, v1alpha1.ServiceFinalizer)
	lostAnnotation := needAnnotation && r.setPoolAnnotations(svc.DeepCopy(), ips, out.Pools)
	if lostFinalizer || lostAnnotation {
		mbase := svc.DeepCopy()
		controllerutil.AddFinalizer(svc, v1alpha1.ServiceFinalizer)
		r.setPoolAnnotations(svc, ips, out.Pools)
		if err := r.Client.Patch(ctx, svc, client.MergeFromWithOptions(mbase, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("adding finalizer and pool annotation: %w", err)
		}
	}
	if added := diff(ips, before); len(added) > 0 {
		ipam.Allocations.Add(float64(len(added)))
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "IPAllocated", "Allocate", "Assigned %s", joinAddrs(ips))
		logger.Info("allocated", "ips", joinAddrs(ips))
	}
	if gone := diff(before, ips); len(gone) > 0 {
		ipam.Releases.Add(float64(len(gone)))
	}
	if failure != nil && (prev == nil || prev.Message != cond.Message) {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, "AllocationFailed", "Allocate", "%s", cond.Message)
		logger.Info("allocation failed", "reason", failure.Reason, "message", failure.Message)
	}
	if cond.Reason == ReasonOutsidePool && (prev == nil || prev.Message != cond.Message) {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, ReasonOutsidePool, "Allocate", "%s", cond.Message)
		logger.Info("address kept outside its pool", "message", cond.Message)
	}
	return nil
}

// ReasonOutsidePool is the IPAllocated reason (and Event reason) of a Service that keeps an
// address its pool no longer covers or no longer lets it have.
const ReasonOutsidePool = "OutsidePool"

// setPoolAnnotations writes Fairlead's pool annotation and, when asked, MetalLB's.
func (r *Reconciler) setPoolAnnotations(svc *corev1.Service, ips []netip.Addr, pools []string) bool {
	changed := setPoolAnnotation(svc, v1alpha1.AnnotationAllocatedFromPool, ips, pools)
	if r.MetalLBPoolAnnotation && setPoolAnnotation(svc, v1alpha1.MetalLBAnnotationAllocatedFromPool, ips, pools) {
		changed = true
	}
	return changed
}

// setPoolAnnotation records in annotation name the pools the addresses came from (one name
// when they agree), removes the record from a Service without addresses, and reports whether
// it changed anything.
func setPoolAnnotation(svc *corev1.Service, name string, ips []netip.Addr, pools []string) bool {
	cur, has := svc.Annotations[name]
	if len(ips) == 0 {
		if has {
			delete(svc.Annotations, name)
		}
		return has
	}
	if pools == nil {
		return false
	}
	want := pools
	if len(slices.Compact(slices.Clone(pools))) == 1 {
		want = pools[:1]
	}
	if slices.Contains(want, "") {
		return false // some origin unknown: a partial record would mislead
	}
	v := strings.Join(want, ",")
	if has && cur == v {
		return false
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[name] = v
	return true
}

func asError(err error) *ipam.Error {
	if e, ok := err.(*ipam.Error); ok {
		return e
	}
	return &ipam.Error{Reason: "Error", Message: err.Error()}
}

// sameSet says whether a and b hold the same addresses, in any order.
func sameSet(a, b []netip.Addr) bool {
	return len(a) == len(b) && len(diff(a, b)) == 0 && len(diff(b, a)) == 0
}

func diff(a, b []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func joinAddrs(ips []netip.Addr) string {
	if len(ips) == 0 {
		return "no address"
	}
	s := make([]string, len(ips))
	for i, a := range ips {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// LetGo undoes what a reconciler wrote on a Service it no longer serves: the addresses and
// the IPAllocated condition (unless the Service is being deleted anyway), then its finalizer,
// its pool annotation and the other annotations named.
func LetGo(ctx context.Context, c client.Client, svc *corev1.Service, finalizer string, annotations ...string) error {
	if svc.DeletionTimestamp.IsZero() {
		base := svc.DeepCopy()
		svc.Status.LoadBalancer.Ingress = nil
		meta.RemoveStatusCondition(&svc.Status.Conditions, v1alpha1.ConditionIPAllocated)
		if !equality.Semantic.DeepEqual(base.Status, svc.Status) {
			if err := c.Status().Patch(ctx, svc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
				return fmt.Errorf("clearing status: %w", err)
			}
		}
	}
	base := svc.DeepCopy()
	controllerutil.RemoveFinalizer(svc, finalizer)
	delete(svc.Annotations, v1alpha1.AnnotationAllocatedFromPool)
	for _, a := range annotations {
		delete(svc.Annotations, a)
	}
	if err := c.Patch(ctx, svc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}
