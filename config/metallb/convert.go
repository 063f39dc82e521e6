// Package metallb converts MetalLB's configuration (metallb.io v1beta1/v1beta2, MetalLB v0.13 to
// v0.15) into Fairlead's. It is pure: objects in, objects and a report out. Input MetalLB would
// refuse, or that Fairlead's API would, is an error naming the object and the field, and
// nothing is converted; what converts with a difference is said in the report, one line each.
//
// MetalLB's types here are read, never served: controller-gen makes no CRDs of them.
// +kubebuilder:skip
package metallb

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// AnnotationMigratedFrom is set on every object the conversion writes: which MetalLB object
// it came from.
const AnnotationMigratedFrom = "fairlead.dev/migrated-from"

// DefaultNamespace is where MetalLB is usually installed; it reads its objects only there.
const DefaultNamespace = "metallb-system"

// Options of a conversion.
type Options struct {
	// Namespace is MetalLB's namespace (default metallb-system). MetalLB ignores objects in
	// other namespaces, and so does the conversion. Objects without a namespace (files) count
	// as being in it.
	Namespace string
	// SecretNamespace is where Fairlead's speakers read BGP passwords (their
	// --bgp-secret-namespace, default fairlead-system).
	SecretNamespace string
}

// Result is Fairlead's configuration, in the order to create it (what is referred to first),
// and the report.
type Result struct {
	Objects []client.Object
	Report  []string
}

type converter struct {
	o   Options
	in  *Input
	out Result
	// What the input holds, by name, for references.
	pools     map[string]*IPAddressPool
	ranges    map[string][]pool.Range
	peers     map[string]bool
	profiles  map[string]bool
	community map[string]alias
}

// alias is one of MetalLB's community aliases: its value in Fairlead's spelling, and whether
// Fairlead's Community can hold its name (else advertisements get the value instead).
type alias struct {
	value string
	kept  bool
}

// Convert converts in. On error nothing is returned: a partial configuration would announce or
// hand out addresses differently from what MetalLB did.
func Convert(in *Input, o Options) (*Result, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.SecretNamespace == "" {
		o.SecretNamespace = "fairlead-system"
	}
	c := &converter{o: o, in: in, pools: map[string]*IPAddressPool{},
		ranges: map[string][]pool.Range{}, peers: map[string]bool{}, profiles: map[string]bool{}, community: map[string]alias{}}
	c.out.Report = append(c.out.Report, in.Ignored...)
	for _, step := range []func() error{c.bfdProfiles, c.ipPools, c.communities, c.l2Advertisements, c.bgpPeers, c.bgpAdvertisements, c.services} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return &c.out, nil
}

func id(kind string, m metav1.ObjectMeta) string {
	if m.Namespace == "" {
		return kind + " " + m.Name
	}
	return kind + " " + m.Namespace + "/" + m.Name
}

// mine says whether MetalLB would read the object, and checks its name. seen maps the names of
// the kind so far to their objects: Fairlead's kinds are cluster-scoped, so two objects of one
// name (a file's without a namespace and one in MetalLB's) would become one object.
func (c *converter) mine(kind string, m metav1.ObjectMeta, seen map[string]string) (bool, error) {
	if m.Namespace != "" && m.Namespace != c.o.Namespace {
		c.report("%s: left out: MetalLB reads only its own namespace, %s", id(kind, m), c.o.Namespace)
		return false, nil
	}
	if m.Name == "" {
		return false, fmt.Errorf("%s: metadata.name is empty", id(kind, m))
	}
	if first, dup := seen[m.Name]; dup {
		return false, fmt.Errorf("%s: metadata.name: %s has the same name, and both would be Fairlead's cluster-scoped %s %q", id(kind, m), first, kind, m.Name)
	}
	seen[m.Name] = id(kind, m)
	return true, nil
}

func (c *converter) report(format string, args ...any) {
	c.out.Report = append(c.out.Report, fmt.Sprintf(format, args...))
}

