// Package l2advertisement reports whether each L2Advertisement is usable: the controller
// validates it once for the cluster (speakers run the same validation and skip what fails it)
// and writes the answer to its status, with an Event and a log line when it changes.
package l2advertisement

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers/conditions"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// +kubebuilder:rbac:groups=fairlead.dev,resources=l2advertisements,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=l2advertisements/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler writes L2Advertisements' conditions.
type Reconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder
}

// Setup registers the reconciler: an advertisement is re-checked when it changes and when any
// pool comes, goes or changes labels (which decides ResolvedRefs).
func Setup(mgr ctrl.Manager, r *Reconciler) error {
	allAds := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.L2AdvertisementList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			return nil
		}
		out := make([]reconcile.Request, len(list.Items))
		for i, a := range list.Items {
			out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Name: a.Name}}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("l2advertisement").
		For(&v1alpha1.L2Advertisement{}).
		Watches(&v1alpha1.IPPool{}, allAds).
		Complete(r)
}

// Reconcile converges one advertisement's status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ad v1alpha1.L2Advertisement
	if err := r.Client.Get(ctx, req.NamespacedName, &ad); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var pools v1alpha1.IPPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return ctrl.Result{}, err
	}
	accepted, resolved := Conditions(&ad, pools.Items)

	w := conditions.Writer{Client: r.Client, Recorder: r.Recorder, Kind: "L2Advertisement", Rest: "announce the rest",
		Of: func(o client.Object) conditions.Status {
			a := o.(*v1alpha1.L2Advertisement)
			return conditions.Status{ObservedGeneration: &a.Status.ObservedGeneration, Conditions: &a.Status.Conditions}
		}}
	return ctrl.Result{}, w.Write(ctx, &ad, accepted, resolved)
}

// Conditions computes Accepted and ResolvedRefs for ad given the cluster's pools.
func Conditions(ad *v1alpha1.L2Advertisement, pools []v1alpha1.IPPool) (accepted, resolved metav1.Condition) {
	accepted = metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonAccepted, Message: "Speakers announce the selected pools' addresses"}
	resolved = metav1.Condition{Type: v1alpha1.ConditionResolvedRefs}
	c, err := ad.Compile()
	if err != nil {
		accepted.Status, accepted.Reason = metav1.ConditionFalse, v1alpha1.ReasonInvalid
		accepted.Message = "Ignored by every speaker: " + err.Error()
		resolved.Status, resolved.Reason = metav1.ConditionUnknown, v1alpha1.ReasonInvalid
		resolved.Message = "Not checked: the advertisement is invalid"
		return accepted, resolved
	}
	var missing, announced, silent []string
	for _, name := range ad.Spec.IPPools {
		if !slices.ContainsFunc(pools, func(p v1alpha1.IPPool) bool { return p.Name == name }) {
			missing = append(missing, name)
		}
	}
	pools = slices.Clone(pools)
	slices.SortFunc(pools, func(a, b v1alpha1.IPPool) int { return strings.Compare(a.Name, b.Name) })
	for i := range pools {
		if !c.SelectsPool(&pools[i]) {
			continue
		}
		if why := NotAnnounced(&pools[i]); why != "" {
			silent = append(silent, fmt.Sprintf("%s (%s)", pools[i].Name, why))
		} else {
			announced = append(announced, pools[i].Name)
		}
	}
	switch {
	case len(missing) > 0:
		resolved.Status, resolved.Reason = metav1.ConditionFalse, v1alpha1.ReasonPoolNotFound
		resolved.Message = fmt.Sprintf("No IPPool named %s; announcing %s", strings.Join(missing, ", "), ListPools(announced))
	case len(announced) == 0 && len(silent) == 0:
		resolved.Status, resolved.Reason = metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected
		resolved.Message = "No IPPool matches ipPools or ipPoolSelectors: nothing is announced"
	case len(announced) == 0:
		resolved.Status, resolved.Reason = metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected
		resolved.Message = "Nothing is announced"
	default:
		resolved.Status, resolved.Reason = metav1.ConditionTrue, v1alpha1.ReasonResolved
		resolved.Message = "Announcing " + ListPools(announced)
	}
	if len(silent) > 0 {
		resolved.Message += "; selected but not announced: " + strings.Join(silent, ", ")
	}
	return accepted, resolved
}

// NotAnnounced says why the speakers (layer 2 and BGP alike) announce none of a selected
// pool's addresses, "" when they do: speakers skip pools whose addresses do not parse (the
// same pool.ParseRanges), a pool of Elastic IPs has no addresses of its own, and a pool
// refused for overlapping an older one hands out nothing.
func NotAnnounced(p *v1alpha1.IPPool) string {
	if p.ElasticIPs() != nil || len(p.Spec.Addresses) == 0 {
		return "Elastic IPs, moved by the speakers' --aws-eip instead"
	}
	if _, err := pool.ParseRanges(p.Spec.Addresses); err != nil {
		return "invalid: " + err.Error()
	}
	if r := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); r != nil && r.Status == metav1.ConditionFalse && r.Reason == "Overlap" {
		return "overlaps an older pool"
	}
	return ""
}

// ListPools names pools for a condition message, the first eight of them.
func ListPools(pools []string) string {
	switch {
	case len(pools) == 0:
		return "no pool"
	case len(pools) > 8:
		return fmt.Sprintf("pools %s and %d more", strings.Join(pools[:8], ", "), len(pools)-8)
	}
	return "pools " + strings.Join(pools, ", ")
}
