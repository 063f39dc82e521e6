// Package plan computes, from the speaker's snapshot, which node answers for each external
// address by layer 2 and on which interfaces. Every speaker runs the same computation over the
// same snapshot (and the same live set from the failure detector), so they agree on one owner
// per address without coordinating. It is a pure function of the snapshot.
package plan

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// The speaker reads these to compute the plan.
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=fairlead.dev,resources=l2advertisements;ippools,verbs=get;list;watch

// Input is what the plan depends on.
type Input struct {
	Snapshot *snapshot.Snapshot
	// Alive is the failure detector's view; nil treats every node as alive.
	Alive func(node string) bool
}

// Announcement is the decision for one address.
type Announcement struct {
	IP netip.Addr
	// Owner is the node that answers; "" when no node is eligible.
	Owner string
	// Candidates are the nodes eligible for the address (the owner among them), sorted; shared
	// between announcements, not to be modified.
	Candidates []string
	// Interfaces the owner answers on; empty means every eligible interface.
	Interfaces []string
	// Services holding the address, "namespace/name", sorted.
	Services []string
	// Pool the address belongs to.
	Pool string
}

// Problem is an input the plan could not use; the rest of the plan is unaffected.
type Problem = snapshot.Problem

type compiledAd = v1alpha1.CompiledL2Advertisement

// Compute returns the decision for every address announced by layer 2, and the snapshot's
// problems.
func Compute(in Input) ([]Announcement, []Problem) {
	snap := in.Snapshot
	type holder struct {
		pool string
		svcs []*snapshot.Service
	}
	byIP := map[netip.Addr]*holder{}
	for _, svc := range snap.Services {
		for _, a := range svc.Addrs {
			h := byIP[a.IP]
			if h == nil {
				h = &holder{}
				byIP[a.IP] = h
			}
			h.pool = cmp.Or(h.pool, a.Pool)
			h.svcs = append(h.svcs, svc)
		}
	}

	// What depends on the pool only (its advertisements, the nodes they and the live set
	// allow) is worked out once per pool, not once per address.
	type poolView struct {
		selected []*compiledAd
		eligible *election.Eligibility
	}
	views := map[string]*poolView{}
	view := func(name string) *poolView {
		if v, ok := views[name]; ok {
			return v
		}
		// A pool that is gone is known by its name only, and selected by name only.
		p := snap.PoolObjects[name]
		if p == nil {
			p = &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
		}
		v := &poolView{}
		for _, ad := range snap.L2Advertisements {
			if ad.SelectsPool(p) {
				v.selected = append(v.selected, ad)
			}
		}
		if len(v.selected) > 0 {
			v.eligible = election.NewEligibility(snap.Nodes, election.Filter{
				Alive: in.Alive,
				Selects: func(n election.Node) bool {
					return slices.ContainsFunc(v.selected, func(ad *compiledAd) bool { return ad.SelectsNode(n.Labels) })
				},
			})
		}
		views[name] = v
		return v
	}

	var out []Announcement
	for ip, h := range byIP {
		if h.pool == "" {
			continue // not ours to announce: not from a pool we know
		}
		v := view(h.pool)
		if len(v.selected) == 0 {
			continue // the pool is announced by BGP only, or not at all
		}
		// An address shared by several Services must be answered by a node eligible for all of
		// them (the controller only lets compatible Services share).
		candidates := v.eligible.For(h.svcs[0].Election(snapshot.FamilyOf(ip)))
		if len(h.svcs) > 1 {
			candidates = slices.Clone(candidates) // shared between the pool's Services
			for _, svc := range h.svcs[1:] {
				el := v.eligible.For(svc.Election(snapshot.FamilyOf(ip)))
				candidates = slices.DeleteFunc(candidates, func(n string) bool { return !slices.Contains(el, n) })
			}
		}
		a := Announcement{IP: ip, Pool: h.pool, Candidates: candidates}
		for _, svc := range h.svcs {
			a.Services = append(a.Services, svc.Key)
		}
		slices.Sort(a.Services)
		if owner, ok := election.Owner(ip.String(), candidates); ok {
			a.Owner = owner
			var labels map[string]string
			if n := snap.NodeObjects[owner]; n != nil {
				labels = n.Labels
			}
			a.Interfaces = interfaces(v.selected, labels)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y Announcement) int { return x.IP.Compare(y.IP) })
	return out, snap.Problems
}

// interfaces merges the interface lists of the advertisements that select the owner: any of
// them allowing every interface allows every interface.
func interfaces(ads []*compiledAd, nodeLabels map[string]string) []string {
	var out []string
	for _, ad := range ads {
		if !ad.SelectsNode(nodeLabels) {
			continue
		}
		if len(ad.Object.Spec.Interfaces) == 0 {
			return nil
		}
		out = append(out, ad.Object.Spec.Interfaces...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// String renders the plan compactly for logs.
func String(as []Announcement) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s→%s", a.IP, a.Owner)
	}
	return b.String()
}