// meta is the metadata of a converted object: the name and labels (selectors may match them),
// and where it came from.
func meta(kind, apiVersion string, m metav1.ObjectMeta) metav1.ObjectMeta {
	var labels map[string]string
	if len(m.Labels) > 0 {
		labels = map[string]string{}
		for k, v := range m.Labels {
			labels[k] = v
		}
	}
	return metav1.ObjectMeta{Name: m.Name, Labels: labels,
		Annotations: map[string]string{AnnotationMigratedFrom: apiVersion + " " + id(kind, m)}}
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind}
}

func checkSelectors(objID, field string, sel []metav1.LabelSelector) error {
	seen := map[string]bool{}
	for i := range sel {
		s, err := metav1.LabelSelectorAsSelector(&sel[i])
		if err != nil {
			return fmt.Errorf("%s: %s[%d]: %w", objID, field, i, err)
		}
		if seen[s.String()] {
			return fmt.Errorf("%s: %s[%d]: the same selector as an earlier one (%s)", objID, field, i, s)
		}
		seen[s.String()] = true
	}
	return nil
}

func noDuplicates(objID, field string, list []string) error {
	seen := map[string]bool{}
	for i, s := range list {
		if seen[s] {
			return fmt.Errorf("%s: %s[%d]: %q is listed twice", objID, field, i, s)
		}
		seen[s] = true
	}
	return nil
}

func between(objID, field string, v *uint32, lo, hi uint32) error {
	if v != nil && (*v < lo || *v > hi) {
		return fmt.Errorf("%s: %s: %d is outside %d-%d", objID, field, *v, lo, hi)
	}
	return nil
}

func (c *converter) bfdProfiles() error {
	seen := map[string]string{}
	for i := range c.in.BFDProfiles {
		p := &c.in.BFDProfiles[i]
		if ok, err := c.mine("BFDProfile", p.ObjectMeta, seen); !ok {
			if err != nil {
				return err
			}
			continue
		}
		objID := id("BFDProfile", p.ObjectMeta)
		s := p.Spec
		for _, chk := range []error{
			between(objID, "spec.receiveInterval", s.ReceiveInterval, 10, 60000),
			between(objID, "spec.transmitInterval", s.TransmitInterval, 10, 60000),
			between(objID, "spec.detectMultiplier", s.DetectMultiplier, 2, 255),
			between(objID, "spec.echoInterval", s.EchoInterval, 10, 60000),
			between(objID, "spec.minimumTtl", s.MinimumTTL, 1, 254),
		} {
			if chk != nil {
				return chk
			}
		}
		out := &v1alpha1.BFDProfile{TypeMeta: typeMeta("BFDProfile"), ObjectMeta: meta("BFDProfile", p.APIVersion, p.ObjectMeta),
			Spec: v1alpha1.BFDProfileSpec{ReceiveInterval: s.ReceiveInterval, TransmitInterval: s.TransmitInterval,
				DetectMultiplier: s.DetectMultiplier, EchoInterval: s.EchoInterval, MinimumTTL: s.MinimumTTL}}
		if s.EchoMode != nil && *s.EchoMode {
			out.Spec.EchoMode = true
			c.report("%s: spec.echoMode true: Fairlead's BFD has no echo function; the sessions run with control packets only (detection by receiveInterval × detectMultiplier)", objID)
		}
		if s.PassiveMode != nil {
			out.Spec.PassiveMode = *s.PassiveMode
		}
		c.profiles[p.Name] = true
		c.out.Objects = append(c.out.Objects, out)
	}
	return nil
}

