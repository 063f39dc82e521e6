// Package announcements is the speaker's one writer of ServiceAnnouncements. Layer 2's
// reporter, BGP's announcer and BGP's reaper each own some entries of a ServiceAnnouncement
// (this node's layer 2 entries, this node's BGP entries, a dead node's BGP entries) and never
// the others': every write goes through Update, a read-modify-write on the resourceVersion
// retried on conflict, so concurrent writers on any number of nodes never drop each other's
// entries.
package announcements

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// +kubebuilder:rbac:groups=fairlead.dev,resources=serviceannouncements,verbs=get;list;watch;create;update

// conflictBackoff spaces the retries of a conflicting write. Every node advertising a Service
// (all of them, under externalTrafficPolicy: Cluster) writes its ServiceAnnouncement at about
// the same moment; client-go's DefaultRetry (5 tries 10 ms apart) runs out with a handful of
// writers, while a doubling, fully jittered wait spreads them (at most about 10 s in all).
var conflictBackoff = wait.Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 1}

// Writer reads and writes ServiceAnnouncements straight from the apiserver (never a cache: a
// read-modify-write on a stale copy only conflicts).
type Writer struct {
	c client.Client
}

// New returns a Writer on cfg.
func New(cfg *rest.Config) (*Writer, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return &Writer{c: c}, nil
}

// List returns every ServiceAnnouncement.
func (w *Writer) List(ctx context.Context) ([]v1alpha1.ServiceAnnouncement, error) {
	var list v1alpha1.ServiceAnnouncementList
	if err := w.c.List(ctx, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Update sets the entries of the ServiceAnnouncement of Service key to edit(current entries),
// put in canonical order (Sort), and returns the entries it read and those it left. A missing
// ServiceAnnouncement is created, owned by svc, when the edit leaves entries and svc is given
// (nil: the caller only removes). An unchanged one is not written. One that belongs to another
// Service of the same name (deleted, not yet collected) is an error: what is written into it
// would be lost with it, and the next attempt after garbage collection creates a new one. edit
// may run more than once (after a conflict), always on what was just read.
func (w *Writer) Update(ctx context.Context, key types.NamespacedName, svc *corev1.Service,
	edit func(have []v1alpha1.Announcement) []v1alpha1.Announcement) (before, after []v1alpha1.Announcement, err error) {
	err = retry.RetryOnConflict(conflictBackoff, func() error {
		var sa v1alpha1.ServiceAnnouncement
		err := w.c.Get(ctx, key, &sa)
		if apierrors.IsNotFound(err) {
			before, after = nil, Sort(edit(nil))
			if svc == nil || len(after) == 0 {
				after = nil
				return nil
			}
			sa = v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}}}}
			sa.Status.Announcements = after
			err := w.c.Create(ctx, &sa, client.FieldOwner("fairlead-speaker"))
			if apierrors.IsAlreadyExists(err) {
				// Another writer created it first: read it and edit that, as on a conflict.
				return apierrors.NewConflict(v1alpha1.GroupVersion.WithResource("serviceannouncements").GroupResource(), key.Name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		if svc != nil && !slices.ContainsFunc(sa.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == svc.UID }) {
			return fmt.Errorf("owned by another Service than %s (UID %s); waiting for garbage collection", key, svc.UID)
		}
		before = sa.Status.Announcements
		after = Sort(edit(slices.Clone(before)))
		if Equal(before, after) {
			return nil
		}
		sa.Status.Announcements = after
		err = w.c.Update(ctx, &sa, client.FieldOwner("fairlead-speaker"))
		if apierrors.IsNotFound(err) && svc == nil {
			return nil // gone meanwhile, and nothing was to be added
		}
		return err
	})
	return before, after, err
}

// Sort puts entries in the canonical order (address, protocol, node), so that equal sets
// compare equal and a rewrite changes nothing.
func Sort(as []v1alpha1.Announcement) []v1alpha1.Announcement {
	slices.SortStableFunc(as, func(x, y v1alpha1.Announcement) int {
		return strings.Compare(x.IP+"/"+x.Protocol+"/"+x.Node, y.IP+"/"+y.Protocol+"/"+y.Node)
	})
	return as
}

// Equal compares two lists of entries, Since included.
func Equal(a, b []v1alpha1.Announcement) bool {
	return slices.EqualFunc(a, b, func(x, y v1alpha1.Announcement) bool {
		return x.IP == y.IP && x.Node == y.Node && x.Protocol == y.Protocol && slices.Equal(x.Interfaces, y.Interfaces) &&
			(x.Since == nil) == (y.Since == nil) && (x.Since == nil || x.Since.Equal(y.Since))
	})
}
