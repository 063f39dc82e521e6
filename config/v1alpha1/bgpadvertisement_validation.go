package v1alpha1

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/fairlead-lb/fairlead/providers/pool"
)

// BGPAdvertisement condition reasons, beside the Accepted and ResolvedRefs ones of
// L2Advertisements.
const (
	// ReasonPeerNotFound: a BGPPeer named in peers does not exist; the others get the paths.
	ReasonPeerNotFound = "PeerNotFound"
)

// LargeCommunity is an RFC 8092 large community.
//
// +kubebuilder:object:generate=false
type LargeCommunity struct{ Global, Local1, Local2 uint32 }

func (l LargeCommunity) String() string { return fmt.Sprintf("%d:%d:%d", l.Global, l.Local1, l.Local2) }

// CompareLargeCommunities orders large communities numerically, field by field.
func CompareLargeCommunities(a, b LargeCommunity) int {
	return cmp.Or(cmp.Compare(a.Global, b.Global), cmp.Compare(a.Local1, b.Local1), cmp.Compare(a.Local2, b.Local2))
}

// WellKnownCommunities are the RFC 1997 and RFC 3765 names a BGPAdvertisement may write
// instead of the numbers; no Community object may define them as aliases.
var WellKnownCommunities = map[string]uint32{
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
}

// communityValue is what one alias stands for: a standard or a large community.
type communityValue struct {
	std      uint32
	large    *LargeCommunity
	conflict string // set when Community objects disagree: the alias cannot be used
}

// CommunityAliases are the aliases every Community object defines, as CompileCommunities
// resolved them. Its zero value knows no alias.
//
// +kubebuilder:object:generate=false
type CommunityAliases struct {
	m map[string]communityValue
}

// CommunityProblem is a Community object's alias that cannot be used.
//
// +kubebuilder:object:generate=false
type CommunityProblem struct {
	Community string // the object's name
	Reason    string // InvalidCommunity or ConflictingAlias
	Message   string
}

// CompileCommunities collects the aliases of every Community object. An alias that two objects
// define differently cannot be used (an advertisement naming it is refused, with both objects
// named) and is a problem of both; a value that does not parse, or a well-known name used as an
// alias (the API refuses both, but not for objects stored before its rules), is a problem of
// its object. The result does not depend on the order of objs.
func CompileCommunities(objs []*Community) (CommunityAliases, []CommunityProblem) {
	objs = slices.Clone(objs)
	slices.SortFunc(objs, func(a, b *Community) int { return cmp.Compare(a.Name, b.Name) })
	set := map[string]communityValue{}
	definedBy := map[string]string{}
	conflicted := map[string]bool{}
	var problems []CommunityProblem
	for _, o := range objs {
		for _, a := range o.Spec.Communities {
			if _, wk := WellKnownCommunities[a.Name]; wk {
				problems = append(problems, CommunityProblem{o.Name, "InvalidCommunity", fmt.Sprintf("alias %q is a well-known community name", a.Name)})
				continue
			}
			v, err := parseCommunityValue(a.Value)
			if err != nil {
				problems = append(problems, CommunityProblem{o.Name, "InvalidCommunity", fmt.Sprintf("alias %q: %v", a.Name, err)})
				continue
			}
			if old, ok := set[a.Name]; ok {
				if !conflicted[a.Name] && equalValue(old, v) {
					continue
				}
				msg := fmt.Sprintf("alias %q is defined differently by Communities %q and %q", a.Name, definedBy[a.Name], o.Name)
				problems = append(problems, CommunityProblem{o.Name, "ConflictingAlias", msg})
				if !conflicted[a.Name] {
					problems = append(problems, CommunityProblem{definedBy[a.Name], "ConflictingAlias", msg})
				}
				set[a.Name] = communityValue{conflict: msg}
				conflicted[a.Name] = true
				continue
			}
			set[a.Name], definedBy[a.Name] = v, o.Name
		}
	}
	return CommunityAliases{m: set}, problems
}

func equalValue(a, b communityValue) bool {
	if (a.large == nil) != (b.large == nil) {
		return false
	}
	return a.std == b.std && (a.large == nil || *a.large == *b.large)
}

// parseCommunityValue parses "ASN:VALUE" or "large:GLOBAL:LOCAL1:LOCAL2".
func parseCommunityValue(s string) (communityValue, error) {
	if rest, ok := strings.CutPrefix(s, "large:"); ok {
		l, err := parseLargeCommunity(rest)
		if err != nil {
			return communityValue{}, err
		}
		return communityValue{large: &l}, nil
	}
	c, err := parseStandardCommunity(s)
	if err != nil {
		return communityValue{}, fmt.Errorf("community %q: want ASN:VALUE or large:GLOBAL:LOCAL1:LOCAL2", s)
	}
	return communityValue{std: c}, nil
}

