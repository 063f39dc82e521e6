package ipam

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// Reasons a Service is left without addresses; they name the condition's reason and the
// failure metric's label.
const (
	ReasonInvalidRequest = "InvalidRequest"
	ReasonNoEligiblePool = "NoEligiblePool"
	ReasonPoolExhausted  = "PoolExhausted"
	ReasonIPUnavailable  = "IPUnavailable"
)

// Error is an allocation failure with the reason to report.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

func fail(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Hooks let the controllers react to state changes without ipam knowing about them. They are
// called without the lock held and must not block.
type Hooks struct {
	// PoolChanged: the usage of this pool changed (its status is stale).
	PoolChanged func(pool string)
	// Retry: addresses were freed or pools changed; pending Services may now succeed.
	Retry func()
	// Claim says, at startup, whose addresses a Service's status records (see LoadFromAPI).
	// Each allocator has its own rule: fairlead-controller's finalizer and class, the upstream
	// service controller's finalizer in fairlead-ccm. Required by LoadFromAPI.
	Claim func(svc *corev1.Service, r Request) Claim
}

// Claim is what an allocator makes of a Service's status when it rebuilds its state.
type Claim int

const (
	// NotHeld: the status is not this allocator's to restore (another class, a Service on its
	// way out that it never wrote for, an address a cloud holds).
	NotHeld Claim = iota
	// Wrote: this allocator wrote the status; every address in it is restored, in a pool or not.
	Wrote
	// Adopted: the Service is this allocator's but another implementation (MetalLB) wrote its
	// status; its addresses are restored when a pool covers them or the Service names their
	// pool, so taking over keeps each address where it is.
	Adopted
)

// State is the allocation state shared by the reconcilers.
type State struct {
	mu       sync.Mutex
	alloc    *pool.Allocator
	pools    map[string]*compiledPool
	problems map[string]PoolProblem
	elastic  map[string]*compiledPool
	pending  map[string]bool
	// origin is the pool each held address was handed out from: it outlives a pool that
	// shrinks or goes, so the Service keeps being reported (and announced) as that pool's.
	origin map[netip.Addr]string
	// strays are the held addresses their pool no longer covers or no longer lets the Service
	// have, by Service; they are kept, never handed to anyone else, and reported.
	strays map[string][]Stray
	// recheck: Services holding addresses of pools that changed, to reconcile again.
	recheck map[string]bool
	hooks   Hooks
	// seen fingerprints every pool's spec, to retry pending Services only when pools change.
	seen map[string]string

	onceMu sync.Mutex
	loaded bool
}

// New returns an empty State.
func New(h Hooks) *State {
	if h.PoolChanged == nil {
		h.PoolChanged = func(string) {}
	}
	if h.Retry == nil {
		h.Retry = func() {}
	}
	return &State{
		alloc:    pool.NewAllocator(),
		pools:    map[string]*compiledPool{},
		problems: map[string]PoolProblem{},
		pending:  map[string]bool{},
		origin:   map[netip.Addr]string{},
		strays:   map[string][]Stray{},
		recheck:  map[string]bool{},
		hooks:    h,
	}
}

// Stray is an address a Service keeps although its pool no longer covers it (the pool shrank,
// became invalid or was deleted) or no longer lets the Service have it (allocateTo changed).
// Renumbering would break every client, DNS record and firewall rule that uses the address, so
// the Service keeps it and it stays announced; it is reported, and never handed to another
// Service until this one lets it go.
type Stray struct {
	IP   netip.Addr
	Pool string // the pool it was handed out from
	Why  string
}

// LoadPools replaces the pool set with items (all IPPools). Held addresses are never dropped:
// those outside every valid pool stay held as orphans until their Service releases them.
func (s *State) LoadPools(items []v1alpha1.IPPool) map[string]PoolProblem {
	good, elastic, bad := s.compilePools(items)
	seen := map[string]string{}
	for i := range items {
		p := &items[i]
		seen[p.Name] = fmt.Sprintf("%s/%d/%t", p.UID, p.Generation, p.DeletionTimestamp.IsZero())
	}
	s.mu.Lock()
	retry := !maps.Equal(seen, s.seen)
	respec := map[string]bool{}
	for name, fp := range seen {
		if s.seen[name] != fp {
			respec[name] = true
		}
	}
	for name := range s.seen {
		if _, ok := seen[name]; !ok {
			respec[name] = true
		}
	}
	s.seen = seen
	var changed []string
	for name, c := range good {
		old, ok := s.pools[name]
		if ok && old.deleting == c.deleting && slices.Equal(old.pool.Ranges(), c.pool.Ranges()) &&
			old.pool.AvoidBuggyIPs() == c.pool.AvoidBuggyIPs() && old.pool.SharesAcrossNamespaces() == c.pool.SharesAcrossNamespaces() {
			// Same addresses: keep the existing Pool (and its bookkeeping), take the new policy.
			c.pool = old.pool
		} else {
			s.alloc.SetPool(c.pool, c.deleting)
			changed = append(changed, name)
		}
	}
	for name := range s.pools {
		if _, ok := good[name]; !ok {
			s.alloc.RemovePool(name)
			changed = append(changed, name)
		}
	}
	s.pools, s.problems, s.elastic = good, bad, elastic
	if len(respec) > 0 {
		// Whoever holds an address of a changed pool may have become (or stopped being) a
		// stray: its Service's condition must say so.
		for a, origin := range s.origin {
			if respec[origin] || respec[s.alloc.PoolOf(a)] {
				for _, k := range s.alloc.Holders(a) {
					s.recheck[k] = true
				}
			}
		}
	}
	s.mu.Unlock()
	for _, n := range changed {
		s.hooks.PoolChanged(n)
	}
	if retry {
		s.hooks.Retry()
	}
	return bad
}

// ElasticPool returns the settings of pool name when it is a valid pool of Elastic IPs. The
// Service reconciler asks this once per Service that names a pool: it is a map lookup, so the
// local pools' path stays as fast as it was.
func (s *State) ElasticPool(name string) (*v1alpha1.ElasticIPs, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.elastic[name]
	if !ok {
		return nil, false
	}
	return c.elastic, true
}

// ElasticAllows reports whether the Service of r may use the Elastic IP pool name, and why not.
// A pool being deleted hands out nothing new, but a Service holding one of its addresses
// (holding) keeps it, as with local pools.
func (s *State) ElasticAllows(name string, r Request, holding bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.elastic[name]
	if !ok {
		return fail(ReasonNoEligiblePool, "requested pool %q does not exist", name)
	}
	if ok, why := c.allows(r.Service.Namespace, r.NamespaceLabels, r.ServiceLabels); !ok {
		return fail(ReasonNoEligiblePool, "%s", why)
	}
	if c.deleting && !holding {
		return fail(ReasonNoEligiblePool, "requested pool %q is being deleted", name)
	}
	return nil
}

// Problem reports why a pool is not in use, if it is not.
func (s *State) Problem(name string) (PoolProblem, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.problems[name]
	return p, ok
}

// Holding is a Service's addresses as recorded in its status, for Restore.
type Holding struct {
	Service pool.Service
	IPs     []netip.Addr
	// Pools are the pools the addresses came from, as recorded on the Service (one name for
	// all, or one per address); empty for Services allocated before it was recorded.
	Pools   []string
	Created time.Time
}

// Restore records addresses Services already hold (read from their status at startup), oldest
// Service first, so that a restart never moves an address. It returns what could not be
// restored (two Services claiming one address they may not share): those Services get new
// addresses when reconciled.
func (s *State) Restore(hs []Holding) []error {
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].Created.Before(hs[j].Created) })
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, h := range hs {
		for i, a := range h.IPs {
			if err := s.alloc.Assign(h.Service, a); err != nil {
				errs = append(errs, fmt.Errorf("%s: cannot keep %s: %w", h.Service.Key, a, err))
				continue
			}
			origin := s.alloc.PoolOf(a)
			switch {
			case origin != "":
			case len(h.Pools) == 1:
				origin = h.Pools[0]
			case len(h.Pools) == len(h.IPs):
				origin = h.Pools[i]
			}
			if origin != "" {
				s.origin[a.Unmap()] = origin
			}
		}
	}
	return errs
}

