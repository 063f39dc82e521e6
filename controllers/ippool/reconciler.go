// Package ippool reconciles IPPools: it loads them into the allocation state, reports their
// validity and usage in status, and holds a pool's deletion until no Service uses it.
package ippool

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/ipam"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// Reconciler keeps IPPools' status and finalizer.
type Reconciler struct {
	Client   client.Client
	State    *ipam.State
	Recorder recorder.EventRecorder
	// StatusInterval bounds how often one pool's status is written while Services churn.
	StatusInterval time.Duration
	// ElasticIPs: the controller runs with Elastic IP pools enabled (--aws-eip).
	ElasticIPs bool

	mu        sync.Mutex
	lastWrite map[string]time.Time
}

// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools/finalizers,verbs=update

// Reconcile converges one pool.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if err := r.State.LoadFromAPI(ctx, r.Client); err != nil {
		return ctrl.Result{}, err
	}
	// Validity depends on the other pools (overlaps), so every reconcile reloads them all.
	var all v1alpha1.IPPoolList
	if err := r.Client.List(ctx, &all); err != nil {
		return ctrl.Result{}, err
	}
	r.State.LoadPools(all.Items)

	var p v1alpha1.IPPool
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			ipam.PoolAddresses.DeletePartialMatch(map[string]string{"pool": req.Name})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if p.ElasticIPs() != nil {
		return r.reconcileElastic(ctx, &p)
	}
	usage := r.State.PoolUsage(p.Name)

	if !p.DeletionTimestamp.IsZero() {
		if len(usage.Holders) == 0 {
			return ctrl.Result{}, r.removeFinalizer(ctx, &p)
		}
	} else if !controllerutil.ContainsFinalizer(&p, v1alpha1.PoolFinalizer) {
		base := p.DeepCopy()
		controllerutil.AddFinalizer(&p, v1alpha1.PoolFinalizer)
		if err := r.Client.Patch(ctx, &p, client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, err
		}
	}

	base := p.DeepCopy()
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Valid",
		Message: "Addresses are being allocated", ObservedGeneration: p.Generation}
	p.Status.IPv4, p.Status.IPv6 = nil, nil
	if problem, bad := r.State.Problem(p.Name); bad {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, problem.Reason, problem.Message
	} else {
		p.Status.IPv4 = familyStatus(usage, pool.IPv4)
		p.Status.IPv6 = familyStatus(usage, pool.IPv6)
		setGauges(p.Name, usage)
		if !p.AutoAssigns() {
			cond.Message = "Addresses are allocated to Services that ask for this pool"
		}
	}
	p.Status.Strays = int64(usage.Strays)
	if usage.Strays > 0 {
		cond.Message += fmt.Sprintf("; %d address(es) handed out from this pool are kept by Services it no longer covers or admits (their IPAllocated condition has reason OutsidePool)", usage.Strays)
	}
	if !p.DeletionTimestamp.IsZero() {
		cond.Status, cond.Reason = metav1.ConditionFalse, "Deleting"
		cond.Message = fmt.Sprintf("Deletion waits until %d Service(s) release their addresses: %s", len(usage.Holders), abbreviate(usage.Holders, 5))
	}
	p.Status.ObservedGeneration = p.Generation
	prev := meta.FindStatusCondition(base.Status.Conditions, v1alpha1.ConditionReady)
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(base.Status, p.Status) {
		return ctrl.Result{}, nil
	}
	// Usage changes with every allocation; write at most once per interval, but write a
	// change of condition at once.
	sameCondition := prev != nil && prev.Status == cond.Status && prev.Reason == cond.Reason && prev.Message == cond.Message
	if wait := r.untilNextWrite(p.Name); wait > 0 && sameCondition {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if err := r.Client.Status().Patch(ctx, &p, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, err
	}
	r.wrote(p.Name)
	if !sameCondition {
		kind := corev1.EventTypeNormal
		if cond.Status == metav1.ConditionFalse {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(&p, nil, kind, cond.Reason, "Validate", "%s", cond.Message)
		log.FromContext(ctx).Info("pool condition", "ready", cond.Status, "reason", cond.Reason, "message", cond.Message)
	}
	return ctrl.Result{}, nil
}

// reconcileElastic keeps the status and finalizer of a pool of Elastic IPs. Its addresses are
// the cloud's, so there is no usage to count; its deletion still waits for the Services that
// hold one of its addresses (listed only while it is being deleted).
func (r *Reconciler) reconcileElastic(ctx context.Context, p *v1alpha1.IPPool) (ctrl.Result, error) {
	var holders []string
	if !p.DeletionTimestamp.IsZero() {
		var svcs corev1.ServiceList
		if err := r.Client.List(ctx, &svcs); err != nil {
			return ctrl.Result{}, err
		}
		for i := range svcs.Items {
			svc := &svcs.Items[i]
			if len(ipam.IngressIPs(svc)) > 0 && controllerutil.ContainsFinalizer(svc, v1alpha1.ServiceFinalizer) &&
				poolAnnotation(svc) == p.Name {
				holders = append(holders, svc.Namespace+"/"+svc.Name)
			}
		}
		if len(holders) == 0 {
			return ctrl.Result{}, r.removeFinalizer(ctx, p)
		}
	} else if !controllerutil.ContainsFinalizer(p, v1alpha1.PoolFinalizer) {
		base := p.DeepCopy()
		controllerutil.AddFinalizer(p, v1alpha1.PoolFinalizer)
		if err := r.Client.Patch(ctx, p, client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, err
		}
	}
	base := p.DeepCopy()
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ElasticIPs",
		Message: "Elastic IPs are allocated to Services that ask for this pool", ObservedGeneration: p.Generation}
	switch problem, bad := r.State.Problem(p.Name); {
	case bad:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, problem.Reason, problem.Message
	case !r.ElasticIPs:
		cond.Status, cond.Reason = metav1.ConditionFalse, "ProviderDisabled"
		cond.Message = "The controller runs without --aws-eip: this pool hands out nothing"
	}
	var result ctrl.Result
	if len(holders) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, "Deleting"
		cond.Message = fmt.Sprintf("Deletion waits until %d Service(s) release their addresses: %s", len(holders), abbreviate(holders, 5))
		// Releasing an Elastic IP does not pass through the local allocator's hooks: look again.
		result.RequeueAfter = 2 * time.Second
	}
	p.Status.IPv4, p.Status.IPv6 = nil, nil
	p.Status.ObservedGeneration = p.Generation
	prev := meta.FindStatusCondition(base.Status.Conditions, v1alpha1.ConditionReady)
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(base.Status, p.Status) {
		return result, nil
	}
	if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, err
	}
	if prev == nil || prev.Status != cond.Status || prev.Reason != cond.Reason || prev.Message != cond.Message {
		kind := corev1.EventTypeNormal
		if cond.Status == metav1.ConditionFalse {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(p, nil, kind, cond.Reason, "Validate", "%s", cond.Message)
	}
	return result, nil
}

