// Package report makes "where is my IP?" answerable from the API: each speaker keeps its own
// entries in the ServiceAnnouncement of every Service whose address it answers for, removes
// them when it stops, and records an Event on the Service when an address moves to it.
//
// Each speaker writes only what it knows first-hand (its own node, its own interfaces), and
// removes other nodes' layer 2 entries for an address it has taken over: those nodes may be
// dead and unable to clean up. Writing is best effort and off the announcing path: a slow or
// absent apiserver delays the report, never an ARP reply.
package report

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/announcements"
	"github.com/fairlead-lb/fairlead/speaker/l2/plan"
)

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reporter writes this node's layer 2 announcements.
type Reporter struct {
	Node string
	// Client lists ServiceAnnouncements (from a cache), to find those listing this node.
	Client client.Reader
	// Writer writes them: the speaker's one writer, shared with BGP.
	Writer *announcements.Writer
	// Service returns a Service from the speaker's informer.
	Service func(namespace, name string) (*corev1.Service, error)
	// Announced reports where each address is answered now (the responder's view).
	Announced func() map[netip.Addr][]string
	Recorder  record.EventRecorder
	Log       logr.Logger
	// Resync is how often everything is rewritten even without changes (after API errors).
	Resync time.Duration

	mu   sync.Mutex
	plan []plan.Announcement
	kick chan struct{}
	once sync.Once
}

func (r *Reporter) init() {
	r.once.Do(func() { r.kick = make(chan struct{}, 1) })
}

// Update hands the reporter the latest plan.
func (r *Reporter) Update(p []plan.Announcement) {
	r.init()
	r.mu.Lock()
	r.plan = p
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run writes reports until ctx ends.
func (r *Reporter) Run(ctx context.Context) error {
	r.init()
	if r.Resync <= 0 {
		r.Resync = 10 * time.Second
	}
	retry := time.Second
	for {
		wait := r.Resync
		if err := r.sync(ctx); err != nil {
			r.Log.Info("writing ServiceAnnouncements failed; retrying", "err", err.Error(), "in", retry)
			wait = retry
			retry = min(2*retry, 30*time.Second)
		} else {
			retry = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
			// Let the responder open its sockets first: only what is answered is reported.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		case <-time.After(wait):
		}
	}
}

func isL2(a v1alpha1.Announcement) bool {
	return a.Protocol == v1alpha1.ProtocolARP || a.Protocol == v1alpha1.ProtocolNDP
}

func protocol(ip netip.Addr) string {
	if ip.Is4() {
		return v1alpha1.ProtocolARP
	}
	return v1alpha1.ProtocolNDP
}

func (r *Reporter) sync(ctx context.Context) error {
	r.mu.Lock()
	p := r.plan
	r.mu.Unlock()
	announced := r.Announced()

	// What this node should be listed for, per Service.
	want := map[client.ObjectKey][]v1alpha1.Announcement{}
	for _, a := range p {
		if a.Owner != r.Node {
			continue
		}
		ifs := announced[a.IP]
		if len(ifs) == 0 {
			continue // planned but not answered yet (no usable interface): not true to report
		}
		for _, svc := range a.Services {
			ns, name, _ := strings.Cut(svc, "/")
			k := client.ObjectKey{Namespace: ns, Name: name}
			want[k] = append(want[k], v1alpha1.Announcement{IP: a.IP.String(), Node: r.Node, Protocol: protocol(a.IP), Interfaces: ifs})
		}
	}
	var errs []error
	var list v1alpha1.ServiceAnnouncementList
	if err := r.Client.List(ctx, &list); err != nil {
		return err
	}
	have := map[client.ObjectKey]*v1alpha1.ServiceAnnouncement{}
	for i := range list.Items {
		sa := &list.Items[i]
		have[client.ObjectKeyFromObject(sa)] = sa
	}
	keys := map[client.ObjectKey]bool{}
	for k := range want {
		keys[k] = true
	}
	for k, sa := range have {
		if slices.ContainsFunc(sa.Status.Announcements, func(a v1alpha1.Announcement) bool { return isL2(a) && a.Node == r.Node }) {
			keys[k] = true
		}
	}
	for k := range keys {
		if err := r.syncOne(ctx, k, have[k], want[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d ServiceAnnouncements: %v", len(errs), errs)
	}
	return nil
}

// syncOne makes sa list exactly mine as this node's layer 2 entries, drops other nodes' layer 2
// entries for those addresses, and records Events for addresses new to this node. sa is the
// cached copy: when it already says so, nothing is read or written.
func (r *Reporter) syncOne(ctx context.Context, k client.ObjectKey, sa *v1alpha1.ServiceAnnouncement, mine []v1alpha1.Announcement) error {
	svc, err := r.Service(k.Namespace, k.Name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			r.Writer.Forget(k)
			return nil // the ServiceAnnouncement goes with the Service (owner reference)
		}
		return err
	}
	type move struct {
		a    v1alpha1.Announcement
		from []string
	}
	var moves []move
	edit := func(old []v1alpha1.Announcement) []v1alpha1.Announcement {
		moves = nil
		myIPs := map[string]bool{}
		for _, a := range mine {
			myIPs[a.IP] = true
		}
		var next []v1alpha1.Announcement
		for _, a := range old {
			if isL2(a) && (a.Node == r.Node || myIPs[a.IP]) {
				continue
			}
			next = append(next, a)
		}
		now := metav1.Now()
		for _, a := range mine {
			prev := slices.IndexFunc(old, func(o v1alpha1.Announcement) bool { return isL2(o) && o.IP == a.IP && o.Node == r.Node })
			if prev >= 0 && old[prev].Since != nil {
				a.Since = old[prev].Since
			} else {
				a.Since = &now
				var from []string
				for _, o := range old {
					if isL2(o) && o.IP == a.IP && o.Node != r.Node {
						from = append(from, o.Node)
					}
				}
				moves = append(moves, move{a, from})
			}
			next = append(next, a)
		}
		return next
	}
	var cached []v1alpha1.Announcement
	if sa != nil {
		cached = sa.Status.Announcements
	}
	if want := announcements.Sort(edit(slices.Clone(cached))); (sa != nil && announcements.Equal(cached, want)) || (sa == nil && len(want) == 0) {
		return nil
	}
	before, after, err := r.Writer.Update(ctx, k, svc, edit)
	if err != nil || announcements.Equal(before, after) {
		return err
	}
	for _, m := range moves {
		msg := fmt.Sprintf("%s announced by %s via %s on %s", m.a.IP, r.Node, m.a.Protocol, strings.Join(m.a.Interfaces, ","))
		reason := "L2Announced"
		if len(m.from) > 0 {
			reason = "L2Moved"
			msg += ", taking over from " + strings.Join(m.from, ",")
		}
		r.Recorder.Event(svc, corev1.EventTypeNormal, reason, msg)
	}
	return nil
}