// Strays lists the addresses the Service keeps outside what its pool allows, as of its last
// Ensure.
func (s *State) Strays(key string) []Stray {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.strays[key])
}

// PoolsOf names the pool each address came from ("" where unknown).
func (s *State) PoolsOf(ips []netip.Addr) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(ips))
	for i, a := range ips {
		out[i] = s.originOf(a)
	}
	return out
}

// IPModesOf gives each address's ipMode: its pool's, VIP where the pool is unknown.
func (s *State) IPModesOf(ips []netip.Addr) []corev1.LoadBalancerIPMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]corev1.LoadBalancerIPMode, len(ips))
	for i, a := range ips {
		out[i] = corev1.LoadBalancerIPModeVIP
		origin := s.originOf(a)
		p := s.pools[origin]
		if p == nil {
			p = s.elastic[origin]
		}
		if p != nil && p.ipMode != "" {
			out[i] = p.ipMode
		}
	}
	return out
}

// originOf: the pool covering a now, else the one it was handed out from.
func (s *State) originOf(a netip.Addr) string {
	if p := s.alloc.PoolOf(a); p != "" {
		return p
	}
	return s.origin[a]
}

// stray says why a Service may no longer have a held address from its pool, "" if it may.
func (s *State) stray(r Request, a netip.Addr) (string, string) {
	covering := s.alloc.PoolOf(a)
	origin := s.originOf(a)
	if covering == "" {
		switch p, bad := s.problems[origin]; {
		case origin == "":
			return "", fmt.Sprintf("%s is in no IPPool", a)
		case bad:
			return origin, fmt.Sprintf("pool %q is not usable (%s)", origin, p.Message)
		case s.seen[origin] == "":
			return origin, fmt.Sprintf("pool %q no longer exists", origin)
		default:
			return origin, fmt.Sprintf("%s is no longer in pool %q's addresses", a, origin)
		}
	}
	if c, ok := s.pools[covering]; ok {
		if ok, _ := c.allows(r.Service.Namespace, r.NamespaceLabels, r.ServiceLabels); !ok {
			return covering, fmt.Sprintf("pool %q no longer allocates to this Service (its allocateTo changed, or the Service's or namespace's labels did)", covering)
		}
	}
	return covering, ""
}

