package pool

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"sort"

	"github.com/google/btree"
)

// Sentinel errors, for errors.Is. The errors actually returned carry a
// message naming the address and pool involved.
var (
	ErrExhausted = errors.New("no free address")
	ErrNoFamily  = errors.New("pool has no range of that address family")
	ErrNotInPool = errors.New("address not in pool")
	ErrInUse     = errors.New("address in use")
	ErrBuggyIP   = errors.New("address avoided as buggy")
)

// wrapped is an error with its own message that still matches a sentinel
// with errors.Is, so messages need not start with the sentinel's text.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

func wrapf(sentinel error, format string, args ...any) error {
	return &wrapped{msg: fmt.Sprintf(format, args...), err: sentinel}
}

// Stats counts a pool's addresses of one family. Total and Free are big
// because an IPv6 /64 alone holds 2^64 addresses.
type Stats struct {
	Total *big.Int // usable addresses (buggy ones excluded when avoided)
	Used  int64
	Free  *big.Int
}

// run is a maximal stretch of allocated addresses. Addresses between start
// and end that are not usable (gaps between ranges, avoided .0/.255) are
// simply skipped over: every usable address in [start, end] is allocated.
type run struct {
	start, end netip.Addr
}

func runLess(a, b run) bool { return a.start.Less(b.start) }

// family is the bookkeeping of one address family of a pool.
type family struct {
	ranges []Range // sorted, overlapping or touching ones merged
	runs   *btree.BTreeG[run]
	used   int64
}

// Pool is the free/used bookkeeping of one address pool.
//
// Invariant: for two consecutive runs r1, r2, nextUsable(r1.end) is free
// (it lies strictly before r2.start); otherwise they would have been
// merged. Hence the first free address is found by looking at one run,
// and every operation costs O(log runs) whatever the pool's size.
//
// A Pool is not safe for concurrent use; the Allocator serialises access.
// Name, Ranges, AvoidBuggyIPs, Families, Contains and Usable only read
// immutable data and may be called concurrently with anything.
type Pool struct {
	name   string
	ranges []Range
	avoid  bool
	// shareAcross: Services of different namespaces may share its addresses.
	shareAcross bool
	v4, v6      *family
}

// NewPool builds an empty pool. ranges should come from ParseRange or
// ParseRanges; overlapping ranges are tolerated (merged for bookkeeping).
// It panics on a range that ParseRange could never have returned
// (invalid, reversed or mixing families): that is a programming error.
//
// Special-purpose addresses (SpecialBlocks) are cut out of the ranges, so
// that a pool built around ParseRange's check still never contains, counts
// or hands them out.
func NewPool(name string, ranges []Range, avoidBuggyIPs bool) *Pool {
	p := &Pool{name: name, avoid: avoidBuggyIPs}
	for _, r := range ranges {
		r = Range{First: norm(r.First), Last: norm(r.Last)}
		if !r.First.IsValid() || !r.Last.IsValid() || r.First.Is4() != r.Last.Is4() || r.First.Compare(r.Last) > 0 {
			panic(fmt.Sprintf("pool %q: invalid range %v-%v", name, r.First, r.Last))
		}
		p.ranges = append(p.ranges, withoutSpecial(r)...)
	}
	slices.SortFunc(p.ranges, compareRanges)
	for _, r := range p.ranges {
		f := p.fam(r.Family())
		if f == nil {
			f = &family{runs: btree.NewG(16, runLess)}
			if r.Family() == IPv4 {
				p.v4 = f
			} else {
				p.v6 = f
			}
		}
		// Merge so that a binary search on Last finds the one range that
		// can hold an address; touching ranges merge too, harmlessly.
		if n := len(f.ranges); n > 0 {
			prev := &f.ranges[n-1]
			if next := prev.Last.Next(); !next.IsValid() || r.First.Compare(next) <= 0 {
				if r.Last.Compare(prev.Last) > 0 {
					prev.Last = r.Last
				}
				continue
			}
		}
		f.ranges = append(f.ranges, r)
	}
	return p
}

