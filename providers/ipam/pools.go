// Package ipam is the controller's allocation state: the IPPools compiled into the pure
// allocator of providers/pool, which pools a Service may use, and the translation of a
// Service into an allocation request. The Service and IPPool reconcilers share one State.
package ipam

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// compiledPool is an IPPool validated and turned into what allocation needs.
type compiledPool struct {
	name         string
	pool         *pool.Pool
	autoAssign   bool
	priority     int64 // lower first; pools without one sort after all that have one
	namespaces   sets.Set[string]
	nsSelectors  []labels.Selector
	svcSelectors []labels.Selector
	deleting     bool
	ipMode       corev1.LoadBalancerIPMode // VIP or Proxy
	// elastic is set for a pool of Elastic IPs: pool is nil then, and the addresses come from
	// the cloud provider, not from the allocator.
	elastic *v1alpha1.ElasticIPs
}

// compileElastic validates a pool of Elastic IPs: only who may use it is checked here; the
// addresses are the cloud's.
func compileElastic(p *v1alpha1.IPPool) (*compiledPool, error) {
	c := &compiledPool{name: p.Name, priority: 1 << 40, deleting: !p.DeletionTimestamp.IsZero(), elastic: p.ElasticIPs(), ipMode: p.IPMode()}
	if a := p.Spec.AllocateTo; a != nil {
		var err error
		c.namespaces = sets.New(a.Namespaces...)
		if c.nsSelectors, err = selectors(a.NamespaceSelectors, "namespaceSelectors"); err != nil {
			return nil, err
		}
		if c.svcSelectors, err = selectors(a.ServiceSelectors, "serviceSelectors"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// compile validates one IPPool on its own (syntax, ranges, selectors).
func compile(p *v1alpha1.IPPool) (*compiledPool, error) {
	ranges, err := pool.ParseRanges(p.Spec.Addresses)
	if err != nil {
		return nil, err
	}
	c := &compiledPool{
		name:       p.Name,
		pool:       newPool(p, ranges),
		autoAssign: p.AutoAssigns(),
		priority:   1 << 40,
		deleting:   !p.DeletionTimestamp.IsZero(),
		ipMode:     p.IPMode(),
	}
	if p.Spec.Priority != nil {
		c.priority = int64(*p.Spec.Priority)
	}
	if a := p.Spec.AllocateTo; a != nil {
		c.namespaces = sets.New(a.Namespaces...)
		if c.nsSelectors, err = selectors(a.NamespaceSelectors, "namespaceSelectors"); err != nil {
			return nil, err
		}
		if c.svcSelectors, err = selectors(a.ServiceSelectors, "serviceSelectors"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func selectors(in []metav1.LabelSelector, field string) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		s, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, fmt.Errorf("allocateTo.%s[%d]: %w", field, i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// allows reports whether a Service in namespace ns (with those namespace labels) and with
// labels svcLabels may use the pool. It returns a reason when it may not.
func (c *compiledPool) allows(ns string, nsLabels, svcLabels labels.Set) (bool, string) {
	if len(c.namespaces) > 0 || len(c.nsSelectors) > 0 {
		ok := c.namespaces.Has(ns)
		for _, s := range c.nsSelectors {
			ok = ok || s.Matches(nsLabels)
		}
		if !ok {
			return false, fmt.Sprintf("pool %q does not allocate to namespace %q", c.name, ns)
		}
	}
	if len(c.svcSelectors) > 0 {
		ok := false
		for _, s := range c.svcSelectors {
			ok = ok || s.Matches(svcLabels)
		}
		if !ok {
			return false, fmt.Sprintf("pool %q's serviceSelectors do not match the Service", c.name)
		}
	}
	return true, ""
}

// PoolProblem is why an IPPool is not in use.
type PoolProblem struct {
	Reason  string // Invalid, Overlap
	Message string
}

// compilePools is compileAll told which pools are in use now, so that an overlap between two
// pools created in the same second never displaces the one already handing out addresses.
func (s *State) compilePools(items []v1alpha1.IPPool) (map[string]*compiledPool, map[string]*compiledPool, map[string]PoolProblem) {
	s.mu.Lock()
	loaded := make(map[string][]pool.Range, len(s.pools))
	for name, c := range s.pools {
		loaded[name] = c.pool.Ranges()
	}
	s.mu.Unlock()
	return compileAll(items, loaded)
}

// compileAll validates every pool and resolves overlaps: the older pool keeps its addresses,
// the other is refused, so adding a bad pool never breaks a good one. creationTimestamp has
// one-second resolution: between pools created in the same second, the one already
// established wins (loaded with the same ranges, or Ready at its current generation, which
// survives a restart), then the one whose name sorts first. loaded maps the pools in use to
// their ranges.
func compileAll(items []v1alpha1.IPPool, loaded map[string][]pool.Range) (map[string]*compiledPool, map[string]*compiledPool, map[string]PoolProblem) {
	type candidate struct {
		p           *v1alpha1.IPPool
		c           *compiledPool
		established bool
	}
	var cands []candidate
	bad := map[string]PoolProblem{}
	elastic := map[string]*compiledPool{}
	for i := range items {
		p := &items[i]
		if p.ElasticIPs() != nil {
			c, err := compileElastic(p)
			if err != nil {
				bad[p.Name] = PoolProblem{Reason: "Invalid", Message: fmt.Sprintf("pool %q: %v", p.Name, err)}
			} else {
				elastic[p.Name] = c
			}
			continue
		}
		c, err := compile(p)
		if err != nil {
			bad[p.Name] = PoolProblem{Reason: "Invalid", Message: fmt.Sprintf("pool %q: %v", p.Name, err)}
			continue
		}
		rs, ok := loaded[p.Name]
		cands = append(cands, candidate{p: p, c: c, established: (ok && slices.Equal(rs, c.pool.Ranges())) || readyNow(p)})
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if !a.p.CreationTimestamp.Equal(&b.p.CreationTimestamp) {
			return a.p.CreationTimestamp.Before(&b.p.CreationTimestamp)
		}
		if a.established != b.established {
			return a.established
		}
		return a.p.Name < b.p.Name
	})
	good := map[string]*compiledPool{}
	var order []*compiledPool
	for _, cand := range cands {
		c := cand.c
		var clash []string
		for _, o := range order {
			if a, b, ok := pool.Overlaps(c.pool.Ranges(), o.pool.Ranges()); ok {
				clash = append(clash, fmt.Sprintf("%s overlaps %s of pool %q", a, b, o.name))
			}
		}
		if len(clash) > 0 {
			bad[c.name] = PoolProblem{Reason: "Overlap", Message: fmt.Sprintf("pool %q: %s", c.name, strings.Join(clash, "; "))}
			continue
		}
		good[c.name] = c
		order = append(order, c)
	}
	return good, elastic, bad
}

// readyNow reports whether the pool's status says Ready for its current spec.
func readyNow(p *v1alpha1.IPPool) bool {
	c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == p.Generation
}

func newPool(p *v1alpha1.IPPool, ranges []pool.Range) *pool.Pool {
	np := pool.NewPool(p.Name, ranges, p.Spec.AvoidBuggyIPs)
	if p.Spec.ShareAcrossNamespaces {
		np.ShareAcrossNamespaces()
	}
	return np
}