// noteStrays records which of the addresses the Service keeps are strays.
func (s *State) noteStrays(r Request, ips []netip.Addr) {
	var out []Stray
	for _, a := range ips {
		if p, why := s.stray(r, a); why != "" {
			out = append(out, Stray{IP: a, Pool: p, Why: why})
		}
	}
	if len(out) == 0 {
		delete(s.strays, r.Service.Key)
	} else {
		s.strays[r.Service.Key] = out
	}
}

// forget drops what is known of an address nobody holds any more.
func (s *State) forget(a netip.Addr) {
	if len(s.alloc.Holders(a)) == 0 {
		delete(s.origin, a)
	}
}

// Ensure gives the Service the addresses its request asks for, keeping those it holds where
// they still fit. On failure the Service keeps nothing it did not hold before.
func (s *State) Ensure(r Request) ([]netip.Addr, error) {
	s.mu.Lock()
	ips, touched, err := s.ensure(r)
	key := r.Service.Key
	before := s.strays[key]
	s.noteStrays(r, ips)
	var strayPools []string
	if !slices.Equal(before, s.strays[key]) {
		for _, st := range append(slices.Clone(before), s.strays[key]...) {
			strayPools = append(strayPools, st.Pool)
		}
	}
	for _, a := range touched.added {
		if p := s.alloc.PoolOf(a); p != "" {
			s.origin[a] = p
		}
	}
	for _, a := range touched.released {
		s.forget(a)
	}
	if err != nil {
		s.pending[key] = true
	} else {
		delete(s.pending, key)
	}
	freed := false
	var pools []string
	for _, a := range touched.released {
		if len(s.alloc.Holders(a)) == 0 {
			freed = true
		}
	}
	for _, a := range append(touched.released, touched.added...) {
		if p := s.alloc.PoolOf(a); p != "" && !slices.Contains(pools, p) {
			pools = append(pools, p)
		}
	}
	for _, p := range strayPools {
		if p != "" && !slices.Contains(pools, p) {
			pools = append(pools, p)
		}
	}
	s.mu.Unlock()
	for _, p := range pools {
		s.hooks.PoolChanged(p)
	}
	if freed {
		s.hooks.Retry()
	}
	return ips, err
}

type touched struct{ added, released []netip.Addr }