func (p *Pool) fam(f Family) *family {
	switch f {
	case IPv4:
		return p.v4
	case IPv6:
		return p.v6
	}
	return nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Ranges returns the pool's ranges, sorted.
func (p *Pool) Ranges() []Range { return slices.Clone(p.ranges) }

// ShareAcrossNamespaces lets Services of different namespaces share the pool's addresses
// (their sharing keys and ports permitting); it returns p. Call it before handing p to an
// Allocator.
func (p *Pool) ShareAcrossNamespaces() *Pool {
	p.shareAcross = true
	return p
}

// SharesAcrossNamespaces reports whether ShareAcrossNamespaces was called.
func (p *Pool) SharesAcrossNamespaces() bool { return p.shareAcross }

// AvoidBuggyIPs reports whether IPv4 .0 and .255 addresses are withheld.
func (p *Pool) AvoidBuggyIPs() bool { return p.avoid }

// Families lists the families the pool has ranges for, IPv4 first.
func (p *Pool) Families() []Family {
	var fs []Family
	if p.v4 != nil {
		fs = append(fs, IPv4)
	}
	if p.v6 != nil {
		fs = append(fs, IPv6)
	}
	return fs
}

// Contains reports whether a lies in one of the pool's ranges, whether or
// not it may be handed out.
func (p *Pool) Contains(a netip.Addr) bool {
	a = norm(a)
	if !a.IsValid() {
		return false
	}
	f := p.fam(FamilyOf(a))
	if f == nil {
		return false
	}
	i := f.search(a)
	return i < len(f.ranges) && f.ranges[i].First.Compare(a) <= 0
}

// Usable reports whether a lies in the pool and may be handed out.
func (p *Pool) Usable(a netip.Addr) bool {
	return p.Contains(a) && !p.buggy(norm(a))
}

// buggy reports whether a is withheld by avoidBuggyIPs: some old network
// gear treats IPv4 addresses ending in .0 or .255 as broadcast/network
// addresses whatever the real netmask is.
func (p *Pool) buggy(a netip.Addr) bool {
	if !p.avoid || !a.Is4() {
		return false
	}
	b := a.As4()[3]
	return b == 0 || b == 255
}

// search returns the index of the first range whose Last is >= a.
func (f *family) search(a netip.Addr) int {
	return sort.Search(len(f.ranges), func(i int) bool { return f.ranges[i].Last.Compare(a) >= 0 })
}

// usableFrom returns the lowest usable address >= a.
func (p *Pool) usableFrom(f *family, a netip.Addr) (netip.Addr, bool) {
	for a.IsValid() {
		i := f.search(a)
		if i == len(f.ranges) {
			return netip.Addr{}, false
		}
		if r := f.ranges[i]; a.Less(r.First) {
			a = r.First
		}
		if !p.buggy(a) {
			return a, true
		}
		a = a.Next() // at most .255 then .0 in a row before a usable one
	}
	return netip.Addr{}, false
}

// usableUpTo returns the highest usable address <= a.
func (p *Pool) usableUpTo(f *family, a netip.Addr) (netip.Addr, bool) {
	for a.IsValid() {
		i := f.search(a)
		switch {
		case i < len(f.ranges) && f.ranges[i].First.Compare(a) <= 0:
			// a is inside range i.
		case i == 0:
			return netip.Addr{}, false
		default:
			a = f.ranges[i-1].Last
		}
		if !p.buggy(a) {
			return a, true
		}
		a = a.Prev()
	}
	return netip.Addr{}, false
}

func (p *Pool) nextUsable(f *family, a netip.Addr) (netip.Addr, bool) {
	return p.usableFrom(f, a.Next())
}

func (p *Pool) prevUsable(f *family, a netip.Addr) (netip.Addr, bool) {
	return p.usableUpTo(f, a.Prev())
}

// runAt returns the run whose span covers a, if any.
func (f *family) runAt(a netip.Addr) (run, bool) {
	var found run
	ok := false
	f.runs.DescendLessOrEqual(run{start: a}, func(r run) bool {
		found, ok = r, a.Compare(r.end) <= 0
		return false
	})
	return found, ok
}

// runAfter returns the first run starting after a.
func (f *family) runAfter(a netip.Addr) (run, bool) {
	var found run
	ok := false
	f.runs.AscendGreaterOrEqual(run{start: a}, func(r run) bool {
		if r.start == a {
			return true
		}
		found, ok = r, true
		return false
	})
	return found, ok
}

// InUse reports whether a is allocated in this pool.
func (p *Pool) InUse(a netip.Addr) bool {
	a = norm(a)
	if !p.Usable(a) {
		return false
	}
	_, ok := p.fam(FamilyOf(a)).runAt(a)
	return ok
}

// AllocateNext allocates the lowest free usable address of family fam.
func (p *Pool) AllocateNext(fam Family) (netip.Addr, error) {
	f := p.fam(fam)
	if f == nil {
		return netip.Addr{}, wrapf(ErrNoFamily, "pool %q has no %v range", p.name, fam)
	}
	c, ok := p.usableFrom(f, f.ranges[0].First)
	if ok {
		if first, has := f.runs.Min(); has && first.start == c {
			// By the coalescing invariant the address right after the
			// first run is free.
			c, ok = p.nextUsable(f, first.end)
		}
	}
	if !ok {
		return netip.Addr{}, wrapf(ErrExhausted, "pool %q has no free %v address", p.name, fam)
	}
	p.insert(f, c)
	return c, nil
}

// Reserve allocates the specific address a.
func (p *Pool) Reserve(a netip.Addr) error {
	a = norm(a)
	if b, ok := Special(a); ok {
		return wrapf(ErrSpecial, "%v is in %v, which is never handed out", a, b)
	}
	if !p.Contains(a) {
		return wrapf(ErrNotInPool, "%v is not in pool %q", a, p.name)
	}
	if p.buggy(a) {
		return wrapf(ErrBuggyIP, "%v ends in .%d, which pool %q avoids (avoidBuggyIPs)", a, a.As4()[3], p.name)
	}
	f := p.fam(FamilyOf(a))
	if _, ok := f.runAt(a); ok {
		return wrapf(ErrInUse, "%v is already in use in pool %q", a, p.name)
	}
	p.insert(f, a)
	return nil
}

// insert marks the free usable address a as used, merging it with the
// runs on either side when nothing free separates them.
func (p *Pool) insert(f *family, a netip.Addr) {
	nr := run{start: a, end: a}
	var before run
	hasBefore := false
	f.runs.DescendLessOrEqual(run{start: a}, func(r run) bool {
		before, hasBefore = r, true
		return false
	})
	if hasBefore {
		if n, ok := p.nextUsable(f, before.end); ok && n == a {
			f.runs.Delete(before)
			nr.start = before.start
		}
	}
	if after, ok := f.runAfter(a); ok {
		if n, ok := p.nextUsable(f, a); ok && n == after.start {
			f.runs.Delete(after)
			nr.end = after.end
		}
	}
	f.runs.ReplaceOrInsert(nr)
	f.used++
}

// Release frees a. Releasing a free or foreign address does nothing.
func (p *Pool) Release(a netip.Addr) {
	a = norm(a)
	if !p.Usable(a) {
		return
	}
	f := p.fam(FamilyOf(a))
	r, ok := f.runAt(a)
	if !ok {
		return
	}
	f.runs.Delete(r)
	// Both neighbours exist: r.start and r.end are usable addresses.
	if r.start != a {
		end, _ := p.prevUsable(f, a)
		f.runs.ReplaceOrInsert(run{start: r.start, end: end})
	}
	if r.end != a {
		start, _ := p.nextUsable(f, a)
		f.runs.ReplaceOrInsert(run{start: start, end: r.end})
	}
	f.used--
}

// Stats counts the pool's addresses of family fam, arithmetically.
func (p *Pool) Stats(fam Family) Stats {
	s := Stats{Total: new(big.Int), Free: new(big.Int)}
	f := p.fam(fam)
	if f == nil {
		return s
	}
	for _, r := range f.ranges {
		s.Total.Add(s.Total, r.size())
		if p.avoid && fam == IPv4 {
			s.Total.Sub(s.Total, big.NewInt(buggyIn(r)))
		}
	}
	s.Used = f.used
	s.Free.Sub(s.Total, big.NewInt(f.used))
	return s
}

func (r Range) size() *big.Int {
	n := addrInt(r.Last)
	n.Sub(n, addrInt(r.First))
	return n.Add(n, big.NewInt(1))
}

func addrInt(a netip.Addr) *big.Int {
	return new(big.Int).SetBytes(a.AsSlice())
}

// buggyIn counts the IPv4 addresses of r ending in .0 or .255.
func buggyIn(r Range) int64 {
	first, last := ipv4Int(r.First), ipv4Int(r.Last)
	// upTo(x, k) counts n in [0, x] with n%256 == k; x may be -1.
	upTo := func(x, k int64) int64 {
		if x < k {
			return 0
		}
		return (x-k)/256 + 1
	}
	in := func(k int64) int64 { return upTo(last, k) - upTo(first-1, k) }
	return in(0) + in(255)
}

func ipv4Int(a netip.Addr) int64 {
	b := a.As4()
	return int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
}
