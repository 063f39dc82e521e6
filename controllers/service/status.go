package service

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/ipam"
)

// outcome is what one reconcile decided for a Service, whichever provider decided it.
type outcome struct {
	// IPs are the addresses the Service gets, or keeps on failure (local pools, Elastic IPs).
	IPs []netip.Addr
	// Cloud is where a cloud load balancer of its own is reached; on failure the status keeps
	// what it had, since the load balancer, if it exists, still serves.
	Cloud providers.Ingress
	// Pools the addresses came from, recorded in AnnotationAllocatedFromPool; nil leaves the
	// annotation as it is.
	Pools  []string
	Strays []ipam.Stray
	Err    error
}

func (r *Reconciler) writeStatus(ctx context.Context, svc *corev1.Service, ips []netip.Addr, allocErr error) error {
	return r.write(ctx, svc, outcome{IPs: ips, Err: allocErr})
}

// write is the one place a Service's status, IPAllocated condition, finalizer and pool
// annotation are written, whatever the provider, and the Events that tell what changed.
func (r *Reconciler) write(ctx context.Context, svc *corev1.Service, out outcome) error {
	before := ipam.IngressIPs(svc)
	base := svc.DeepCopy()
	var cond metav1.Condition
	if r.Cloud != nil {
		cond = r.cloudStatus(svc, out)
	} else {
		cond = r.localStatus(svc, out)
	}
	prev := meta.FindStatusCondition(base.Status.Conditions, v1alpha1.ConditionIPAllocated)
	meta.SetStatusCondition(&svc.Status.Conditions, cond)
	needAnnotation := r.Cloud == nil && r.setPoolAnnotations(svc, out.IPs, out.Pools)

	// The finalizer and the pool annotation ride along with the status: a Service's status subresource keeps metadata
	// changes, so a new Service costs the apiserver one write instead of two (on a busy
	// apiserver, that is what keeps allocation in step with creation). The strategic merge
	// patch adds to the finalizer list instead of replacing it. Should an apiserver ever drop
	// metadata on /status, the answer shows it and a separate patch adds the finalizer.
	fin := r.Finalizer()
	needFinalizer := controllerutil.AddFinalizer(svc, fin)
	if needFinalizer || needAnnotation || !equality.Semantic.DeepEqual(base.Status, svc.Status) {
		// Conditional on the version read: a write based on a stale view (another replica, or
		// the user, changed the Service meanwhile) fails and is retried on the fresh one.
		if err := r.Client.Status().Patch(ctx, svc, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("writing status: %w", err)
		}
	}
	lostFinalizer := needFinalizer && !controllerutil.ContainsFinalizer(svc, fin)
	lostAnnotation := needAnnotation && r.setPoolAnnotations(svc.DeepCopy(), out.IPs, out.Pools)
	if lostFinalizer || lostAnnotation {
		mbase := svc.DeepCopy()
		controllerutil.AddFinalizer(svc, fin)
		if r.Cloud == nil {
			r.setPoolAnnotations(svc, out.IPs, out.Pools)
		}
		if err := r.Client.Patch(ctx, svc, client.MergeFromWithOptions(mbase, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("adding finalizer and pool annotation: %w", err)
		}
	}
	if r.Cloud != nil {
		r.cloudEvents(ctx, svc, out, prev, cond)
	} else {
		r.localEvents(ctx, svc, out, before, prev, cond)
	}
	return nil
}

// addFinalizer puts the finalizer on before anything exists outside the API (finalizerFirst).
func (r *Reconciler) addFinalizer(ctx context.Context, svc *corev1.Service) error {
	base := svc.DeepCopy()
	controllerutil.AddFinalizer(svc, r.Finalizer())
	if err := r.Client.Patch(ctx, svc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// localStatus sets the ingress of addresses from the local pools or an Elastic IP, each with
// its pool's ipMode, and returns the condition that says how it went.
func (r *Reconciler) localStatus(svc *corev1.Service, out outcome) metav1.Condition {
	ips := out.IPs
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
	if out.Err != nil {
		failure := asError(out.Err)
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, failure.Reason, failure.Message
		if len(ips) > 0 {
			cond.Message += "; keeping " + joinAddrs(ips)
		}
		ipam.AllocationFailures.WithLabelValues(failure.Reason).Inc()
	}
	if out.Err == nil && len(out.Strays) > 0 {
		// Still allocated (and announced), but not as the pool now says: tell the owner.
		cond.Reason = ReasonOutsidePool
		var why []string
		for _, st := range out.Strays {
			why = append(why, st.Why)
		}
		cond.Message += "; kept although " + strings.Join(why, "; ") +
			": the address stays announced and is not handed to another Service; request another address or pool to move"
	}
	return cond
}

func (r *Reconciler) localEvents(ctx context.Context, svc *corev1.Service, out outcome, before []netip.Addr, prev *metav1.Condition, cond metav1.Condition) {
	logger := log.FromContext(ctx)
	ips := out.IPs
	if added := diff(ips, before); len(added) > 0 {
		ipam.Allocations.Add(float64(len(added)))
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "IPAllocated", "Allocate", "Assigned %s", joinAddrs(ips))
		logger.Info("allocated", "ips", joinAddrs(ips))
	}
	if gone := diff(before, ips); len(gone) > 0 {
		ipam.Releases.Add(float64(len(gone)))
	}
	if out.Err != nil && (prev == nil || prev.Message != cond.Message) {
		failure := asError(out.Err)
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, "AllocationFailed", "Allocate", "%s", cond.Message)
		logger.Info("allocation failed", "reason", failure.Reason, "message", failure.Message)
	}
	if cond.Reason == ReasonOutsidePool && (prev == nil || prev.Message != cond.Message) {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, ReasonOutsidePool, "Allocate", "%s", cond.Message)
		logger.Info("address kept outside its pool", "message", cond.Message)
	}
}

