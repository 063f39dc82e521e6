// Package pool is Fairlead's address management: parsing address ranges,
// per-pool free/used bookkeeping and the allocator that decides which
// Service holds which address (including MetalLB-style IP sharing).
//
// It is pure Go on purpose (no Kubernetes types), so the tricky part of a
// load balancer can be tested and fuzzed in isolation.
//
// Nothing here ever materialises a list of a pool's addresses: a /8 or an
// IPv6 /64 costs as much as a /30, and memory grows with what is allocated.
package pool

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Family is an IP address family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", int(f))
}

// FamilyOf reports a's family. IPv4-mapped IPv6 addresses count as IPv4,
// because that is how they are stored everywhere in this package.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Range is an inclusive span of addresses of one family. Its bounds are
// never IPv4-mapped and never carry a zone.
type Range struct {
	First, Last netip.Addr
}

// Family reports the range's address family.
func (r Range) Family() Family { return FamilyOf(r.First) }

// Contains reports whether a lies within r.
func (r Range) Contains(a netip.Addr) bool {
	a = norm(a)
	return a.IsValid() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// String prints r as a CIDR when it is exactly one, else as "first-last",
// so that error messages look like what the user wrote.
func (r Range) String() string {
	if !r.First.IsValid() || !r.Last.IsValid() {
		return "invalid-range"
	}
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// prefix returns the CIDR that covers exactly r, if there is one.
func (r Range) prefix() (netip.Prefix, bool) {
	if r.First.BitLen() != r.Last.BitLen() {
		return netip.Prefix{}, false
	}
	// Walk from the longest prefix to shorter ones while First stays the
	// network address; at most one of those can end exactly at Last.
	for bits := r.First.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(r.First, bits)
		if p.Masked().Addr() != r.First {
			break
		}
		switch lastOf(p).Compare(r.Last) {
		case 0:
			return p, true
		case 1:
			return netip.Prefix{}, false
		}
	}
	return netip.Prefix{}, false
}

// Prefixes returns the fewest CIDRs that together cover exactly r, in address order: one for
// a range written as a CIDR, several for one like 198.51.100.10-198.51.100.20.
func (r Range) Prefixes() []netip.Prefix {
	if !r.First.IsValid() || r.First.BitLen() != r.Last.BitLen() || r.First.Compare(r.Last) > 0 {
		return nil
	}
	var out []netip.Prefix
	for a := r.First; ; {
		// The shortest prefix that starts at a and ends inside r.
		bits := a.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1)
			if p.Masked().Addr() != a || lastOf(p).Compare(r.Last) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastOf(p)
		if last.Compare(r.Last) >= 0 {
			return out
		}
		a = last.Next()
	}
}

