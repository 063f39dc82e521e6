package pool

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/btree"
)

var (
	ErrUnknownPool  = errors.New("unknown pool")
	ErrPoolDeleting = errors.New("pool is being deleted")
)

// Service is what the allocator needs to know about a Service to decide sharing.
type Service struct {
	Key        string // "namespace/name"
	Namespace  string
	SharingKey string // empty: never shares
	BackendKey string // non-empty only for externalTrafficPolicy Local: canonical pod selector; sharers must have equal BackendKey
	Ports      []Port
}

// Port is one port a Service exposes.
type Port struct {
	Protocol string // "TCP", "UDP" or "SCTP"; empty means TCP, as in Kubernetes
	Port     int32
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", p.protocol(), p.Port) }

func (p Port) protocol() string {
	if p.Protocol == "" {
		return "TCP"
	}
	return strings.ToUpper(p.Protocol)
}

// lease is who holds one address. Usually one service, several when they
// share it.
type lease struct {
	holders []Service // sorted by Key
}

// group is the set of services that may share with each other.
type group struct {
	namespace, sharingKey string
}

type poolEntry struct {
	p        *Pool
	deleting bool
}

// Allocator tracks every pool and every held address, and decides which
// service gets which address. It is safe for concurrent use.
//
// Every held address is recorded here, whichever pool it came from and
// even when no pool contains it any more ("orphans"): such an address is
// kept from everyone else until its holders release it, so a shrunk or
// deleted pool can never cause two services to get the same address.
//
// Invariant: every held address that a pool may hand out is reserved in
// that pool, so a pool's next free address is free globally too.
type Allocator struct {
	mu     sync.Mutex
	pools  map[string]*poolEntry
	leases map[netip.Addr]*lease
	// held sorts the leased addresses, so a pool change only visits the
	// addresses inside its ranges.
	held   *btree.BTreeG[netip.Addr]
	byKey  map[string][]netip.Addr
	groups map[group]map[netip.Addr]int // address -> number of group members holding it
	// keys is groups without the namespace, for pools that share across namespaces.
	keys map[string]map[netip.Addr]int
}

// NewAllocator returns an allocator with no pools and nothing held.
func NewAllocator() *Allocator {
	return &Allocator{
		pools:  map[string]*poolEntry{},
		leases: map[netip.Addr]*lease{},
		held:   btree.NewG(32, netip.Addr.Less),
		byKey:  map[string][]netip.Addr{},
		groups: map[group]map[netip.Addr]int{},
		keys:   map[string]map[netip.Addr]int{},
	}
}

// SetPool adds p, or replaces the pool of the same name. Held addresses
// inside p's ranges are reserved in it, whichever pool they came from;
// those of the old pool outside the new ranges stay held as orphans.
// A deleting pool still accounts for what it holds but hands out nothing
// new. p must be new from NewPool, or a Pool this allocator already has.
func (al *Allocator) SetPool(p *Pool, deleting bool) {
	al.mu.Lock()
	defer al.mu.Unlock()
	al.pools[p.Name()] = &poolEntry{p: p, deleting: deleting}
	for _, r := range p.Ranges() {
		al.held.AscendGreaterOrEqual(r.First, func(a netip.Addr) bool {
			if r.Last.Less(a) {
				return false
			}
			if p.Usable(a) && !p.InUse(a) {
				_ = p.Reserve(a) // cannot fail: usable and free
			}
			return true
		})
	}
}

// RemovePool forgets a pool. What it held stays held, as orphans.
func (al *Allocator) RemovePool(name string) {
	al.mu.Lock()
	defer al.mu.Unlock()
	delete(al.pools, name)
}

// Pool returns the named pool. The allocator keeps mutating it: only its
// immutable accessors (Name, Ranges, Contains, ...) are safe to call; use
// PoolStats for counts.
func (al *Allocator) Pool(name string) (*Pool, bool) {
	al.mu.Lock()
	defer al.mu.Unlock()
	e, ok := al.pools[name]
	if !ok {
		return nil, false
	}
	return e.p, true
}

// PoolOf returns the name of the pool containing a, "" if none. Should
// pools overlap, the lowest name wins, so the answer is stable.
func (al *Allocator) PoolOf(a netip.Addr) string {
	al.mu.Lock()
	defer al.mu.Unlock()
	return al.poolOf(norm(a))
}

func (al *Allocator) poolOf(a netip.Addr) string {
	best := ""
	for name, e := range al.pools {
		if (best == "" || name < best) && e.p.Contains(a) {
			best = name
		}
	}
	return best
}

// Assign gives svc the address a: a must be free or held only by services
// svc may share with. Inside a pool, a is reserved there (and must not be
// an avoided buggy address); outside every pool it is held as an orphan,
// so that state can be restored whatever the pools look like. A
// special-purpose address (SpecialBlocks) is refused wherever it is.
// Assigning an address svc already holds updates what is known about svc.
func (al *Allocator) Assign(svc Service, a netip.Addr) error {
	al.mu.Lock()
	defer al.mu.Unlock()
	return al.assign(svc, norm(a))
}

func (al *Allocator) assign(svc Service, a netip.Addr) error {
	if svc.Key == "" {
		return errors.New("service has no key")
	}
	if !a.IsValid() {
		return fmt.Errorf("cannot assign an invalid address to %s", svc.Key)
	}
	if b, ok := Special(a); ok {
		return wrapf(ErrSpecial, "%v is in %v, which is never handed out", a, b)
	}
	if err := al.sharingConflict(a, svc); err != nil {
		return err
	}
	for _, e := range al.pools {
		if e.p.Contains(a) && !e.p.Usable(a) {
			return e.p.Reserve(a) // explains the avoided address
		}
	}
	al.hold(svc, a)
	return nil
}

// AllocateFrom gives svc an address of family f from the named pool:
// preferably the lowest one already held by services it can share with,
// else the pool's lowest free address. If svc already holds a usable
// address of family f from that pool, that one is returned again.
func (al *Allocator) AllocateFrom(svc Service, pool string, f Family) (netip.Addr, error) {
	al.mu.Lock()
	defer al.mu.Unlock()
	if svc.Key == "" {
		return netip.Addr{}, errors.New("service has no key")
	}
	e, ok := al.pools[pool]
	if !ok {
		return netip.Addr{}, wrapf(ErrUnknownPool, "pool %q does not exist", pool)
	}
	if e.deleting {
		return netip.Addr{}, wrapf(ErrPoolDeleting, "pool %q is being deleted; it hands out no new addresses", pool)
	}
	if e.p.fam(f) == nil {
		return netip.Addr{}, wrapf(ErrNoFamily, "pool %q has no %v range", pool, f)
	}
	// Idempotent: a retried reconcile must not leak a second address. An
	// address the pool would not hand out now (avoided since) is ignored.
	var mine netip.Addr
	for _, a := range al.byKey[svc.Key] {
		if FamilyOf(a) == f && e.p.Usable(a) && (!mine.IsValid() || a.Less(mine)) {
			mine = a
		}
	}
	if mine.IsValid() {
		if err := al.assign(svc, mine); err != nil {
			return netip.Addr{}, err
		}
		return mine, nil
	}
	if svc.SharingKey != "" {
		var best netip.Addr
		candidates := al.groups[group{svc.Namespace, svc.SharingKey}]
		if e.p.shareAcross {
			candidates = al.keys[svc.SharingKey]
		}
		for a := range candidates {
			if FamilyOf(a) == f && e.p.Usable(a) && (!best.IsValid() || a.Less(best)) && al.sharingConflict(a, svc) == nil {
				best = a
			}
		}
		if best.IsValid() {
			al.hold(svc, best)
			return best, nil
		}
	}
	for {
		a, err := e.p.AllocateNext(f)
		if err != nil {
			return netip.Addr{}, err
		}
		// Cannot happen while the invariant holds; if it ever did, the
		// address stays reserved (it is held) and we move on.
		if _, taken := al.leases[a]; taken {
			continue
		}
		al.hold(svc, a)
		return a, nil
	}
}

// hold records svc as a holder of a, reserving a in every pool that may
// hand it out. The caller has checked sharing.
func (al *Allocator) hold(svc Service, a netip.Addr) {
	svc.Ports = slices.Clone(svc.Ports) // the caller may reuse its slice
	l := al.leases[a]
	if l == nil {
		l = &lease{}
		al.leases[a] = l
		al.held.ReplaceOrInsert(a)
		for _, e := range al.pools {
			if e.p.Usable(a) && !e.p.InUse(a) {
				_ = e.p.Reserve(a) // cannot fail: usable and free
			}
		}
	}
	i, found := slices.BinarySearchFunc(l.holders, svc.Key, func(h Service, k string) int { return strings.Compare(h.Key, k) })
	if found {
		al.unindex(l.holders[i], a)
		l.holders[i] = svc
	} else {
		l.holders = slices.Insert(l.holders, i, svc)
		al.byKey[svc.Key] = append(al.byKey[svc.Key], a)
	}
	if svc.SharingKey != "" {
		g := group{svc.Namespace, svc.SharingKey}
		if al.groups[g] == nil {
			al.groups[g] = map[netip.Addr]int{}
		}
		al.groups[g][a]++
		if al.keys[svc.SharingKey] == nil {
			al.keys[svc.SharingKey] = map[netip.Addr]int{}
		}
		al.keys[svc.SharingKey][a]++
	}
}

// unindex drops h's membership of its sharing group for a.
func (al *Allocator) unindex(h Service, a netip.Addr) {
	if h.SharingKey == "" {
		return
	}
	g := group{h.Namespace, h.SharingKey}
	if m := al.groups[g]; m != nil {
		if m[a]--; m[a] <= 0 {
			delete(m, a)
		}
		if len(m) == 0 {
			delete(al.groups, g)
		}
	}
	if m := al.keys[h.SharingKey]; m != nil {
		if m[a]--; m[a] <= 0 {
			delete(m, a)
		}
		if len(m) == 0 {
			delete(al.keys, h.SharingKey)
		}
	}
}

// Release makes key stop holding a. The address returns to its pool once
// its last holder lets go.
func (al *Allocator) Release(key string, a netip.Addr) {
	al.mu.Lock()
	defer al.mu.Unlock()
	al.release(key, norm(a))
}

func (al *Allocator) release(key string, a netip.Addr) {
	l := al.leases[a]
	if l == nil {
		return
	}
	i := slices.IndexFunc(l.holders, func(h Service) bool { return h.Key == key })
	if i < 0 {
		return
	}
	al.unindex(l.holders[i], a)
	l.holders = slices.Delete(l.holders, i, i+1)
	if as := slices.DeleteFunc(al.byKey[key], func(x netip.Addr) bool { return x == a }); len(as) > 0 {
		al.byKey[key] = as
	} else {
		delete(al.byKey, key)
	}
	if len(l.holders) > 0 {
		return
	}
	delete(al.leases, a)
	al.held.Delete(a)
	for _, e := range al.pools {
		e.p.Release(a)
	}
}

// ReleaseAll releases everything key holds and returns what that was.
func (al *Allocator) ReleaseAll(key string) []netip.Addr {
	al.mu.Lock()
	defer al.mu.Unlock()
	as := al.heldBy(key)
	for _, a := range as {
		al.release(key, a)
	}
	return as
}

// Held returns the addresses key holds, IPv4 before IPv6, ascending.
func (al *Allocator) Held(key string) []netip.Addr {
	al.mu.Lock()
	defer al.mu.Unlock()
	return al.heldBy(key)
}

func (al *Allocator) heldBy(key string) []netip.Addr {
	as := slices.Clone(al.byKey[key])
	slices.SortFunc(as, netip.Addr.Compare)
	return as
}

// Keys returns the keys of every service holding an address, sorted.
func (al *Allocator) Keys() []string {
	al.mu.Lock()
	defer al.mu.Unlock()
	return slices.Sorted(maps.Keys(al.byKey))
}

// Holders returns the keys of the services holding a, sorted.
func (al *Allocator) Holders(a netip.Addr) []string {
	al.mu.Lock()
	defer al.mu.Unlock()
	l := al.leases[norm(a)]
	if l == nil {
		return nil
	}
	keys := make([]string, len(l.holders))
	for i, h := range l.holders {
		keys[i] = h.Key
	}
	return keys
}

// PoolStats returns the named pool's counts per family it has ranges for.
func (al *Allocator) PoolStats(name string) (map[Family]Stats, bool) {
	al.mu.Lock()
	defer al.mu.Unlock()
	e, ok := al.pools[name]
	if !ok {
		return nil, false
	}
	m := map[Family]Stats{}
	for _, f := range e.p.Families() {
		m[f] = e.p.Stats(f)
	}
	return m, true
}

// PoolHolders returns the keys of the services holding addresses inside
// the named pool's ranges, sorted: what keeps a deleting pool alive.
func (al *Allocator) PoolHolders(name string) []string {
	al.mu.Lock()
	defer al.mu.Unlock()
	e, ok := al.pools[name]
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range e.p.ranges {
		al.held.AscendGreaterOrEqual(r.First, func(a netip.Addr) bool {
			if r.Last.Less(a) {
				return false
			}
			for _, h := range al.leases[a].holders {
				seen[h.Key] = true
			}
			return true
		})
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Orphans returns the held addresses that no pool contains, ascending.
func (al *Allocator) Orphans() []netip.Addr {
	al.mu.Lock()
	defer al.mu.Unlock()
	var as []netip.Addr
	al.held.Ascend(func(a netip.Addr) bool {
		if al.poolOf(a) == "" {
			as = append(as, a)
		}
		return true
	})
	return as
}

// sharingConflict explains why svc may not hold a next to its current
// holders (svc itself excluded), or returns nil.
func (al *Allocator) sharingConflict(a netip.Addr, svc Service) error {
	l := al.leases[a]
	if l == nil {
		return nil
	}
	across := false
	for _, e := range al.pools {
		if e.p.shareAcross && e.p.Contains(a) {
			across = true
		}
	}
	for _, h := range l.holders {
		if h.Key == svc.Key {
			continue
		}
		if err := shareConflict(a, h, svc, across); err != nil {
			return err
		}
	}
	return nil
}

// shareConflict applies MetalLB's sharing rule between the holder h of a
// and svc; across says a's pool lets namespaces share. The message ends up
// in svc's condition and Events, which svc's namespace can read: a holder
// in another namespace is not named, nor is its namespace.
func shareConflict(a netip.Addr, h, svc Service, across bool) error {
	if h.Namespace != svc.Namespace && !across {
		return wrapf(ErrInUse, "%v is in use by a Service in another namespace (only Services in the same namespace can share an address, unless their pool has shareAcrossNamespaces)", a)
	}
	if h.Namespace != svc.Namespace && (h.SharingKey == "" || h.SharingKey != svc.SharingKey) {
		return wrapf(ErrInUse, "%v is in use by a Service in another namespace with another sharing key or none", a)
	}
	who := h.Key
	if h.Namespace != svc.Namespace {
		who = "a Service in another namespace"
	}
	conflict := func(why string, args ...any) error {
		return wrapf(ErrInUse, "%v is used by %s (%s)", a, who, fmt.Sprintf(why, args...))
	}
	switch {
	case h.SharingKey == "":
		return conflict("it has no sharing key")
	case svc.SharingKey == "":
		return conflict("%s has no sharing key", svc.Key)
	case h.SharingKey != svc.SharingKey:
		return conflict("sharing key %q differs from %q", h.SharingKey, svc.SharingKey)
	case h.BackendKey != svc.BackendKey && (h.BackendKey == "" || svc.BackendKey == ""):
		return conflict("externalTrafficPolicy Local and Cluster services cannot share")
	case h.BackendKey != svc.BackendKey:
		return conflict("externalTrafficPolicy Local services must select the same pods")
	}
	for _, p := range svc.Ports {
		for _, q := range h.Ports {
			if p.Port == q.Port && p.protocol() == q.protocol() {
				return wrapf(ErrInUse, "%v: port %v is also used by %s", a, p, who)
			}
		}
	}
	return nil
}