// ipPools converts IPAddressPools. MetalLB tries, for a Service, first the pools with a
// serviceAllocation that admit it (lowest priority value first, priority 0 or unset after
// every set one, equal priorities in random order), then the pools without one (in random
// order). Fairlead tries pools by priority, lowest first, then those without a priority, ties
// by name; so a pool with a serviceAllocation keeps its priority, one with priority 0 gets one
// more than the highest in use, and pools without a serviceAllocation get none.
func (c *converter) ipPools() error {
	seen := map[string]string{}
	var pools []*IPAddressPool
	for i := range c.in.Pools {
		p := &c.in.Pools[i]
		ok, err := c.mine("IPAddressPool", p.ObjectMeta, seen)
		if err != nil {
			return err
		}
		if ok {
			pools = append(pools, p)
		}
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].Name < pools[j].Name })
	highest := 0
	for _, p := range pools {
		objID := id("IPAddressPool", p.ObjectMeta)
		if a := p.Spec.ServiceAllocation; a != nil {
			if a.Priority < 0 || a.Priority > math.MaxInt32 {
				return fmt.Errorf("%s: spec.serviceAllocation.priority: %d is not between 0 and %d", objID, a.Priority, math.MaxInt32)
			}
			if a.Priority == math.MaxInt32 {
				// Unset priorities go after it, and no priority is after MaxInt32.
				return fmt.Errorf("%s: spec.serviceAllocation.priority: %d leaves no room below it for pools without a priority", objID, a.Priority)
			}
			highest = max(highest, a.Priority)
		}
	}
	byPriority := map[int32][]string{}
	var unpinned []string
	for _, p := range pools {
		objID := id("IPAddressPool", p.ObjectMeta)
		s := p.Spec
		if len(s.Addresses) == 0 {
			return fmt.Errorf("%s: spec.addresses is empty", objID)
		}
		if len(s.Addresses) > 64 {
			return fmt.Errorf("%s: spec.addresses has %d entries; a Fairlead IPPool takes at most 64 (split the pool)", objID, len(s.Addresses))
		}
		addrs := make([]string, len(s.Addresses))
		for i, a := range s.Addresses {
			a = strings.TrimSpace(a)
			// MetalLB reads a CIDR with host bits set as its network.
			if pfx, err := netip.ParsePrefix(a); err == nil && pfx.Masked() != pfx {
				c.report("%s: spec.addresses[%d]: %s has host bits set; MetalLB reads it as %s, and so it is written", objID, i, a, pfx.Masked())
				a = pfx.Masked().String()
			}
			if _, err := pool.ParseRange(a); err != nil {
				return fmt.Errorf("%s: spec.addresses[%d]: %w", objID, i, err)
			}
			addrs[i] = a
		}
		rs, err := pool.ParseRanges(addrs)
		if err != nil {
			return fmt.Errorf("%s: spec.addresses: %w", objID, err)
		}
		for _, other := range slices.Sorted(maps.Keys(c.ranges)) {
			if x, y, overlap := pool.Overlaps(c.ranges[other], rs); overlap {
				return fmt.Errorf("%s: spec.addresses: %s overlaps %s of IPAddressPool %s", objID, y, x, other)
			}
		}
		c.ranges[p.Name] = rs
		out := &v1alpha1.IPPool{TypeMeta: typeMeta("IPPool"), ObjectMeta: meta("IPAddressPool", p.APIVersion, p.ObjectMeta),
			Spec: v1alpha1.IPPoolSpec{Addresses: addrs, AutoAssign: s.AutoAssign, AvoidBuggyIPs: s.AvoidBuggyIPs}}
		if a := s.ServiceAllocation; a != nil {
			if err := noDuplicates(objID, "spec.serviceAllocation.namespaces", a.Namespaces); err != nil {
				return err
			}
			if err := checkSelectors(objID, "spec.serviceAllocation.namespaceSelectors", a.NamespaceSelectors); err != nil {
				return err
			}
			if err := checkSelectors(objID, "spec.serviceAllocation.serviceSelectors", a.ServiceSelectors); err != nil {
				return err
			}
			prio := int32(a.Priority)
			if a.Priority == 0 {
				prio = int32(highest + 1)
				if highest > 0 {
					c.report("%s: spec.serviceAllocation.priority unset: written as priority %d, after every pool with a priority and before the pools without a serviceAllocation, where MetalLB puts it", objID, prio)
				}
			}
			out.Spec.Priority = &prio
			if len(a.Namespaces)+len(a.NamespaceSelectors)+len(a.ServiceSelectors) > 0 {
				out.Spec.AllocateTo = &v1alpha1.AllocateTo{Namespaces: a.Namespaces, NamespaceSelectors: a.NamespaceSelectors, ServiceSelectors: a.ServiceSelectors}
			}
			if out.AutoAssigns() {
				byPriority[prio] = append(byPriority[prio], p.Name)
			}
		} else if out.AutoAssigns() {
			unpinned = append(unpinned, p.Name)
		}
		c.pools[p.Name] = p
		c.out.Objects = append(c.out.Objects, out)
	}
	for _, prio := range slices.Sorted(maps.Keys(byPriority)) {
		if names := byPriority[prio]; len(names) > 1 {
			c.report("IPAddressPools %s: the same priority (%d): MetalLB tries them in random order, Fairlead by name, in this order", strings.Join(names, ", "), prio)
		}
	}
	if len(unpinned) > 1 {
		c.report("IPAddressPools %s: no serviceAllocation: MetalLB tries them in random order, Fairlead by name, in this order", strings.Join(unpinned, ", "))
	}
	return nil
}