// cloudStatus sets the ingress of a cloud load balancer (its addresses and DNS name) and
// returns the condition. On failure the Service keeps the ingress it had: the load balancer,
// if it exists, still serves.
func (r *Reconciler) cloudStatus(svc *corev1.Service, out outcome) metav1.Condition {
	cond := metav1.Condition{
		Type:               v1alpha1.ConditionIPAllocated,
		Status:             metav1.ConditionTrue,
		Reason:             "Provisioned",
		ObservedGeneration: svc.Generation,
	}
	if out.Err == nil {
		svc.Status.LoadBalancer.Ingress = ingress(out.Cloud)
		cond.Message = "Load balancer ready at " + where(out.Cloud)
	} else {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, providers.ReasonOf(out.Err), out.Err.Error()
	}
	return cond
}

func (r *Reconciler) cloudEvents(ctx context.Context, svc *corev1.Service, out outcome, prev *metav1.Condition, cond metav1.Condition) {
	changed := prev == nil || prev.Status != cond.Status || prev.Message != cond.Message
	switch {
	case out.Err != nil:
		// A Warning Event per distinct failure (not per retry) and a log line every time.
		if changed {
			r.report(ctx, svc, cond.Reason, "Ensure", out.Err)
		} else {
			log.FromContext(ctx).Info("load balancer not converged", "reason", cond.Reason, "error", out.Err.Error())
		}
	case changed:
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "LoadBalancerReady", "Ensure", "%s", cond.Message)
		log.FromContext(ctx).Info("load balancer ready", "ingress", where(out.Cloud))
	}
}

func (r *Reconciler) report(ctx context.Context, svc *corev1.Service, reason, action string, err error) {
	r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reason, action, "%s", err.Error())
	log.FromContext(ctx).Info("load balancer failed", "action", action, "reason", providers.ReasonOf(err), "error", err.Error())
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
