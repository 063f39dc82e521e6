// Package bgppeer sums up each BGPPeer for people: the speakers write one status entry per
// node (state, error, prefixes), and this controller adds what `kubectl get bgppeers` shows
// from them — Accepted and Established conditions, "established/total" sessions, prefixes sent
// and uptime — with an Event and a log line when the spec is refused or a refusal clears.
package bgppeer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// +kubebuilder:rbac:groups=fairlead.dev,resources=bgppeers,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=bgppeers/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=fairlead.dev,resources=bfdprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler writes BGPPeers' conditions and summary.
type Reconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder
}

// Setup registers the reconciler: a peer is summed up again when it or its status changes
// (the speakers' entries) and when a BFDProfile comes or goes.
func Setup(mgr ctrl.Manager, r *Reconciler) error {
	allPeers := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.BGPPeerList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			return nil
		}
		out := make([]reconcile.Request, len(list.Items))
		for i, p := range list.Items {
			out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("bgppeer").
		For(&v1alpha1.BGPPeer{}).
		Watches(&v1alpha1.BFDProfile{}, allPeers).
		Complete(r)
}

// Reconcile converges one peer's conditions and summary.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p v1alpha1.BGPPeer
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var profiles v1alpha1.BFDProfileList
	if err := r.Client.List(ctx, &profiles); err != nil {
		return ctrl.Result{}, err
	}
	base := p.DeepCopy()
	accepted := Accepted(&p, profiles.Items)
	established := Summarize(&p.Status)
	var changed *metav1.Condition
	for _, c := range []metav1.Condition{accepted, established} {
		c.ObservedGeneration = p.Generation
		prev := meta.FindStatusCondition(base.Status.Conditions, c.Type)
		if c.Type == v1alpha1.ConditionAccepted && (prev == nil || prev.Status != c.Status || prev.Message != c.Message) {
			changed = &c
		}
		meta.SetStatusCondition(&p.Status.Conditions, c)
	}
	if equality.Semantic.DeepEqual(base.Status, p.Status) {
		return ctrl.Result{}, nil
	}
	// A merge patch of the fields computed here only: the nodes' entries belong to the
	// speakers (their own field managers) and are not in the patch.
	if err := r.Client.Status().Patch(ctx, &p, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, err
	}
	if changed != nil {
		l := log.FromContext(ctx)
		prev := meta.FindStatusCondition(base.Status.Conditions, changed.Type)
		switch {
		case changed.Status == metav1.ConditionFalse:
			l.Info("BGPPeer refused: no node runs its session", "peer", p.Name, "reason", changed.Reason, "message", changed.Message)
			r.Recorder.Eventf(&p, nil, corev1.EventTypeWarning, changed.Reason, "Validate", "%s", changed.Message)
		case prev != nil && prev.Status == metav1.ConditionFalse:
			l.Info("BGPPeer accepted again", "peer", p.Name)
			r.Recorder.Eventf(&p, nil, corev1.EventTypeNormal, changed.Reason, "Validate", "%s", changed.Message)
		}
	}
	return ctrl.Result{}, nil
}

// Accepted checks the spec as the speakers will, and that its BFDProfile exists.
func Accepted(p *v1alpha1.BGPPeer, profiles []v1alpha1.BFDProfile) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAccepted,
		Message: "The selected nodes run the session"}
	if err := p.Validate(); err != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalid, "No node runs the session: "+err.Error()
		return c
	}
	if n := p.Spec.BFDProfile; n != "" && !slices.ContainsFunc(profiles, func(b v1alpha1.BFDProfile) bool { return b.Name == n }) {
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonBFDProfileNotFound
		c.Message = fmt.Sprintf("No node runs the session: bfdProfile %q not found", n)
	}
	return c
}

// Summarize fills the summary fields from the nodes' entries and returns the Established
// condition.
func Summarize(st *v1alpha1.BGPPeerStatus) metav1.Condition {
	var up int
	var prefixes int32
	var since *metav1.Time
	var down []string
	for _, n := range st.Nodes {
		prefixes += n.PrefixesSent
		if n.State == "Established" {
			up++
			if n.LastTransitionTime != nil && (since == nil || n.LastTransitionTime.After(since.Time)) {
				since = n.LastTransitionTime.DeepCopy()
			}
			continue
		}
		d := n.Node + ": " + n.State
		if n.LastError != "" {
			d += " (" + n.LastError + ")"
		}
		down = append(down, d)
	}
	st.Sessions = fmt.Sprintf("%d/%d", up, len(st.Nodes))
	st.PrefixesSent = prefixes
	st.EstablishedSince = nil
	c := metav1.Condition{Type: v1alpha1.ConditionEstablished}
	switch {
	case len(st.Nodes) == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonNoSessions, "No node runs the session (no speaker selected, or none running BGP)"
	case len(down) > 0:
		slices.Sort(down)
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonNotEstablished
		c.Message = truncate(fmt.Sprintf("%d of %d sessions down: %s", len(down), len(st.Nodes), strings.Join(down, "; ")))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonAllEstablished
		c.Message = fmt.Sprintf("All %d sessions established", up)
		st.EstablishedSince = since
	}
	return c
}

// truncate keeps a condition message within the API's 32768-byte limit with room to spare.
func truncate(s string) string {
	const max = 4096
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
