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
	"sync"
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

// Writer writes ServiceAnnouncements through the apiserver. It remembers what it last read or
// wrote of each one and writes on that copy first: the resourceVersion makes a stale copy fail
// with a conflict, never win, and only then is the object read (straight from the apiserver:
// a read-modify-write on a cache that has not caught up would only conflict again). A node
// that alone writes a ServiceAnnouncement, the common case, so spends one request per change
// instead of a GET and a write; a new address is a single create, not a GET that 404s first.
// (An edit that changes nothing from the remembered copy still reads: others may have changed
// the object since, a reaper removing this node's entries.)
type Writer struct {
	c client.Client

	mu   sync.Mutex
	last map[types.NamespacedName]*v1alpha1.ServiceAnnouncement
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
	return &Writer{c: c, last: map[types.NamespacedName]*v1alpha1.ServiceAnnouncement{}}, nil
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
// may run more than once (after a conflict); what it returns is only written if the entries it
// was given were current.
func (w *Writer) Update(ctx context.Context, key types.NamespacedName, svc *corev1.Service,
	edit func(have []v1alpha1.Announcement) []v1alpha1.Announcement) (before, after []v1alpha1.Announcement, err error) {
	if svc == nil {
		// Only removing, typically for a Service that is gone: nothing worth keeping after.
		defer w.forget(key)
	}
	// First attempt on the remembered copy, or, for one never seen, a create: no read.
	if before, after, done, err := w.blind(ctx, key, svc, edit); done {
		return before, after, err
	}
	err = retry.RetryOnConflict(conflictBackoff, func() error {
		var sa v1alpha1.ServiceAnnouncement
		err := w.c.Get(ctx, key, &sa)
		if apierrors.IsNotFound(err) {
			w.forget(key)
			before, after = nil, Sort(edit(nil))
			if svc == nil || len(after) == 0 {
				after = nil
				return nil
			}
			return w.create(ctx, key, svc, after)
		}
		if err != nil {
			return err
		}
		w.remember(&sa)
		before, after, _, err = w.write(ctx, &sa, svc, edit)
		if apierrors.IsNotFound(err) && svc == nil {
			return nil // gone meanwhile, and nothing was to be added
		}
		return err
	})
	return before, after, err
}

// blind makes the first attempt without reading: done is false when it could not tell (a
// stale copy, one created meanwhile by another writer) and Update must read and retry.
func (w *Writer) blind(ctx context.Context, key types.NamespacedName, svc *corev1.Service,
	edit func(have []v1alpha1.Announcement) []v1alpha1.Announcement) (before, after []v1alpha1.Announcement, done bool, err error) {
	w.mu.Lock()
	last := w.last[key]
	if last != nil {
		last = last.DeepCopy()
	}
	w.mu.Unlock()
	if last == nil {
		if svc == nil {
			return nil, nil, false, nil // only removing: nothing to create, read whether it exists
		}
		after = Sort(edit(nil))
		if len(after) == 0 {
			return nil, nil, false, nil
		}
		err = w.create(ctx, key, svc, after)
		if apierrors.IsConflict(err) {
			return nil, nil, false, nil
		}
		return nil, after, true, err
	}
	if svc != nil && !ownedBy(last, svc) {
		return nil, nil, false, nil // perhaps since replaced by one of svc: read it
	}
	before, after, written, err := w.write(ctx, last, svc, edit)
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		w.forget(key)
		return nil, nil, false, nil
	case err == nil && !written:
		// Unchanged from what this Writer last saw, which others may have changed since (a
		// reaper removing this node's entries): only a read tells whether to write.
		return nil, nil, false, nil
	}
	return before, after, true, err
}

func ownedBy(sa *v1alpha1.ServiceAnnouncement, svc *corev1.Service) bool {
	return slices.ContainsFunc(sa.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == svc.UID })
}

// write edits sa's entries and writes them on sa's resourceVersion, unless unchanged (written
// false).
func (w *Writer) write(ctx context.Context, sa *v1alpha1.ServiceAnnouncement, svc *corev1.Service,
	edit func(have []v1alpha1.Announcement) []v1alpha1.Announcement) (before, after []v1alpha1.Announcement, written bool, err error) {
	if svc != nil && !ownedBy(sa, svc) {
		return nil, nil, false, fmt.Errorf("owned by another Service than %s (UID %s); waiting for garbage collection",
			client.ObjectKeyFromObject(sa), svc.UID)
	}
	before = sa.Status.Announcements
	after = Sort(edit(slices.Clone(before)))
	if Equal(before, after) {
		return before, after, false, nil
	}
	sa.Status.Announcements = after
	if err := w.c.Update(ctx, sa, client.FieldOwner("fairlead-speaker")); err != nil {
		return nil, nil, false, err
	}
	w.remember(sa)
	return before, after, true, nil
}

// create creates the ServiceAnnouncement of key, owned by svc, with entries as. One created
// meanwhile by another writer is a conflict: read it and edit that.
func (w *Writer) create(ctx context.Context, key types.NamespacedName, svc *corev1.Service, as []v1alpha1.Announcement) error {
	sa := v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}}}}
	sa.Status.Announcements = as
	err := w.c.Create(ctx, &sa, client.FieldOwner("fairlead-speaker"))
	if apierrors.IsAlreadyExists(err) {
		return apierrors.NewConflict(v1alpha1.GroupVersion.WithResource("serviceannouncements").GroupResource(), key.Name, err)
	}
	if err == nil {
		w.remember(&sa)
	}
	return err
}

// remember keeps what the next blind attempt needs of sa: its identity, resourceVersion,
// owners and entries (not managed fields and the like: a speaker may write thousands).
func (w *Writer) remember(sa *v1alpha1.ServiceAnnouncement) {
	keep := &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name,
		UID: sa.UID, ResourceVersion: sa.ResourceVersion, OwnerReferences: slices.Clone(sa.OwnerReferences)}}
	keep.Status.Announcements = slices.Clone(sa.Status.Announcements)
	w.mu.Lock()
	w.last[client.ObjectKeyFromObject(sa)] = keep
	w.mu.Unlock()
}

// Forget drops what the Writer keeps of key's ServiceAnnouncement: its callers say so when the
// Service is gone, so that what a long-running speaker keeps is bounded by the Services that
// exist, not by every one it ever wrote for.
func (w *Writer) Forget(key types.NamespacedName) { w.forget(key) }

func (w *Writer) forget(key types.NamespacedName) {
	w.mu.Lock()
	delete(w.last, key)
	w.mu.Unlock()
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