func (r Range) overlaps(o Range) bool {
	return r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

func compareRanges(a, b Range) int {
	if c := a.First.Compare(b.First); c != 0 {
		return c
	}
	return a.Last.Compare(b.Last)
}

// norm is how every address entering the package is stored: IPv4-mapped
// addresses become plain IPv4 so that ::ffff:198.51.100.1 and
// 198.51.100.1 can never be handed out as two different addresses.
func norm(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// lastOf returns the highest address in p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		switch {
		case bits >= (i+1)*8:
		case bits <= i*8:
			b[i] = 0xff
		default:
			b[i] |= 0xff >> (bits - i*8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

const rangeHint = "want a CIDR like 198.51.100.0/24 or a range like 198.51.100.10-198.51.100.20"

// ParseRange parses one pool entry: a CIDR ("198.51.100.0/24",
// "2001:db8::/64") or an inclusive range ("198.51.100.10-198.51.100.20",
// spaces around '-' allowed). A range that includes special-purpose
// addresses (SpecialBlocks) is refused.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(s)
	if err != nil {
		return Range{}, err
	}
	if bs := r.Special(); len(bs) > 0 {
		return Range{}, specialError(r, bs)
	}
	return r, nil
}

// parseRange is ParseRange without the special-purpose check.
func parseRange(s string) (Range, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return Range{}, fmt.Errorf("address range is empty (%s)", rangeHint)
	}
	// Zones only make sense on a link; a pool address is announced to the
	// world. Catch them before splitting on '-', which zones may contain.
	if i := strings.IndexByte(in, '%'); i >= 0 {
		return Range{}, fmt.Errorf("%q has an IPv6 zone; zones are not allowed in address ranges", s)
	}
	if strings.Contains(in, "/") {
		return parseCIDR(s, in)
	}
	if first, last, ok := strings.Cut(in, "-"); ok {
		return parseDash(s, strings.TrimSpace(first), strings.TrimSpace(last))
	}
	if a, err := netip.ParseAddr(in); err == nil {
		bits := 32
		if a.Is6() {
			bits = 128
		}
		return Range{}, fmt.Errorf("%q is a single address, not a range; write %s/%d", s, a, bits)
	}
	return Range{}, fmt.Errorf("%q is not an IP range or CIDR (%s)", s, rangeHint)
}

func parseCIDR(s, in string) (Range, error) {
	p, err := netip.ParsePrefix(in)
	if err != nil {
		return Range{}, fmt.Errorf("%q is not a valid CIDR: %s", s, netipReason(err))
	}
	if p.Addr().Is4In6() {
		return Range{}, fmt.Errorf("%q uses IPv4-mapped IPv6 addresses; write IPv4 addresses in IPv4 form", s)
	}
	if m := p.Masked(); m != p {
		return Range{}, fmt.Errorf("%s has host bits set; did you mean %s?", p, m)
	}
	return Range{First: p.Addr(), Last: lastOf(p)}, nil
}

func parseDash(s, first, last string) (Range, error) {
	if first == "" || last == "" {
		return Range{}, fmt.Errorf("range %q needs an address on both sides of '-'", s)
	}
	a, err := netip.ParseAddr(first)
	if err != nil {
		return Range{}, fmt.Errorf("range %q: start %q is not an IP address: %s", s, first, netipReason(err))
	}
	b, err := netip.ParseAddr(last)
	if err != nil {
		return Range{}, fmt.Errorf("range %q: end %q is not an IP address: %s", s, last, netipReason(err))
	}
	for _, x := range []netip.Addr{a, b} {
		if x.Is4In6() {
			return Range{}, fmt.Errorf("range %q: %s is an IPv4-mapped IPv6 address; write it as %s", s, x, x.Unmap())
		}
	}
	if a.Is4() != b.Is4() {
		return Range{}, fmt.Errorf("range %s-%s mixes IPv4 and IPv6", a, b)
	}
	if a.Compare(b) > 0 {
		return Range{}, fmt.Errorf("range %s-%s is reversed", a, b)
	}
	return Range{First: a, Last: b}, nil
}

// netipReason strips the `netip.ParseAddr("...")` prefix from netip's
// errors: our own message already quotes the input.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// ParseRanges parses every entry of a pool, sorts the result and refuses
// entries that overlap each other: an address listed twice would make the
// pool's counts lie.
func ParseRanges(ss []string) ([]Range, error) {
	type entry struct {
		r   Range
		src string
	}
	es := make([]entry, 0, len(ss))
	for _, s := range ss {
		r, err := ParseRange(s)
		if err != nil {
			return nil, err
		}
		es = append(es, entry{r, strings.TrimSpace(s)})
	}
	slices.SortStableFunc(es, func(a, b entry) int { return compareRanges(a.r, b.r) })
	// Compare against the entry reaching furthest so far, not just the
	// previous one: a wide first entry can swallow several later ones.
	widest := -1
	for i, e := range es {
		if widest >= 0 && es[widest].r.overlaps(e.r) {
			return nil, fmt.Errorf("%s overlaps %s", es[widest].src, e.src)
		}
		if widest < 0 || e.r.Last.Compare(es[widest].r.Last) > 0 {
			widest = i
		}
	}
	rs := make([]Range, len(es))
	for i, e := range es {
		rs[i] = e.r
	}
	return rs, nil
}

// Overlaps reports the first pair of overlapping ranges between a and b.
// Both must be sorted and free of internal overlaps, as ParseRanges
// returns them.
func Overlaps(a, b []Range) (Range, Range, bool) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i].overlaps(b[j]) {
			return a[i], b[j], true
		}
		// The one ending first cannot overlap anything further on.
		if a[i].Last.Compare(b[j].Last) < 0 {
			i++
		} else {
			j++
		}
	}
	return Range{}, Range{}, false
}