// poolAnnotation is the pool a Service names, under Fairlead's or MetalLB's annotation.
func poolAnnotation(svc *corev1.Service) string {
	for _, k := range append([]string{v1alpha1.AnnotationPool}, v1alpha1.MetalLBAnnotationPool...) {
		if v, ok := svc.Annotations[k]; ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (r *Reconciler) removeFinalizer(ctx context.Context, p *v1alpha1.IPPool) error {
	if !controllerutil.ContainsFinalizer(p, v1alpha1.PoolFinalizer) {
		return nil
	}
	base := p.DeepCopy()
	controllerutil.RemoveFinalizer(p, v1alpha1.PoolFinalizer)
	if err := r.Client.Patch(ctx, p, client.MergeFrom(base)); err != nil {
		return client.IgnoreNotFound(err)
	}
	log.FromContext(ctx).Info("pool released by every Service; deletion proceeds")
	return nil
}

func (r *Reconciler) untilNextWrite(name string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.lastWrite[name]
	if !ok {
		return 0
	}
	return time.Until(last.Add(r.StatusInterval))
}

func (r *Reconciler) wrote(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastWrite == nil {
		r.lastWrite = map[string]time.Time{}
	}
	r.lastWrite[name] = time.Now()
}

func familyStatus(u ipam.Usage, f pool.Family) *v1alpha1.FamilyStatus {
	st, ok := u.Stats[f]
	if !ok {
		return nil
	}
	return &v1alpha1.FamilyStatus{Total: st.Total.String(), Used: st.Used, Free: st.Free.String()}
}

func setGauges(name string, u ipam.Usage) {
	for f, st := range u.Stats {
		fam := fmt.Sprintf("ipv%d", f)
		total, _ := st.Total.Float64()
		free, _ := st.Free.Float64()
		ipam.PoolAddresses.WithLabelValues(name, fam, "total").Set(total)
		ipam.PoolAddresses.WithLabelValues(name, fam, "used").Set(float64(st.Used))
		ipam.PoolAddresses.WithLabelValues(name, fam, "free").Set(free)
	}
}

func abbreviate(ss []string, n int) string {
	if len(ss) <= n {
		return strings.Join(ss, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ss[:n], ", "), len(ss)-n)
}