// communities converts each Community into Fairlead's (cluster-scoped, same name), with the
// aliases whose names Fairlead can hold; BGPAdvertisements then keep naming them. An alias
// Fairlead cannot hold is written out as its value where it is used.
func (c *converter) communities() error {
	seen := map[string]string{}
	for i := range c.in.Communities {
		cm := &c.in.Communities[i]
		ok, err := c.mine("Community", cm.ObjectMeta, seen)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		objID := id("Community", cm.ObjectMeta)
		if n := len(cm.Spec.Communities); n > 256 {
			return fmt.Errorf("%s: spec.communities has %d aliases; a Fairlead Community holds at most 256 (split it)", objID, n)
		}
		out := &v1alpha1.Community{TypeMeta: typeMeta("Community"), ObjectMeta: meta("Community", cm.APIVersion, cm.ObjectMeta)}
		for j, a := range cm.Spec.Communities {
			field := fmt.Sprintf("spec.communities[%d]", j)
			if a.Name == "" {
				return fmt.Errorf("%s: %s.name is empty", objID, field)
			}
			if _, dup := c.community[a.Name]; dup {
				return fmt.Errorf("%s: %s.name: alias %q is defined twice", objID, field, a.Name)
			}
			v, err := parseCommunity(a.Value)
			if err != nil {
				return fmt.Errorf("%s: %s.value: %w", objID, field, err)
			}
			why := aliasRefused(a.Name)
			c.community[a.Name] = alias{value: v, kept: why == ""}
			if why != "" {
				c.report("%s: %s: alias %q cannot be a Fairlead alias: %s; BGPAdvertisements that use it get its value %s instead (the same community is sent)", objID, field, a.Name, why, v)
				continue
			}
			out.Spec.Communities = append(out.Spec.Communities, v1alpha1.CommunityAlias{Name: a.Name, Value: v})
		}
		c.out.Objects = append(c.out.Objects, out)
	}
	return nil
}

