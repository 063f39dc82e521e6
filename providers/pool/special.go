package pool

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrSpecial: the address is in a special-purpose block and is never handed out.
var ErrSpecial = errors.New("special-purpose address")

// SpecialBlock is a block of addresses that must never be a load balancer's address: the
// service proxy programs every Service address on every node, so a loopback, multicast,
// link-local or unspecified address there captures or breaks the node's own traffic, and
// routers will not forward most of them anyway (RFC 6890's registries).
type SpecialBlock struct {
	Prefix netip.Prefix
	Name   string
}

func (b SpecialBlock) String() string { return fmt.Sprintf("%s (%s)", b.Prefix, b.Name) }

// specialBlocks is sorted, IPv4 first.
var specialBlocks = []SpecialBlock{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network", holding the unspecified address 0.0.0.0`},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved, holding the broadcast address 255.255.255.255"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// SpecialBlocks lists the blocks whose addresses are never handed out.
func SpecialBlocks() []SpecialBlock { return slices.Clone(specialBlocks) }

// Special returns the special-purpose block holding a, if any. IPv4-mapped addresses are
// judged as the IPv4 address they stand for, as everywhere in this package.
func Special(a netip.Addr) (SpecialBlock, bool) {
	a = norm(a)
	for _, b := range specialBlocks {
		if b.Prefix.Contains(a) {
			return b, true
		}
	}
	return SpecialBlock{}, false
}

// Special returns the special-purpose blocks r overlaps.
func (r Range) Special() []SpecialBlock {
	var out []SpecialBlock
	for _, b := range specialBlocks {
		if b.Prefix.Addr().Is4() == r.First.Is4() && r.overlaps(blockRange(b)) {
			out = append(out, b)
		}
	}
	return out
}

func blockRange(b SpecialBlock) Range { return Range{First: b.Prefix.Addr(), Last: lastOf(b.Prefix)} }

// specialError explains why r is refused.
func specialError(r Range, bs []SpecialBlock) error {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.String()
	}
	return wrapf(ErrSpecial, "%s includes special-purpose addresses, which are never handed out: %s", r, strings.Join(names, ", "))
}

// withoutSpecial cuts the special-purpose blocks out of r.
func withoutSpecial(r Range) []Range {
	out := []Range{r}
	for _, b := range r.Special() {
		br := blockRange(b)
		var next []Range
		for _, x := range out {
			if !x.overlaps(br) {
				next = append(next, x)
				continue
			}
			if x.First.Less(br.First) {
				next = append(next, Range{First: x.First, Last: br.First.Prev()})
			}
			if br.Last.Less(x.Last) {
				next = append(next, Range{First: br.Last.Next(), Last: x.Last})
			}
		}
		out = next
	}
	return out
}
