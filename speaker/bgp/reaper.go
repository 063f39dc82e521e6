package bgp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// Members is the speakers' shared failure detector (speaker/members), as the reaper uses it.
type Members interface {
	AliveSet() map[string]bool
	Changes() <-chan struct{}
}

// A speaker that dies without SIGTERM (its node is gone) cannot remove its BGP entries from
// ServiceAnnouncements. The surviving speakers share a member list; the alive speaker with the
// lowest node name (one writer, no coordination needed beyond the list) removes the entries of
// speakers that list declares dead:
//   - only of a speaker it saw alive and then dead, or one it has not seen alive for
//     neverSeenGrace since it started (a speaker starting up may write its entries before it
//     joins the list; it does within seconds);
//   - only while it sees more than half the Nodes' speakers alive, so a speaker cut off from
//     the others does not take their entries away;
//   - once per death: a speaker that comes back writes its entries again itself.
const (
	neverSeenGrace = time.Minute
	reapInterval   = 30 * time.Second
)

type reaper struct {
	c       *Controller
	m       Members
	started time.Time
	seen    map[string]bool // nodes this speaker has seen alive
}

func (c *Controller) reapLoop(ctx context.Context) {
	if c.o.Members == nil {
		return
	}
	m, err := c.o.Members(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error(err, "no member list: dead speakers' BGP entries stay until they restart")
		}
		return
	}
	r := &reaper{c: c, m: m, started: time.Now(), seen: map[string]bool{}}
	changes := r.m.Changes()
	for {
		if err := r.round(ctx, time.Now()); err != nil && ctx.Err() == nil {
			c.log.Info("removing dead speakers' BGP entries failed; retrying", "err", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-time.After(reapInterval):
		}
	}
}

// deadFunc returns which nodes' entries may be removed now, or nil when this speaker is not
// the one to do it. nodes are the Nodes' names; a node named by an entry but gone from the
// Nodes (deleted with its speaker) counts as dead too.
func (r *reaper) deadFunc(alive map[string]bool, nodes []string, now time.Time) func(string) bool {
	for n := range alive {
		r.seen[n] = true
	}
	if len(alive) == 0 || slices.Min(keys(alive)) != r.c.o.Node {
		return nil // another speaker reaps
	}
	up := 0
	for _, n := range nodes {
		if alive[n] {
			up++
		}
	}
	if 2*up <= len(nodes) {
		return nil // possibly cut off from the majority: do nothing
	}
	grace := now.Sub(r.started) >= neverSeenGrace
	return func(n string) bool { return !alive[n] && (r.seen[n] || grace) }
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (r *reaper) round(ctx context.Context, now time.Time) error {
	var nodes []string
	for _, n := range r.c.o.Snapshots.Snapshot().Nodes {
		nodes = append(nodes, n.Name)
	}
	dead := r.deadFunc(r.m.AliveSet(), nodes, now)
	if dead == nil {
		return nil
	}
	list, err := r.c.o.Announcements.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, sa := range list {
		if !slices.ContainsFunc(sa.Status.Announcements, func(a v1alpha1.Announcement) bool { return deadEntry(a, dead) }) {
			continue
		}
		if err := r.remove(ctx, sa.Namespace, sa.Name, dead); err != nil {
			errs = append(errs, fmt.Errorf("ServiceAnnouncement %s/%s: %w", sa.Namespace, sa.Name, err))
		}
	}
	return errors.Join(errs...)
}

// deadEntry: a BGP entry of a dead speaker (layer 2 entries are the layer 2 owners' to move).
func deadEntry(a v1alpha1.Announcement, dead func(string) bool) bool {
	return a.Protocol == v1alpha1.ProtocolBGP && dead(a.Node)
}

// remove drops the dead nodes' BGP entries from one ServiceAnnouncement.
func (r *reaper) remove(ctx context.Context, ns, name string, dead func(string) bool) error {
	var removed []string
	_, _, err := r.c.o.Announcements.Update(ctx, types.NamespacedName{Namespace: ns, Name: name}, nil,
		func(have []v1alpha1.Announcement) []v1alpha1.Announcement {
			removed = nil
			return slices.DeleteFunc(have, func(a v1alpha1.Announcement) bool {
				if deadEntry(a, dead) {
					removed = append(removed, a.Node+" "+a.IP)
					return true
				}
				return false
			})
		})
	if err == nil && len(removed) > 0 {
		r.c.log.Info("removed a dead speaker's BGP entries", "serviceAnnouncement", ns+"/"+name, "entries", removed)
	}
	return err
}
