// Package conditions writes the verdict of a controller that validates an object the speakers
// use (Accepted, ResolvedRefs): the conditions and observed generation in its status, one
// status patch when they changed, and a log line and an Event when a condition turns False or
// recovers. The L2Advertisement and BGPAdvertisement reconcilers share it.
package conditions

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Status points into an object's status.
type Status struct {
	ObservedGeneration *int64
	Conditions         *[]metav1.Condition
}

// Writer writes one kind's verdicts.
type Writer struct {
	Client   client.Client
	Recorder recorder.EventRecorder
	// Kind names the objects in log lines; Rest says what the speakers still do meanwhile
	// ("advertise the rest").
	Kind, Rest string
	// Of returns where obj keeps its status.
	Of func(obj client.Object) Status
}

// Write sets conds (for obj's current generation) and patches obj's status if anything
// changed. The Events follow the patch, so none tells of a verdict the status does not show.
func (w *Writer) Write(ctx context.Context, obj client.Object, conds ...metav1.Condition) error {
	base := obj.DeepCopyObject().(client.Object)
	was, now := w.Of(base), w.Of(obj)
	var changed []metav1.Condition
	for _, c := range conds {
		c.ObservedGeneration = obj.GetGeneration()
		prev := meta.FindStatusCondition(*was.Conditions, c.Type)
		if prev == nil || prev.Status != c.Status || prev.Reason != c.Reason || prev.Message != c.Message {
			changed = append(changed, c)
		}
		meta.SetStatusCondition(now.Conditions, c)
	}
	*now.ObservedGeneration = obj.GetGeneration()
	if *was.ObservedGeneration == *now.ObservedGeneration && equality.Semantic.DeepEqual(*was.Conditions, *now.Conditions) {
		return nil
	}
	if err := w.Client.Status().Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		return err
	}
	l := log.FromContext(ctx)
	for _, c := range changed {
		prev := meta.FindStatusCondition(*was.Conditions, c.Type)
		switch {
		case c.Status == metav1.ConditionFalse:
			l.Info(w.Kind+" problem: speakers "+w.Rest, "condition", c.Type, "reason", c.Reason, "message", c.Message)
			w.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, c.Reason, "Validate", "%s", c.Message)
		case prev != nil && prev.Status == metav1.ConditionFalse:
			// Recovered: say so once; a healthy object created healthy files no Event.
			l.Info(w.Kind+" problem resolved", "condition", c.Type, "message", c.Message)
			w.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, c.Reason, "Validate", "%s", c.Message)
		}
	}
	return nil
}
