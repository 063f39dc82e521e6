// Package cloud reconciles the Services whose load balancer is a cloud resource created per
// Service (an AWS Network Load Balancer): it describes the Service, its Nodes and endpoints to
// a providers.Provider, writes where clients reach it into status.loadBalancer, and releases
// everything when the Service goes. A Collector releases what Services deleted while the
// controller was down left behind.
package cloud

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers/service"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
)

// Reconciler converges the Services of one loadBalancerClass onto a provider.
type Reconciler struct {
	Client   client.Client
	Provider providers.Provider
	Recorder recorder.EventRecorder
	// Class is the loadBalancerClass whose Services this reconciler owns.
	Class string
	// Resync re-ensures a converged Service this often, repairing changes made in the cloud
	// behind the controller's back (0: never).
	Resync time.Duration
}

// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch

// Owns reports whether svc gets its load balancer from this reconciler.
func (r *Reconciler) Owns(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass != nil &&
		*svc.Spec.LoadBalancerClass == r.Class
}

// Reconcile converges one Service; running it twice changes nothing.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var svc corev1.Service
	if err := r.Client.Get(ctx, req.NamespacedName, &svc); err != nil {
		// Gone: our finalizer made sure it was released first; what a crash left is the
		// Collector's.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !svc.DeletionTimestamp.IsZero() || !r.Owns(&svc) {
		return ctrl.Result{}, r.letGo(ctx, &svc)
	}
	// The finalizer goes on before anything exists in the cloud: a Service deleted at any
	// later point is released first.
	if !controllerutil.ContainsFinalizer(&svc, v1alpha1.ProviderFinalizer) {
		base := svc.DeepCopy()
		controllerutil.AddFinalizer(&svc, v1alpha1.ProviderFinalizer)
		if err := r.Client.Patch(ctx, &svc, client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	d, err := r.describe(ctx, &svc)
	var ing providers.Ingress
	if err == nil {
		ing, err = r.Provider.Ensure(ctx, d)
	}
	if werr := r.writeStatus(ctx, &svc, ing, err); werr != nil {
		return ctrl.Result{}, werr
	}
	if err != nil {
		if providers.ReasonOf(err) == providers.ReasonInvalidService {
			return ctrl.Result{}, nil // retried when the Service changes
		}
		// Throttling and 5xx were already retried by the SDK; the work queue's exponential
		// backoff spaces the next attempts, so a long outage does not hammer the API.
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.Resync}, nil
}

func (r *Reconciler) describe(ctx context.Context, svc *corev1.Service) (*providers.Service, error) {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var slices discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &slices, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return nil, fmt.Errorf("listing endpoint slices: %w", err)
	}
	return describe.Service(svc, nil, ptrs(nodes.Items), ptrs(slices.Items))
}

// letGo releases a Service that is being deleted or is no longer ours, clears the status we
// wrote and drops our finalizer.
func (r *Reconciler) letGo(ctx context.Context, svc *corev1.Service) error {
	if !controllerutil.ContainsFinalizer(svc, v1alpha1.ProviderFinalizer) {
		return nil
	}
	key := describe.Key(svc)
	if err := r.Provider.Release(ctx, key); err != nil {
		r.report(ctx, svc, "ReleaseFailed", "Release", err)
		return fmt.Errorf("releasing %s: %w", key, err)
	}
	if err := service.LetGo(ctx, r.Client, svc, v1alpha1.ProviderFinalizer); err != nil {
		return err
	}
	r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "LoadBalancerReleased", "Release", "Released the load balancer")
	log.FromContext(ctx).Info("released")
	return nil
}

// writeStatus records the outcome of Ensure. On failure the Service keeps the ingress it had:
// the load balancer, if it exists, still serves.
func (r *Reconciler) writeStatus(ctx context.Context, svc *corev1.Service, ing providers.Ingress, ensureErr error) error {
	base := svc.DeepCopy()
	cond := metav1.Condition{
		Type:               v1alpha1.ConditionIPAllocated,
		Status:             metav1.ConditionTrue,
		Reason:             "Provisioned",
		ObservedGeneration: svc.Generation,
	}
	if ensureErr == nil {
		svc.Status.LoadBalancer.Ingress = ingress(ing)
		cond.Message = "Load balancer ready at " + where(ing)
	} else {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, providers.ReasonOf(ensureErr), ensureErr.Error()
	}
	prev := meta.FindStatusCondition(base.Status.Conditions, v1alpha1.ConditionIPAllocated)
	meta.SetStatusCondition(&svc.Status.Conditions, cond)
	if !equality.Semantic.DeepEqual(base.Status, svc.Status) {
		if err := r.Client.Status().Patch(ctx, svc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("writing status: %w", err)
		}
	}
	changed := prev == nil || prev.Status != cond.Status || prev.Message != cond.Message
	switch {
	case ensureErr != nil:
		// A Warning Event per distinct failure (not per retry) and a log line every time.
		if changed {
			r.report(ctx, svc, cond.Reason, "Ensure", ensureErr)
		} else {
			log.FromContext(ctx).Info("load balancer not converged", "reason", cond.Reason, "error", ensureErr.Error())
		}
	case changed:
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "LoadBalancerReady", "Ensure", "%s", cond.Message)
		log.FromContext(ctx).Info("load balancer ready", "ingress", where(ing))
	}
	return nil
}

func (r *Reconciler) report(ctx context.Context, svc *corev1.Service, reason, action string, err error) {
	r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reason, action, "%s", err.Error())
	log.FromContext(ctx).Info("load balancer failed", "action", action, "reason", providers.ReasonOf(err), "error", err.Error())
}

func ingress(ing providers.Ingress) []corev1.LoadBalancerIngress {
	var out []corev1.LoadBalancerIngress
	vip := corev1.LoadBalancerIPModeVIP
	for _, a := range ing.IPs {
		out = append(out, corev1.LoadBalancerIngress{IP: a.String(), IPMode: &vip})
	}
	if ing.Hostname != "" {
		out = append(out, corev1.LoadBalancerIngress{Hostname: ing.Hostname})
	}
	return out
}

func where(ing providers.Ingress) string {
	var parts []string
	if ing.Hostname != "" {
		parts = append(parts, ing.Hostname)
	}
	for _, a := range ing.IPs {
		parts = append(parts, a.String())
	}
	if len(parts) == 0 {
		return "no address"
	}
	return strings.Join(parts, ", ")
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}