func (s *State) ensure(r Request) ([]netip.Addr, touched, error) {
	key := r.Service.Key
	var t touched
	held := s.alloc.Held(key)

	// Keep what still fits the request, per family.
	keep := map[pool.Family]netip.Addr{}
	for _, a := range held {
		f := pool.FamilyOf(a)
		if !slices.Contains(r.Families, f) || (len(r.IPs) > 0 && !slices.Contains(r.IPs, a)) {
			continue
		}
		// A Service that asks for another pool moves; one whose pool shrank, went or stopped
		// admitting it keeps its address (see Stray).
		if r.Pool != "" && s.originOf(a) != r.Pool {
			continue
		}
		// Re-assigning refreshes the ports and sharing key the allocator knows; a change that
		// now collides with a sharer loses the address.
		if err := s.alloc.Assign(r.Service, a); err != nil {
			continue
		}
		keep[f] = a
	}

	var err error
	if len(r.IPs) > 0 {
		err = s.assignRequested(r, keep, &t)
	} else {
		var missing []pool.Family
		for _, f := range r.Families {
			if _, ok := keep[f]; !ok {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			err = s.allocateMissing(r, keep, missing, &t)
			if err != nil && !r.RequireAll && len(keep) == 0 && len(missing) > 1 {
				// PreferDualStack: the primary family alone is better than nothing.
				err = s.allocateMissing(r, keep, missing[:1], &t)
			}
		}
	}
	if err != nil {
		for _, a := range t.added {
			s.alloc.Release(key, a)
		}
		t.added = nil
		return held, t, err
	}
	var out []netip.Addr
	for _, f := range r.Families {
		if a, ok := keep[f]; ok {
			out = append(out, a)
		}
	}
	for _, a := range held {
		if !slices.Contains(out, a) {
			s.alloc.Release(key, a)
			t.released = append(t.released, a)
		}
	}
	return out, t, nil
}

func (s *State) assignRequested(r Request, keep map[pool.Family]netip.Addr, t *touched) error {
	for _, a := range r.IPs {
		f := pool.FamilyOf(a)
		if keep[f] == a {
			continue
		}
		pname := s.alloc.PoolOf(a)
		if pname == "" {
			return fail(ReasonIPUnavailable, "%s is not in any valid IPPool", a)
		}
		if r.Pool != "" && pname != r.Pool {
			return fail(ReasonInvalidRequest, "%s belongs to pool %q, not to the requested pool %q", a, pname, r.Pool)
		}
		c := s.pools[pname]
		if ok, why := c.allows(r.Service.Namespace, r.NamespaceLabels, r.ServiceLabels); !ok {
			return fail(ReasonNoEligiblePool, "%s: %s", a, why)
		}
		if c.deleting {
			return fail(ReasonNoEligiblePool, "%s: pool %q is being deleted", a, pname)
		}
		if err := s.alloc.Assign(r.Service, a); err != nil {
			return fail(ReasonIPUnavailable, "%v", err)
		}
		keep[f] = a
		t.added = append(t.added, a)
	}
	return nil
}

// candidates lists the pools the request may draw new addresses from, best first.
func (s *State) candidates(r Request, prefer string) ([]*compiledPool, error) {
	if r.Pool != "" {
		c, ok := s.pools[r.Pool]
		if !ok {
			if p, bad := s.problems[r.Pool]; bad {
				return nil, fail(ReasonNoEligiblePool, "requested pool %q is not usable: %s", r.Pool, p.Message)
			}
			return nil, fail(ReasonNoEligiblePool, "requested pool %q does not exist", r.Pool)
		}
		if ok, why := c.allows(r.Service.Namespace, r.NamespaceLabels, r.ServiceLabels); !ok {
			return nil, fail(ReasonNoEligiblePool, "%s", why)
		}
		if c.deleting {
			return nil, fail(ReasonNoEligiblePool, "requested pool %q is being deleted", r.Pool)
		}
		return []*compiledPool{c}, nil
	}
	var out []*compiledPool
	for _, c := range s.pools {
		if c.autoAssign && !c.deleting {
			if ok, _ := c.allows(r.Service.Namespace, r.NamespaceLabels, r.ServiceLabels); ok {
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		return nil, fail(ReasonNoEligiblePool, "no IPPool allocates to this Service (namespace %q)", r.Service.Namespace)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.name == prefer) != (b.name == prefer) {
			return a.name == prefer
		}
		if a.priority != b.priority {
			return a.priority < b.priority
		}
		return a.name < b.name
	})
	return out, nil
}

// allocateMissing draws one address per missing family, all from the first candidate pool that
// has every one of them free (a dual-stack Service gets both of its addresses from one pool).
func (s *State) allocateMissing(r Request, keep map[pool.Family]netip.Addr, missing []pool.Family, t *touched) error {
	prefer := ""
	for _, a := range keep {
		prefer = s.alloc.PoolOf(a)
	}
	cands, err := s.candidates(r, prefer)
	if err != nil {
		return err
	}
	var exhausted, lacking []string
	var lastErr error
	for _, c := range cands {
		if !hasFamilies(c.pool.Families(), missing) {
			lacking = append(lacking, c.name)
			continue
		}
		var got []netip.Addr
		for _, f := range missing {
			a, err := s.alloc.AllocateFrom(r.Service, c.name, f)
			if err != nil {
				lastErr = err
				break
			}
			got = append(got, a)
		}
		if len(got) == len(missing) {
			for _, a := range got {
				keep[pool.FamilyOf(a)] = a
			}
			t.added = append(t.added, got...)
			return nil
		}
		for _, a := range got {
			s.alloc.Release(r.Service.Key, a)
		}
		exhausted = append(exhausted, c.name)
	}
	if len(exhausted) == 0 {
		return fail(ReasonNoEligiblePool, "no eligible IPPool has %s addresses (eligible: %s)", familiesString(missing), strings.Join(lacking, ", "))
	}
	if len(exhausted) == 1 && lastErr != nil && !errors.Is(lastErr, pool.ErrExhausted) {
		return fail(ReasonIPUnavailable, "%v", lastErr)
	}
	return fail(ReasonPoolExhausted, "no free %s address in pool %s", familiesString(missing), strings.Join(quoteAll(exhausted), ", "))
}

func hasFamilies(have, want []pool.Family) bool {
	for _, f := range want {
		if !slices.Contains(have, f) {
			return false
		}
	}
	return true
}

func familiesString(fs []pool.Family) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("IPv%d", f)
	}
	return strings.Join(parts, "+")
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// Release frees everything the Service holds.
func (s *State) Release(key string) []netip.Addr {
	s.mu.Lock()
	var pools []string
	for _, a := range s.alloc.Held(key) {
		if p := s.originOf(a); p != "" && !slices.Contains(pools, p) {
			pools = append(pools, p)
		}
	}
	released := s.alloc.ReleaseAll(key)
	for _, a := range released {
		s.forget(a)
	}
	delete(s.pending, key)
	delete(s.strays, key)
	s.mu.Unlock()
	for _, p := range pools {
		s.hooks.PoolChanged(p)
	}
	if len(released) > 0 {
		s.hooks.Retry()
	}
	return released
}

