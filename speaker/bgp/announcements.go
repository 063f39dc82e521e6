package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/announcements"
)

// Each speaker lists itself in the ServiceAnnouncement of every Service whose address it
// advertises to at least one established peer, one BGP entry per address. It owns exactly its
// own node's BGP entries: the layer 2 reporter's entries and other nodes' are carried over
// untouched, through the speaker's one writer (speaker/announcements), so concurrent writers
// of one ServiceAnnouncement never drop each other's entries.

// announcedAddrs returns, per Service (namespace/name), the addresses this node advertises to
// at least one established peer now.
func announcedAddrs(desired map[string]*Session, advertised map[string]map[netip.Prefix]bool) map[string]map[netip.Addr]bool {
	out := map[string]map[netip.Addr]bool{}
	for peer, s := range desired {
		out1 := advertised[peer]
		if s.Invalid != "" || out1 == nil {
			continue
		}
		for sa, prefix := range s.Carries {
			if !out1[prefix] {
				continue
			}
			if out[sa.Service] == nil {
				out[sa.Service] = map[netip.Addr]bool{}
			}
			out[sa.Service][sa.Addr] = true
		}
	}
	return out
}

// announceLoop keeps this node's BGP entries current until ctx ends.
func (c *Controller) announceLoop(ctx context.Context) {
	// Entries a previous run of this speaker left behind (it crashed) are found once here;
	// from then on the speaker knows which ServiceAnnouncements it wrote.
	listed := false
	backoff := time.Second
	// Unchanged entries are not even read again, except on a slow full round that repairs
	// what someone else may have changed.
	const full = 5 * time.Minute
	lastFull := time.Time{}
	for {
		wait := 30 * time.Second
		err := func() error {
			if !listed {
				if err := c.findReported(ctx); err != nil {
					return err
				}
				listed = true
			}
			force := time.Since(lastFull) >= full
			if force {
				lastFull = time.Now()
			}
			return c.announce(ctx, announcedAddrs(c.desiredNow(), c.mgr.Advertised()), force)
		}()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Info("writing ServiceAnnouncements failed; retrying", "err", err.Error(), "in", backoff)
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-c.announceCh:
		case <-time.After(wait):
		}
	}
}

func (c *Controller) desiredNow() map[string]*Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.desired
}

func (c *Controller) findReported(ctx context.Context) error {
	list, err := c.o.Announcements.List(ctx)
	if err != nil {
		return err
	}
	for _, sa := range list {
		if slices.ContainsFunc(sa.Status.Announcements, c.mine) {
			c.reported[types.NamespacedName{Namespace: sa.Namespace, Name: sa.Name}] = "(unknown)"
		}
	}
	return nil
}

func (c *Controller) mine(a v1alpha1.Announcement) bool {
	return a.Protocol == v1alpha1.ProtocolBGP && a.Node == c.o.Node
}

// announce makes this node's BGP entries list exactly want (namespace/name → addresses),
// in the Services it lists and in those it listed before. Unless force, a ServiceAnnouncement
// last written with the same entries for the same Service is left alone.
func (c *Controller) announce(ctx context.Context, want map[string]map[netip.Addr]bool, force bool) error {
	keys := map[types.NamespacedName]bool{}
	for k := range c.reported {
		keys[k] = true
	}
	for k := range want {
		ns, name, _ := strings.Cut(k, "/")
		keys[types.NamespacedName{Namespace: ns, Name: name}] = true
	}
	var errs []error
	for k := range keys {
		addrs := want[k.String()]
		sig := c.signature(k, addrs)
		if had, ok := c.reported[k]; !force && ok && had == sig {
			continue
		}
		n, err := c.announceOne(ctx, k, addrs)
		if err != nil {
			errs = append(errs, fmt.Errorf("ServiceAnnouncement %s: %w", k, err))
			continue
		}
		if n > 0 {
			c.reported[k] = sig
		} else {
			delete(c.reported, k)
		}
	}
	return errors.Join(errs...)
}

// signature identifies what was written for k: the Service's UID (a Service deleted and
// created again gets a new ServiceAnnouncement) and the addresses.
func (c *Controller) signature(k types.NamespacedName, addrs map[netip.Addr]bool) string {
	var b strings.Builder
	if svc, err := c.o.Snapshots.Service(k.Namespace, k.Name); err == nil {
		b.WriteString(string(svc.UID))
	}
	for _, a := range slices.SortedFunc(maps.Keys(addrs), netip.Addr.Compare) {
		b.WriteString(" " + a.String())
	}
	return b.String()
}

// announceOne writes k's ServiceAnnouncement so that this node's BGP entries are addrs, and
// returns how many it lists now.
func (c *Controller) announceOne(ctx context.Context, k types.NamespacedName, addrs map[netip.Addr]bool) (int, error) {
	var svc *corev1.Service
	if len(addrs) > 0 {
		var err error
		svc, err = c.o.Snapshots.Service(k.Namespace, k.Name)
		if apierrors.IsNotFound(err) {
			c.o.Announcements.Forget(k)
			return 0, nil // gone meanwhile: its ServiceAnnouncement goes with it (owner reference)
		}
		if err != nil {
			return 0, err
		}
	}
	_, _, err := c.o.Announcements.Update(ctx, k, svc, func(have []v1alpha1.Announcement) []v1alpha1.Announcement {
		return c.merge(have, addrs)
	})
	return len(addrs), err
}

// merge returns have with this node's BGP entries replaced by one per address in addrs; an
// entry kept keeps its Since.
func (c *Controller) merge(have []v1alpha1.Announcement, addrs map[netip.Addr]bool) []v1alpha1.Announcement {
	var next []v1alpha1.Announcement
	since := map[string]*metav1.Time{}
	for _, a := range have {
		if c.mine(a) {
			since[a.IP] = a.Since
			continue
		}
		next = append(next, a)
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for _, addr := range slices.SortedFunc(maps.Keys(addrs), netip.Addr.Compare) {
		a := v1alpha1.Announcement{IP: addr.String(), Node: c.o.Node, Protocol: v1alpha1.ProtocolBGP, Since: since[addr.String()]}
		if a.Since == nil {
			a.Since = &now
		}
		next = append(next, a)
	}
	return announcements.Sort(next)
}

// withdrawAnnouncements removes all of this node's BGP entries: the speaker is stopping.
func (c *Controller) withdrawAnnouncements(ctx context.Context) {
	if err := c.announce(ctx, nil, true); err != nil {
		c.log.Error(err, "removing this node's BGP entries from ServiceAnnouncements")
	}
}