func parseStandardCommunity(s string) (uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	hi, err1 := strconv.ParseUint(a, 10, 16)
	lo, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: want ASN:VALUE with two 16-bit numbers, a well-known name, large:GLOBAL:LOCAL1:LOCAL2 or a Community alias", s)
	}
	return uint32(hi)<<16 | uint32(lo), nil
}

func parseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(s, ":")
	var v [3]uint32
	ok := len(parts) == 3
	for i := 0; ok && i < 3; i++ {
		n, err := strconv.ParseUint(parts[i], 10, 32)
		ok = err == nil
		v[i] = uint32(n)
	}
	if !ok {
		return LargeCommunity{}, fmt.Errorf("large community %q: want GLOBAL:LOCAL1:LOCAL2 with 32-bit numbers", s)
	}
	return LargeCommunity{v[0], v[1], v[2]}, nil
}

// resolve reads one entry of a BGPAdvertisement's communities: a number pair, a well-known
// name, "large:..." or an alias.
func (a CommunityAliases) resolve(s string) (communityValue, error) {
	if v, wk := WellKnownCommunities[s]; wk {
		return communityValue{std: v}, nil
	}
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		c, err := parseStandardCommunity(s)
		return communityValue{std: c}, err
	}
	if strings.HasPrefix(s, "large:") {
		return parseCommunityValue(s)
	}
	v, ok := a.m[s]
	if !ok {
		return communityValue{}, fmt.Errorf("community %q: no Community object defines this alias (known: %s)", s, a.known())
	}
	if v.conflict != "" {
		return communityValue{}, fmt.Errorf("community %q: %s", s, v.conflict)
	}
	return v, nil
}

func (a CommunityAliases) known() string {
	var names []string
	for n, v := range a.m {
		if v.conflict == "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// CompiledBGPAdvertisement is a BGPAdvertisement as the speakers apply it: selectors parsed,
// communities (aliases included) resolved to numbers, defaults filled in.
//
// +kubebuilder:object:generate=false
type CompiledBGPAdvertisement struct {
	Object *BGPAdvertisement
	Pools  []labels.Selector
	Nodes  []labels.Selector
	// AggregationLength and AggregationLengthV6 are the prefix lengths advertised (default 32
	// and 128).
	AggregationLength, AggregationLengthV6 int
	// Communities are sorted and unique, aliases and well-known names replaced by their values.
	Communities []uint32
	// LargeCommunities are those of communities ("large:...", aliases) and largeCommunities
	// together, sorted and unique.
	LargeCommunities []LargeCommunity
}

// Compile validates the advertisement beyond what the apiserver checks (label keys and values,
// selector operators, pool and peer names, community aliases, which only Community objects
// define, aggregation lengths against the pools it selects, and the schema's ranges for
// objects stored before they existed) and resolves it. pools are the cluster's IPPools. The
// controller reports its error as Accepted=False and the speakers skip the same objects, so an
// advertisement the controller refuses is exactly one no speaker applies. Every problem is
// reported at once, each naming its field.
func (a *BGPAdvertisement) Compile(aliases CommunityAliases, pools []*IPPool) (*CompiledBGPAdvertisement, error) {
	s := &a.Spec
	c := &CompiledBGPAdvertisement{Object: a, AggregationLength: 32, AggregationLengthV6: 128}
	var errs []error
	var err error
	if c.Pools, err = selectors("ipPoolSelectors", s.IPPoolSelectors); err != nil {
		errs = append(errs, err)
	}
	selectorsOK := err == nil
	if c.Nodes, err = selectors("nodeSelectors", s.NodeSelectors); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []struct {
		field string
		names []string
		what  string
	}{{"ipPools", s.IPPools, "pool"}, {"peers", s.Peers, "BGPPeer"}} {
		for _, n := range f.names {
			if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a %s name: %s", f.field, n, f.what, strings.Join(msgs, "; ")))
			}
		}
	}
	lengthsOK := true
	if l := s.AggregationLength; l != nil {
		if *l < 0 || *l > 32 {
			errs = append(errs, fmt.Errorf("aggregationLength %d: must be 0 to 32", *l))
			lengthsOK = false
		}
		c.AggregationLength = int(*l)
	}
	if l := s.AggregationLengthV6; l != nil {
		if *l < 0 || *l > 128 {
			errs = append(errs, fmt.Errorf("aggregationLengthV6 %d: must be 0 to 128", *l))
			lengthsOK = false
		}
		c.AggregationLengthV6 = int(*l)
	}
	if selectorsOK && lengthsOK {
		errs = append(errs, c.aggregationWithinPools(pools)...)
	}
	for i, cm := range s.Communities {
		v, err := aliases.resolve(cm)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("communities[%d]: %w", i, err))
		case v.large != nil:
			c.LargeCommunities = append(c.LargeCommunities, *v.large)
		default:
			c.Communities = append(c.Communities, v.std)
		}
	}
	for i, lc := range s.LargeCommunities {
		v, err := parseLargeCommunity(lc)
		if err != nil {
			errs = append(errs, fmt.Errorf("largeCommunities[%d]: %w", i, err))
			continue
		}
		c.LargeCommunities = append(c.LargeCommunities, v)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(c.Communities)
	c.Communities = slices.Compact(c.Communities)
	slices.SortFunc(c.LargeCommunities, CompareLargeCommunities)
	c.LargeCommunities = slices.Compact(c.LargeCommunities)
	return c, nil
}