// Held returns the addresses the Service holds.
func (s *State) Held(key string) []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alloc.Held(key)
}

// Retryable lists the Services worth another reconcile: those pending, and those holding
// addresses of a pool that changed since they were last reconciled.
func (s *State) Retryable() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := maps.Clone(s.recheck)
	clear(s.recheck)
	for k := range s.pending {
		set[k] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Pending lists the Services whose last allocation failed, to retry them.
func (s *State) Pending() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.pending))
	for k := range s.pending {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Usage is a pool's accounting for its status.
type Usage struct {
	Stats map[pool.Family]pool.Stats
	// Strays counts the addresses handed out from this pool that Services keep although the
	// pool no longer covers them or no longer admits those Services.
	Strays   int
	Holders  []string // Services holding its addresses; only listed while the pool is deleting
	InUse    bool     // the pool is loaded (valid)
	Deleting bool
}

// PoolUsage reports a pool's accounting.
func (s *State) PoolUsage(name string) Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	strays := 0
	for _, ss := range s.strays {
		for _, st := range ss {
			if st.Pool == name {
				strays++
			}
		}
	}
	c, ok := s.pools[name]
	if !ok {
		return Usage{Strays: strays}
	}
	stats, _ := s.alloc.PoolStats(name)
	u := Usage{Stats: stats, Strays: strays, InUse: true, Deleting: c.deleting}
	// Listing holders walks every address the pool has handed out, under the allocator's lock;
	// only a deleting pool needs the names (its condition says who keeps it alive).
	if c.deleting {
		u.Holders = s.alloc.PoolHolders(name)
	}
	return u
}

// Once runs load (restoring state from the API) the first time it succeeds; callers arriving
// meanwhile wait for it. Nothing may be allocated or released before it has run, or a restart
// could hand out an address a Service already holds.
func (s *State) Once(load func() error) error {
	s.onceMu.Lock()
	defer s.onceMu.Unlock()
	if s.loaded {
		return nil
	}
	if err := load(); err != nil {
		return err
	}
	s.loaded = true
	return nil
}
