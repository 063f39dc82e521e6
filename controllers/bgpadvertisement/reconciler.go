// Package bgpadvertisement reports whether each BGPAdvertisement is usable: the controller
// compiles it once for the cluster with v1alpha1's Compile, against the Community objects'
// aliases (speakers run the same Compile and skip what fails it), and writes the answer to
// its status, with an Event and a log line when it changes.
package bgpadvertisement

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers/conditions"
	"github.com/fairlead-lb/fairlead/controllers/l2advertisement"
)

// +kubebuilder:rbac:groups=fairlead.dev,resources=bgpadvertisements,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=bgpadvertisements/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=fairlead.dev,resources=communities,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=bgppeers,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler writes BGPAdvertisements' conditions.
type Reconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder
}

// Setup registers the reconciler: an advertisement is re-checked when it changes, when a
// Community changes (its aliases decide Accepted), when a pool comes, goes or changes labels
// or validity, and when a BGPPeer comes or goes (which decide ResolvedRefs).
func Setup(mgr ctrl.Manager, r *Reconciler) error {
	allAds := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.BGPAdvertisementList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			return nil
		}
		out := make([]reconcile.Request, len(list.Items))
		for i, a := range list.Items {
			out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Name: a.Name}}
		}
		return out
	})
	// Speakers rewrite a BGPPeer's status at every session change; only its existence
	// matters here.
	peerComesOrGoes := predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }}
	return ctrl.NewControllerManagedBy(mgr).
		Named("bgpadvertisement").
		For(&v1alpha1.BGPAdvertisement{}).
		Watches(&v1alpha1.Community{}, allAds).
		Watches(&v1alpha1.IPPool{}, allAds).
		Watches(&v1alpha1.BGPPeer{}, allAds, builder.WithPredicates(peerComesOrGoes)).
		Complete(r)
}

// Reconcile converges one advertisement's status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ad v1alpha1.BGPAdvertisement
	if err := r.Client.Get(ctx, req.NamespacedName, &ad); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var comms v1alpha1.CommunityList
	if err := r.Client.List(ctx, &comms); err != nil {
		return ctrl.Result{}, err
	}
	var pools v1alpha1.IPPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return ctrl.Result{}, err
	}
	var peers v1alpha1.BGPPeerList
	if err := r.Client.List(ctx, &peers); err != nil {
		return ctrl.Result{}, err
	}
	objs := make([]*v1alpha1.Community, len(comms.Items))
	for i := range comms.Items {
		objs[i] = &comms.Items[i]
	}
	aliases, _ := v1alpha1.CompileCommunities(objs)
	peerNames := make([]string, len(peers.Items))
	for i, p := range peers.Items {
		peerNames[i] = p.Name
	}
	accepted, resolved := Conditions(&ad, aliases, pools.Items, peerNames)

	w := conditions.Writer{Client: r.Client, Recorder: r.Recorder, Kind: "BGPAdvertisement", Rest: "advertise the rest",
		Of: func(o client.Object) conditions.Status {
			a := o.(*v1alpha1.BGPAdvertisement)
			return conditions.Status{ObservedGeneration: &a.Status.ObservedGeneration, Conditions: &a.Status.Conditions}
		}}
	return ctrl.Result{}, w.Write(ctx, &ad, accepted, resolved)
}

// Conditions computes Accepted and ResolvedRefs for ad given the Community aliases, the
// cluster's pools and the names of its BGPPeers.
func Conditions(ad *v1alpha1.BGPAdvertisement, aliases v1alpha1.CommunityAliases, pools []v1alpha1.IPPool, peers []string) (accepted, resolved metav1.Condition) {
	accepted = metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonAccepted, Message: "Speakers advertise the selected pools' addresses"}
	resolved = metav1.Condition{Type: v1alpha1.ConditionResolvedRefs}
	poolObjs := make([]*v1alpha1.IPPool, len(pools))
	for i := range pools {
		poolObjs[i] = &pools[i]
	}
	c, err := ad.Compile(aliases, poolObjs)
	if err != nil {
		accepted.Status, accepted.Reason = metav1.ConditionFalse, v1alpha1.ReasonInvalid
		accepted.Message = "Ignored by every speaker: " + err.Error()
		resolved.Status, resolved.Reason = metav1.ConditionUnknown, v1alpha1.ReasonInvalid
		resolved.Message = "Not checked: the advertisement is invalid"
		return accepted, resolved
	}
	var missingPools, missingPeers, advertised, silent []string
	for _, name := range ad.Spec.IPPools {
		if !slices.ContainsFunc(pools, func(p v1alpha1.IPPool) bool { return p.Name == name }) {
			missingPools = append(missingPools, name)
		}
	}
	var to []string
	for _, name := range ad.Spec.Peers {
		if slices.Contains(peers, name) {
			to = append(to, name)
		} else {
			missingPeers = append(missingPeers, name)
		}
	}
	pools = slices.Clone(pools)
	slices.SortFunc(pools, func(a, b v1alpha1.IPPool) int { return strings.Compare(a.Name, b.Name) })
	for i := range pools {
		if !c.SelectsPool(pools[i].Name, pools[i].Labels) {
			continue
		}
		// The BGP speakers read the same snapshot of pools as layer 2 (speaker/snapshot).
		if why := l2advertisement.NotAnnounced(&pools[i]); why != "" {
			silent = append(silent, fmt.Sprintf("%s (%s)", pools[i].Name, why))
		} else {
			advertised = append(advertised, pools[i].Name)
		}
	}
	what := "advertising " + l2advertisement.ListPools(advertised)
	switch {
	case len(ad.Spec.Peers) == 0:
		what += " to every peer"
	case len(to) == 0:
		what += " to no peer"
	default:
		what += " to peers " + strings.Join(to, ", ")
	}
	var missing []string
	if len(missingPools) > 0 {
		missing = append(missing, "No IPPool named "+strings.Join(missingPools, ", "))
	}
	if len(missingPeers) > 0 {
		missing = append(missing, "No BGPPeer named "+strings.Join(missingPeers, ", "))
	}
	switch {
	case len(missing) > 0:
		resolved.Status, resolved.Reason = metav1.ConditionFalse, v1alpha1.ReasonPoolNotFound
		if len(missingPools) == 0 {
			resolved.Reason = v1alpha1.ReasonPeerNotFound
		}
		resolved.Message = strings.Join(missing, "; ") + "; " + what
	case len(advertised) == 0 && len(silent) == 0:
		resolved.Status, resolved.Reason = metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected
		resolved.Message = "No IPPool matches ipPools or ipPoolSelectors: nothing is advertised"
	case len(advertised) == 0:
		resolved.Status, resolved.Reason = metav1.ConditionFalse, v1alpha1.ReasonNoPoolSelected
		resolved.Message = "Nothing is advertised"
	default:
		resolved.Status, resolved.Reason = metav1.ConditionTrue, v1alpha1.ReasonResolved
		resolved.Message = strings.ToUpper(what[:1]) + what[1:]
	}
	if len(silent) > 0 {
		resolved.Message += "; selected but not advertised: " + strings.Join(silent, ", ")
	}
	return accepted, resolved
}