// aggregationWithinPools refuses aggregation lengths shorter than a prefix of a pool the
// advertisement selects: the aggregate route would cover addresses outside the pool, which
// the router would then send to the nodes. As in MetalLB, each pool entry is taken as the
// fewest prefixes covering it (one for a CIDR), and the length must be at least that of the
// entry's widest prefix.
func (c *CompiledBGPAdvertisement) aggregationWithinPools(pools []*IPPool) []error {
	if c.AggregationLength == 32 && c.AggregationLengthV6 == 128 {
		return nil
	}
	pools = slices.Clone(pools)
	slices.SortFunc(pools, func(a, b *IPPool) int { return cmp.Compare(a.Name, b.Name) })
	var errs []error
	for _, p := range pools {
		if !c.SelectsPool(p.Name, p.Labels) || p.ElasticIPs() != nil {
			continue
		}
		entries, err := pool.ParseRanges(p.Spec.Addresses)
		if err != nil {
			continue // no speaker announces from it; its own status says why
		}
		// Per family, the entry whose widest prefix is the longest: the length it needs is
		// the least the advertisement may use.
		var worst [2]struct {
			entry  pool.Range
			widest netip.Prefix
		}
		for _, r := range entries {
			var widest netip.Prefix
			for _, pf := range r.Prefixes() {
				if !widest.IsValid() || pf.Bits() < widest.Bits() {
					widest = pf
				}
			}
			f := 0
			if !widest.Addr().Is4() {
				f = 1
			}
			if !worst[f].widest.IsValid() || widest.Bits() > worst[f].widest.Bits() {
				worst[f].entry, worst[f].widest = r, widest
			}
		}
		for f, w := range worst {
			field, length := "aggregationLength", c.AggregationLength
			if f == 1 {
				field, length = "aggregationLengthV6", c.AggregationLengthV6
			}
			if !w.widest.IsValid() || length >= w.widest.Bits() {
				continue
			}
			where := fmt.Sprintf("prefix %s of pool %q", w.widest, p.Name)
			if w.entry.String() != w.widest.String() {
				where = fmt.Sprintf("prefix %s, the widest in range %s of pool %q", w.widest, w.entry, p.Name)
			}
			errs = append(errs, fmt.Errorf("%s %d is shorter than %s: a /%d route would cover addresses outside the pool (use %d or more, or select other pools)",
				field, length, where, length, w.widest.Bits()))
		}
	}
	return errs
}

// SelectsPool reports whether the advertisement covers the pool of that name and those labels:
// named in ipPools, matched by an ipPoolSelector, or every pool when neither is given. (By
// name and labels rather than an IPPool: a Service may hold an address of a pool that has
// since gone, which is known by the name the controller recorded.)
func (c *CompiledBGPAdvertisement) SelectsPool(name string, poolLabels map[string]string) bool {
	if len(c.Object.Spec.IPPools) == 0 && len(c.Pools) == 0 {
		return true
	}
	return slices.Contains(c.Object.Spec.IPPools, name) || anyMatches(c.Pools, poolLabels)
}

// SelectsNode reports whether a node with these labels advertises: any selector matching, or
// every node when there is none.
func (c *CompiledBGPAdvertisement) SelectsNode(l map[string]string) bool {
	return len(c.Nodes) == 0 || anyMatches(c.Nodes, l)
}

// SelectsPeer reports whether the paths go to the BGPPeer of that name: named in peers, or
// every peer when peers is empty.
func (c *CompiledBGPAdvertisement) SelectsPeer(name string) bool {
	return len(c.Object.Spec.Peers) == 0 || slices.Contains(c.Object.Spec.Peers, name)
}

// Prefix is the prefix advertised for addr: addr itself, or the aggregate of the configured
// length that holds it.
func (c *CompiledBGPAdvertisement) Prefix(addr netip.Addr) netip.Prefix {
	bits := c.AggregationLength
	if !addr.Is4() {
		bits = c.AggregationLengthV6
	}
	return netip.PrefixFrom(addr, bits).Masked()
}