// aliasName is what Fairlead's Community and BGPAdvertisement accept as an alias: a name that
// cannot be mistaken for a number or a large community.
var aliasName = regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9_.]*$`)

// aliasRefused says why Fairlead cannot take name as an alias, or "" when it can.
func aliasRefused(name string) string {
	switch {
	case len(name) > 64:
		return "Fairlead's alias names have at most 64 characters"
	case !aliasName.MatchString(name):
		return "Fairlead's alias names start with a letter and hold only letters, digits, '-', '_' and '.'"
	case slices.Contains(wellKnownCommunities, name):
		return "in Fairlead it is the name of a well-known community (RFC 1997, RFC 3765)"
	}
	return ""
}

// wellKnownCommunities are the names Fairlead reads as well-known communities, never as aliases.
var wellKnownCommunities = []string{"no-export", "no-advertise", "no-export-subconfed", "no-peer"}

// parseCommunity reads MetalLB's community syntax: "65535:65282" (two 16-bit numbers) or
// "large:1:2:3" (three 32-bit numbers), and returns it as Fairlead writes it: the same
// syntax, numbers without leading zeros (Fairlead's fields are shorter than MetalLB's).
func parseCommunity(v string) (string, error) {
	parts := strings.Split(v, ":")
	large := len(parts) == 4 && parts[0] == "large"
	bits := 16
	if large {
		parts, bits = parts[1:], 32
	} else if len(parts) != 2 {
		return "", fmt.Errorf("%q is neither a community (65535:65282) nor a large community (large:64512:1:2)", v)
	}
	nums := make([]string, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, bits)
		if err != nil {
			return "", fmt.Errorf("%q: %q is not a %d-bit number", v, p, bits)
		}
		nums[i] = strconv.FormatUint(n, 10)
	}
	if large {
		return "large:" + strings.Join(nums, ":"), nil
	}
	return strings.Join(nums, ":"), nil
}

func (c *converter) poolRefs(objID string, names []string, sels []metav1.LabelSelector) ([]string, error) {
	if err := noDuplicates(objID, "spec.ipAddressPools", names); err != nil {
		return nil, err
	}
	for i, n := range names {
		if c.pools[n] == nil {
			return nil, fmt.Errorf("%s: spec.ipAddressPools[%d]: IPAddressPool %q does not exist", objID, i, n)
		}
	}
	return names, checkSelectors(objID, "spec.ipAddressPoolSelectors", sels)
}

func (c *converter) l2Advertisements() error {
	seen := map[string]string{}
	for i := range c.in.L2Advertisements {
		a := &c.in.L2Advertisements[i]
		ok, err := c.mine("L2Advertisement", a.ObjectMeta, seen)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		objID := id("L2Advertisement", a.ObjectMeta)
		pools, err := c.poolRefs(objID, a.Spec.IPAddressPools, a.Spec.IPAddressPoolSelectors)
		if err != nil {
			return err
		}
		if err := checkSelectors(objID, "spec.nodeSelectors", a.Spec.NodeSelectors); err != nil {
			return err
		}
		if err := noDuplicates(objID, "spec.interfaces", a.Spec.Interfaces); err != nil {
			return err
		}
		out := &v1alpha1.L2Advertisement{TypeMeta: typeMeta("L2Advertisement"), ObjectMeta: meta("L2Advertisement", a.APIVersion, a.ObjectMeta),
			Spec: v1alpha1.L2AdvertisementSpec{IPPools: pools, IPPoolSelectors: a.Spec.IPAddressPoolSelectors,
				NodeSelectors: a.Spec.NodeSelectors, Interfaces: a.Spec.Interfaces}}
		// The same validation the controller and speakers apply (interface names, selectors).
		if _, err := out.Compile(); err != nil {
			return fmt.Errorf("%s: %w", objID, err)
		}
		c.out.Objects = append(c.out.Objects, out)
	}
	return nil
}

func (c *converter) bgpPeers() error {
	seen := map[string]string{}
	for i := range c.in.Peers {
		p := &c.in.Peers[i]
		ok, err := c.mine("BGPPeer", p.ObjectMeta, seen)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		c.peers[p.Name] = true
		objID := id("BGPPeer", p.ObjectMeta)
		s := &p.Spec
		if s.MyASN == 0 {
			return fmt.Errorf("%s: spec.myASN is missing", objID)
		}
		if s.PeerASN == 0 && s.DynamicASN == "" {
			return fmt.Errorf("%s: spec.peerASN is missing (and no dynamicASN)", objID)
		}
		if s.PeerASN != 0 && s.DynamicASN != "" {
			return fmt.Errorf("%s: spec.dynamicASN %q and spec.peerASN %d are both set; MetalLB takes one", objID, s.DynamicASN, s.PeerASN)
		}
		if s.DynamicASN != "" && s.DynamicASN != "internal" && s.DynamicASN != "external" {
			return fmt.Errorf("%s: spec.dynamicASN: %q is neither internal nor external", objID, s.DynamicASN)
		}
		if (s.PeerAddress == "") == (s.Interface == "") {
			return fmt.Errorf("%s: spec.peerAddress and spec.interface: set exactly one", objID)
		}
		if s.PeerAddress != "" {
			if a, err := netip.ParseAddr(s.PeerAddress); err != nil || a.Zone() != "" {
				return fmt.Errorf("%s: spec.peerAddress: %q is not an IP address", objID, s.PeerAddress)
			}
		}
		if s.SourceAddress != "" {
			if a, err := netip.ParseAddr(s.SourceAddress); err != nil || a.Zone() != "" {
				return fmt.Errorf("%s: spec.sourceAddress: %q is not an IP address", objID, s.SourceAddress)
			}
		}
		if s.EBGPMultiHop && s.PeerASN == s.MyASN {
			return fmt.Errorf("%s: spec.ebgpMultiHop is set but the peer is iBGP (peerASN = myASN = %d)", objID, s.MyASN)
		}
		if s.HoldTime != nil && s.HoldTime.Duration != 0 && s.HoldTime.Duration.Seconds() < 3 {
			return fmt.Errorf("%s: spec.holdTime: %s is neither 0 nor at least 3s", objID, s.HoldTime.Duration)
		}
		if s.HoldTime != nil && s.KeepaliveTime != nil && s.KeepaliveTime.Duration >= s.HoldTime.Duration && s.HoldTime.Duration != 0 {
			return fmt.Errorf("%s: spec.keepaliveTime: %s is not shorter than holdTime %s", objID, s.KeepaliveTime.Duration, s.HoldTime.Duration)
		}
		if s.Password != "" && s.PasswordSecret.Name != "" {
			return fmt.Errorf("%s: spec.password and spec.passwordSecret are both set", objID)
		}
		if s.BFDProfile != "" && !c.profiles[s.BFDProfile] {
			return fmt.Errorf("%s: spec.bfdProfile: BFDProfile %q does not exist", objID, s.BFDProfile)
		}
		if err := checkSelectors(objID, "spec.nodeSelectors", s.NodeSelectors); err != nil {
			return err
		}
		// MetalLB takes any address as router ID and leaves it to FRR; a BGP identifier is
		// four bytes, and Fairlead's API says so.
		if s.RouterID != "" {
			if a, err := netip.ParseAddr(s.RouterID); err != nil || !a.Is4() || a.IsUnspecified() {
				return fmt.Errorf("%s: spec.routerID: %q is not a non-zero IPv4 address (a BGP identifier is 4 bytes)", objID, s.RouterID)
			}
		}
		if t := s.ConnectTime; t != nil && (t.Duration < time.Second || t.Duration > 65535*time.Second || t.Duration%time.Second != 0) {
			return fmt.Errorf("%s: spec.connectTime: %s is not a whole number of seconds from 1s to 65535s", objID, t.Duration)
		}
		if s.VRF != "" {
			if err := v1alpha1.InterfaceName(s.VRF); err != nil {
				return fmt.Errorf("%s: spec.vrf: %w", objID, err)
			}
		}
		converted := true
		for _, f := range peerNotYet {
			v := f.set(s)
			if v == "" {
				continue
			}
			if f.drop {
				c.out.Report = append(c.out.Report, notYet(objID, "spec."+f.field, v, f.why, "the peer is converted without it"))
			} else {
				c.out.Report = append(c.out.Report, notYet(objID, "spec."+f.field, v, f.why, "the peer is not converted"))
				converted = false
			}
		}
		if !converted {
			continue
		}
		out := &v1alpha1.BGPPeer{TypeMeta: typeMeta("BGPPeer"), ObjectMeta: meta("BGPPeer", p.APIVersion, p.ObjectMeta),
			Spec: v1alpha1.BGPPeerSpec{PeerAddress: s.PeerAddress, PeerASN: s.PeerASN, DynamicASN: s.DynamicASN, LocalASN: s.MyASN,
				RouterID: s.RouterID, Port: int32(s.PeerPort), HoldTime: s.HoldTime, KeepaliveTime: s.KeepaliveTime,
				ConnectTime: s.ConnectTime, VRF: s.VRF, SourceAddress: s.SourceAddress, NodeSelectors: s.NodeSelectors,
				BFDProfile: s.BFDProfile,
				// A MetalLB session carries only its own family's prefixes unless
				// dualStackAddressFamily is true; disableMP (deprecated) true keeps them apart
				// whatever dualStackAddressFamily says.
				DisableMP: s.DisableMP || !s.DualStackAddressFamily}}
		if s.VRF != "" && s.BFDProfile != "" {
			out.Spec.BFDProfile = ""
			c.out.Report = append(c.out.Report, bfdInVRFLine(objID, s.BFDProfile, s.VRF))
		}
		if s.EBGPMultiHop {
			ttl := int32(255) // what MetalLB's FRR configures for ebgp-multihop without a TTL
			out.Spec.EBGPMultihop = &ttl
		}
		if s.EnableGracefulRestart {
			out.Spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
		}
		if s.Password != "" {
			name := p.Name + "-bgp-password"
			c.out.Objects = append(c.out.Objects, &corev1.Secret{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.o.SecretNamespace, Annotations: map[string]string{AnnotationMigratedFrom: p.APIVersion + " " + objID + " spec.password"}},
				StringData: map[string]string{"password": s.Password},
			})
			out.Spec.PasswordSecret = &v1alpha1.SecretKeyRef{Name: name, Key: "password"}
			c.report("%s: spec.password: moved to Secret %s/%s (Fairlead reads passwords from Secrets only)", objID, c.o.SecretNamespace, name)
		}
		if ref := s.PasswordSecret; ref.Name != "" {
			// MetalLB reads the Secret in its own namespace when none is named; Fairlead in
			// the speakers', so the namespace is always written.
			ns := ref.Namespace
			if ns == "" {
				ns = c.o.Namespace
			}
			out.Spec.PasswordSecret = &v1alpha1.SecretKeyRef{Name: ref.Name, Namespace: ns, Key: "password"}
			if ns != c.o.SecretNamespace {
				c.report("%s: spec.passwordSecret: Secret %s/%s is read where it is: grant the speakers namespace %s with the chart value speaker.bgpSecretNamespaces (else the session is Invalid)", objID, ns, ref.Name, ns)
			}
		}
		// What the speakers would refuse, checked here too: nothing is written that Fairlead
		// would not run.
		if err := out.Validate(); err != nil {
			return fmt.Errorf("%s: %w", objID, err)
		}
		c.out.Objects = append(c.out.Objects, out)
	}
	return nil
}

func (c *converter) bgpAdvertisements() error {
	seen := map[string]string{}
	for i := range c.in.BGPAdvertisements {
		a := &c.in.BGPAdvertisements[i]
		ok, err := c.mine("BGPAdvertisement", a.ObjectMeta, seen)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		objID := id("BGPAdvertisement", a.ObjectMeta)
		s := &a.Spec
		pools, err := c.poolRefs(objID, s.IPAddressPools, s.IPAddressPoolSelectors)
		if err != nil {
			return err
		}
		if n := len(s.IPAddressPoolSelectors); n > 16 {
			return fmt.Errorf("%s: spec.ipAddressPoolSelectors has %d selectors; Fairlead's ipPoolSelectors takes at most 16", objID, n)
		}
		if err := checkSelectors(objID, "spec.nodeSelectors", s.NodeSelectors); err != nil {
			return err
		}
		if err := noDuplicates(objID, "spec.peers", s.Peers); err != nil {
			return err
		}
		for j, p := range s.Peers {
			if !c.peers[p] {
				return fmt.Errorf("%s: spec.peers[%d]: BGPPeer %q does not exist", objID, j, p)
			}
		}
		if l := s.AggregationLength; l != nil && (*l < 1 || *l > 32) {
			return fmt.Errorf("%s: spec.aggregationLength: %d is outside 1-32", objID, *l)
		}
		if l := s.AggregationLengthV6; l != nil && (*l < 0 || *l > 128) {
			return fmt.Errorf("%s: spec.aggregationLengthV6: %d is outside 0-128", objID, *l)
		}
		if err := noDuplicates(objID, "spec.communities", s.Communities); err != nil {
			return err
		}
		if n := len(s.Communities); n > 64 {
			return fmt.Errorf("%s: spec.communities has %d entries; Fairlead's takes at most 64", objID, n)
		}
		out := &v1alpha1.BGPAdvertisement{TypeMeta: typeMeta("BGPAdvertisement"), ObjectMeta: meta("BGPAdvertisement", a.APIVersion, a.ObjectMeta),
			Spec: v1alpha1.BGPAdvertisementSpec{IPPools: pools, IPPoolSelectors: s.IPAddressPoolSelectors, AggregationLength: s.AggregationLength,
				AggregationLengthV6: s.AggregationLengthV6, Peers: s.Peers, NodeSelectors: s.NodeSelectors}}
		if s.LocalPref != 0 {
			lp := s.LocalPref
			out.Spec.LocalPref = &lp
		}
		// As in MetalLB, a name is an alias before it is a value.
		for j, cm := range s.Communities {
			if al, ok := c.community[cm]; ok {
				if al.kept {
					out.Spec.Communities = appendNew(out.Spec.Communities, cm)
				} else {
					out.Spec.Communities = appendNew(out.Spec.Communities, al.value)
				}
				continue
			}
			v, err := parseCommunity(cm)
			if err != nil {
				return fmt.Errorf("%s: spec.communities[%d]: %q is not an alias of a Community, and %w", objID, j, cm, err)
			}
			out.Spec.Communities = appendNew(out.Spec.Communities, v)
		}
		for _, p := range s.Peers {
			if !c.converted("BGPPeer", p) {
				c.report("%s: spec.peers: BGPPeer %s is not converted (see above), so these paths go to the other peers only", objID, p)
			}
		}
		c.out.Objects = append(c.out.Objects, out)
	}
	return nil
}

// appendNew appends v unless present: an alias written out as its value and a literal may be
// the same community.
func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

func (c *converter) converted(kind, name string) bool {
	for _, o := range c.out.Objects {
		if o.GetObjectKind().GroupVersionKind().Kind == kind && o.GetName() == name {
			return true
		}
	}
	return false
}

// poolHolding returns the converted pool whose addresses include ip.
func (c *converter) poolHolding(ip string) *v1alpha1.IPPool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	for _, o := range c.out.Objects {
		if p, ok := o.(*v1alpha1.IPPool); ok {
			for _, r := range c.ranges[p.Name] {
				if r.Contains(a.Unmap()) {
					return p
				}
			}
		}
	}
	return nil
}

// services looks at the Services MetalLB gave addresses to, for what Fairlead would not keep
// as it is.
func (c *converter) services() error {
	byIP := map[string][]*corev1.Service{}
	for i := range c.in.Services {
		s := &c.in.Services[i]
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				byIP[in.IP] = append(byIP[in.IP], s)
			}
		}
	}
	for _, ip := range slices.Sorted(maps.Keys(byIP)) {
		svcs := byIP[ip]
		nss := sets.New[string]()
		var names []string
		for _, s := range svcs {
			nss.Insert(s.Namespace)
			names = append(names, s.Namespace+"/"+s.Name)
		}
		if nss.Len() < 2 {
			continue
		}
		sort.Strings(names)
		p := c.poolHolding(ip)
		if p == nil {
			c.report("Services %s: share %s across namespaces, but no IPAddressPool holds it: those of all but the Service created first get new addresses", strings.Join(names, ", "), ip)
			continue
		}
		p.Spec.ShareAcrossNamespaces = true
		c.report("Services %s: share %s across namespaces, which MetalLB allows when sharing keys match: IPPool %s is written with shareAcrossNamespaces: true so that they keep it (Fairlead shares within one namespace unless the pool opts in)", strings.Join(names, ", "), ip, p.Name)
	}
	return nil
}
