// Package rules renders the proxy's model into nftables objects: a fixed skeleton of base
// chains and verdict maps (Base) and, per ServicePort, a handful of chains, map elements and
// affinity sets (Render). Packets find their Service by one lookup in a verdict map keyed on
// (address . protocol . port), so the per-packet cost does not grow with the number of
// Services. Rendering is pure: the syncer diffs renderings and writes the difference.
package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/fairlead-lb/fairlead/speaker/proxy/model"
)

// MasqueradeMark is the packet mark bit that asks nat-postrouting to masquerade.
const MasqueradeMark = 0x4000

// Names of the base objects.
const (
	ChainFilterPrerouting = "filter-prerouting"
	ChainFilterOutput     = "filter-output"
	// After DNAT: what still heads for a ClusterIP found no Service port.
	ChainFilterForward        = "filter-forward"
	ChainFilterOutputPostDNAT = "filter-output-post-dnat"
	ChainClusterIPsCheck      = "cluster-ips-check"
	ChainFirewallCheck        = "firewall-check"
	ChainEndpointsCheck       = "endpoints-check"
	ChainReject               = "reject-chain"
	ChainNATPrerouting        = "nat-prerouting"
	ChainNATOutput            = "nat-output"
	ChainNATPostrouting       = "nat-postrouting"
	ChainServices             = "services"
	ChainMasquerading         = "masquerading"
	ChainMarkMasq             = "mark-for-masquerade"
)

// Map and set names, per family (suffix -4 or -6).
func MapServiceIPs(f model.Family) string          { return fmt.Sprintf("service-ips-%d", f) }
func MapServiceNodePorts(f model.Family) string    { return fmt.Sprintf("service-nodeports-%d", f) }
func MapNoEndpointIPs(f model.Family) string       { return fmt.Sprintf("no-endpoint-services-%d", f) }
func MapNoEndpointNodePorts(f model.Family) string { return fmt.Sprintf("no-endpoint-nodeports-%d", f) }
func MapFirewallIPs(f model.Family) string         { return fmt.Sprintf("firewall-ips-%d", f) }
func SetNodePortCIDRs(f model.Family) string       { return fmt.Sprintf("nodeport-cidrs-%d", f) }
func SetClusterCIDRs(f model.Family) string        { return fmt.Sprintf("cluster-cidrs-%d", f) }
func SetClusterIPs(f model.Family) string          { return fmt.Sprintf("cluster-ips-%d", f) }
func SetServiceCIDRs(f model.Family) string        { return fmt.Sprintf("service-cidrs-%d", f) }

// The maps and sets of the shared path (see Render).
func MapEndpoints(f model.Family) string         { return fmt.Sprintf("endpoints-%d", f) }
func MapNodePortEndpoints(f model.Family) string { return fmt.Sprintf("nodeport-endpoints-%d", f) }
func MapLocalEndpoints(f model.Family) string    { return fmt.Sprintf("local-endpoints-%d", f) }
func MapLocalNodePortEndpoints(f model.Family) string {
	return fmt.Sprintf("local-nodeport-endpoints-%d", f)
}
func MapExternalLocalIPs(f model.Family) string { return fmt.Sprintf("external-local-ips-%d", f) }
func MapExternalLocalNodePorts(f model.Family) string {
	return fmt.Sprintf("external-local-nodeports-%d", f)
}
func SetMasqOutside(f model.Family) string         { return fmt.Sprintf("masq-outside-cluster-%d", f) }
func SetMasqAlways(f model.Family) string          { return fmt.Sprintf("masq-always-%d", f) }
func SetMasqAlwaysNodePorts(f model.Family) string { return fmt.Sprintf("masq-always-nodeports-%d", f) }
func SetMasqFromNode(f model.Family) string        { return fmt.Sprintf("masq-from-node-%d", f) }
func SetMasqFromNodeNodePorts(f model.Family) string {
	return fmt.Sprintf("masq-from-node-nodeports-%d", f)
}
func SetHairpin(f model.Family) string { return fmt.Sprintf("hairpin-%d", f) }

// MaxSpread is the largest endpoint count the shared spread chains serve. A ServicePort
// with more endpoints, or with session affinity, gets chains of its own.
const MaxSpread = 32

// spreadKind selects which endpoints a shared spread chain picks from.
type spreadKind int

const (
	spreadAddr          spreadKind = iota // by destination address: ClusterIP, external IPs
	spreadNodePort                        // by NodePort
	spreadLocalAddr                       // node-local endpoints of externalTrafficPolicy Local, by address
	spreadLocalNodePort                   // the same, by NodePort
)

var spreadKinds = []spreadKind{spreadAddr, spreadNodePort, spreadLocalAddr, spreadLocalNodePort}

func (k spreadKind) prefix() string {
	return [...]string{"spread", "spread-np", "spread-local", "spread-local-np"}[k]
}

func (k spreadKind) endpointMap(f model.Family) string {
	return [...]func(model.Family) string{MapEndpoints, MapNodePortEndpoints, MapLocalEndpoints, MapLocalNodePortEndpoints}[k](f)
}

func (k spreadKind) byAddress() bool { return k == spreadAddr || k == spreadLocalAddr }

// TypeofMap reports whether a base map is declared with typeof (the endpoint maps), and
// NamesTypeofMap whether a chain's rules name one (the spread chains). nft 1.0.6 cannot read
// such a declaration back from the kernel, so a full sync recreates those maps.
func TypeofMap(name string) bool {
	for _, k := range spreadKinds {
		for _, f := range families {
			if name == k.endpointMap(f) {
				return true
			}
		}
	}
	return false
}

func NamesTypeofMap(chain string) bool { return strings.HasPrefix(chain, "spread") }

// ProbeChain is a chain naming a typeof map that every table has: when it holds its rule,
// the others are taken to hold theirs.
var ProbeChain = SpreadChain(spreadAddr, model.IPv4, 1)

// SpreadChain is the shared chain that DNATs to one of n endpoints chosen at random.
func SpreadChain(k spreadKind, f model.Family, n int) string {
	return fmt.Sprintf("%s%d-%d", k.prefix(), f, n)
}

// spreadRule picks index numgen random mod n, and finds the endpoint under the packet's
// (address,) protocol and port and that index: one hash lookup, whatever the Service count.
func spreadRule(k spreadKind, f model.Family, n int) string {
	ip := ipKw(f)
	key := "meta l4proto . th dport"
	if k.byAddress() {
		key = ip + " daddr . " + key
	}
	return fmt.Sprintf("dnat %s to %s . numgen random mod %d map @%s", ip, key, n, k.endpointMap(f))
}

var families = []model.Family{model.IPv4, model.IPv6}

// Config is what the rules depend on besides the Services.
type Config struct {
	// NodePortCIDRs limits NodePorts to the node's addresses inside them; empty means all of
	// the node's addresses (loopback excepted).
	NodePortCIDRs []netip.Prefix
	// ClusterCIDRs are the pod networks. Traffic from elsewhere to a ClusterIP is
	// masqueraded, and pods reaching an externalTrafficPolicy Local Service's external
	// address are sent to any endpoint. Empty: neither.
	ClusterCIDRs []netip.Prefix
	// ServiceCIDRs are the ranges ClusterIPs are allocated from: traffic to an address in
	// them that no Service has is dropped rather than routed out of the node.
	ServiceCIDRs []netip.Prefix
	// MasqueradeAll masquerades all traffic to ClusterIPs (kube-proxy's --masquerade-all).
	MasqueradeAll bool
	// LocalInterface, when set, tells pods' traffic by its input interface (an nft
	// pattern: "cbr0", "veth*") instead of by ClusterCIDRs.
	LocalInterface string
}

// detectsLocal reports whether pods' traffic can be told from the rest in family f.
func (c Config) detectsLocal(f model.Family) bool {
	return c.LocalInterface != "" || len(c.prefixes(c.ClusterCIDRs, f)) > 0
}

// fromPods and notFromPods match traffic from (or not from) the pods of the cluster (of
// this node, with LocalInterface).
func (c Config) fromPods(f model.Family) string {
	if c.LocalInterface != "" {
		return fmt.Sprintf("iifname %q", c.LocalInterface)
	}
	return fmt.Sprintf("%s saddr @%s", ipKw(f), SetClusterCIDRs(f))
}

func (c Config) notFromPods(f model.Family) string {
	if c.LocalInterface != "" {
		return fmt.Sprintf("iifname != %q", c.LocalInterface)
	}
	return fmt.Sprintf("%s saddr != @%s", ipKw(f), SetClusterCIDRs(f))
}

// Equal reports whether two configurations render the same rules.
func (c Config) Equal(o Config) bool {
	return slices.Equal(c.NodePortCIDRs, o.NodePortCIDRs) && slices.Equal(c.ClusterCIDRs, o.ClusterCIDRs) &&
		slices.Equal(c.ServiceCIDRs, o.ServiceCIDRs) && c.MasqueradeAll == o.MasqueradeAll && c.LocalInterface == o.LocalInterface
}

func (c Config) prefixes(list []netip.Prefix, f model.Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range list {
		if model.FamilyOf(p.Addr()) == f {
			out = append(out, p.Masked())
		}
	}
	return out
}

func ipKw(f model.Family) string {
	if f == model.IPv6 {
		return "ip6"
	}
	return "ip"
}

func addrType(f model.Family) string {
	if f == model.IPv6 {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

// Base returns the skeleton: base chains hooked into netfilter, the lookup maps and the
// address sets, in an order that can be added to a transaction as is. Its rules are returned
// separately so a sync can flush the base chains and write them again.
func Base(cfg Config) (objs []knftables.Object, baseRules []*knftables.Rule) {
	hook := func(name string, t knftables.BaseChainType, h knftables.BaseChainHook, prio string) *knftables.Chain {
		return &knftables.Chain{Name: name, Type: knftables.PtrTo(t), Hook: knftables.PtrTo(h),
			Priority: knftables.PtrTo(knftables.BaseChainPriority(prio))}
	}
	objs = append(objs,
		hook(ChainFilterPrerouting, knftables.FilterType, knftables.PreroutingHook, "-110"),
		hook(ChainFilterOutput, knftables.FilterType, knftables.OutputHook, "-110"),
		hook(ChainNATPrerouting, knftables.NATType, knftables.PreroutingHook, "-100"),
		hook(ChainNATOutput, knftables.NATType, knftables.OutputHook, "-100"),
		hook(ChainNATPostrouting, knftables.NATType, knftables.PostroutingHook, "100"),
		hook(ChainFilterForward, knftables.FilterType, knftables.ForwardHook, "0"),
		hook(ChainFilterOutputPostDNAT, knftables.FilterType, knftables.OutputHook, "0"),
	)
	for _, n := range []string{ChainFirewallCheck, ChainEndpointsCheck, ChainReject, ChainServices, ChainMasquerading, ChainMarkMasq, ChainClusterIPsCheck} {
		objs = append(objs, &knftables.Chain{Name: n})
	}
	rule := func(chain string, parts ...string) {
		baseRules = append(baseRules, &knftables.Rule{Chain: chain, Rule: strings.Join(parts, " ")})
	}
	for _, f := range families {
		at := addrType(f)
		for _, m := range []string{MapServiceIPs(f), MapNoEndpointIPs(f), MapFirewallIPs(f)} {
			objs = append(objs, &knftables.Map{Name: m, Type: at + " . inet_proto . inet_service : verdict"})
		}
		for _, m := range []string{MapServiceNodePorts(f), MapNoEndpointNodePorts(f)} {
			objs = append(objs, &knftables.Map{Name: m, Type: "inet_proto . inet_service : verdict"})
		}
		objs = append(objs, &knftables.Set{Name: SetClusterIPs(f), Type: at})
		for _, s := range []string{SetNodePortCIDRs(f), SetClusterCIDRs(f), SetServiceCIDRs(f)} {
			objs = append(objs, &knftables.Set{Name: s, Type: at, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		}
		objs = append(objs,
			&knftables.Map{Name: MapExternalLocalIPs(f), Type: at + " . inet_proto . inet_service : verdict"},
			&knftables.Map{Name: MapExternalLocalNodePorts(f), Type: "inet_proto . inet_service : verdict"})
		ip := ipKw(f)
		// typeof, because numgen's integer has no plain type name to concatenate. nft 1.0.6
		// cannot read "th dport" back from the kernel in a map's data (and "tcp dport" would
		// restrict the rules to TCP), so a rule naming one of these maps can only be added
		// in the transaction that creates the map: see TypeofMap.
		target := ip + " daddr . th dport"
		for _, m := range []string{MapEndpoints(f), MapLocalEndpoints(f)} {
			objs = append(objs, &knftables.Map{Name: m, TypeOf: ip + " daddr . meta l4proto . th dport . numgen random mod 1 : " + target})
		}
		for _, m := range []string{MapNodePortEndpoints(f), MapLocalNodePortEndpoints(f)} {
			objs = append(objs, &knftables.Map{Name: m, TypeOf: "meta l4proto . th dport . numgen random mod 1 : " + target})
		}
		for _, s := range []string{SetMasqOutside(f), SetMasqAlways(f), SetMasqFromNode(f)} {
			objs = append(objs, &knftables.Set{Name: s, Type: at + " . inet_proto . inet_service"})
		}
		for _, s := range []string{SetMasqAlwaysNodePorts(f), SetMasqFromNodeNodePorts(f)} {
			objs = append(objs, &knftables.Set{Name: s, Type: "inet_proto . inet_service"})
		}
		objs = append(objs, &knftables.Set{Name: SetHairpin(f), Type: at + " . " + at})
		for _, k := range spreadKinds {
			for n := 1; n <= MaxSpread; n++ {
				name := SpreadChain(k, f, n)
				objs = append(objs, &knftables.Chain{Name: name})
				baseRules = append(baseRules, &knftables.Rule{Chain: name, Rule: spreadRule(k, f, n)})
			}
		}
	}

	// Filter, just before DNAT (-100): source ranges, then services without endpoints.
	for _, c := range []string{ChainFilterPrerouting, ChainFilterOutput} {
		rule(c, "ct state new jump", ChainFirewallCheck)
		rule(c, "ct state new jump", ChainEndpointsCheck)
	}
	// After DNAT a packet still addressed to a ClusterIP matched none of its Service's ports:
	// rejected, as a closed port would be. One addressed to a free address of the service
	// ranges is dropped: routed on, it would leave the node for the default gateway.
	for _, c := range []string{ChainFilterForward, ChainFilterOutputPostDNAT} {
		rule(c, "ct state new jump", ChainClusterIPsCheck)
	}
	for _, f := range families {
		rule(ChainClusterIPsCheck, ipKw(f), "daddr @"+SetClusterIPs(f), "goto", ChainReject)
		rule(ChainClusterIPsCheck, ipKw(f), "daddr @"+SetServiceCIDRs(f), "drop")
	}
	// A TCP reset rather than ICMP for TCP: ICMPv6 errors are rate-limited per peer (one a
	// second by default), which would turn a burst of rejections into timeouts.
	rule(ChainReject, "meta l4proto tcp reject with tcp reset")
	rule(ChainReject, "reject")
	for _, f := range families {
		ip := ipKw(f)
		rule(ChainFirewallCheck, ip, "daddr . meta l4proto . th dport vmap @"+MapFirewallIPs(f))
		rule(ChainEndpointsCheck, ip, "daddr . meta l4proto . th dport vmap @"+MapNoEndpointIPs(f))
		rule(ChainEndpointsCheck, nodePortMatch(cfg, f), "meta l4proto . th dport vmap @"+MapNoEndpointNodePorts(f))
	}

	// NAT.
	rule(ChainNATPrerouting, "jump", ChainServices)
	rule(ChainNATOutput, "jump", ChainServices)
	rule(ChainNATPostrouting, "jump", ChainMasquerading)
	rule(ChainMarkMasq, fmt.Sprintf("meta mark set meta mark | %#x", MasqueradeMark))
	// Hairpin: a pod that reached itself through a Service must see the reply come from
	// elsewhere, or it would answer itself directly and the connection would never form.
	for _, f := range families {
		ip := ipKw(f)
		rule(ChainMasquerading, fmt.Sprintf("ct status dnat %s saddr . %s daddr @%s jump %s", ip, ip, SetHairpin(f), ChainMarkMasq))
	}
	rule(ChainMasquerading, fmt.Sprintf("meta mark & %#x == 0 return", MasqueradeMark))
	rule(ChainMasquerading, fmt.Sprintf("meta mark set meta mark ^ %#x", MasqueradeMark))
	rule(ChainMasquerading, "masquerade fully-random")
	// The shared path's policies, as set lookups: which keys go to node-local endpoints
	// for external clients, and which are masqueraded. Services with chains of their own
	// have no elements here and do the same in their chains.
	external := func(f model.Family) string {
		return "fib saddr type != local " + cfg.notFromPods(f)
	}
	for _, f := range families {
		key := ipKw(f) + " daddr . meta l4proto . th dport"
		rule(ChainServices, external(f), key, "vmap @"+MapExternalLocalIPs(f))
		rule(ChainServices, key, "@"+SetMasqOutside(f), cfg.notFromPods(f), "jump", ChainMarkMasq)
		rule(ChainServices, key, "@"+SetMasqAlways(f), "jump", ChainMarkMasq)
		rule(ChainServices, "fib saddr type local", key, "@"+SetMasqFromNode(f), "jump", ChainMarkMasq)
		rule(ChainServices, key, "vmap @"+MapServiceIPs(f))
	}
	for _, f := range families {
		np, key := nodePortMatch(cfg, f), "meta l4proto . th dport"
		rule(ChainServices, np, external(f), key, "vmap @"+MapExternalLocalNodePorts(f))
		rule(ChainServices, np, key, "@"+SetMasqAlwaysNodePorts(f), "jump", ChainMarkMasq)
		rule(ChainServices, np, "fib saddr type local", key, "@"+SetMasqFromNodeNodePorts(f), "jump", ChainMarkMasq)
		rule(ChainServices, np, key, "vmap @"+MapServiceNodePorts(f))
	}
	return objs, baseRules
}

// BaseElements are the elements of the base address sets.
func BaseElements(cfg Config) []*knftables.Element {
	var out []*knftables.Element
	for _, f := range families {
		for _, p := range cfg.prefixes(cfg.NodePortCIDRs, f) {
			out = append(out, &knftables.Element{Set: SetNodePortCIDRs(f), Key: []string{p.String()}})
		}
		for _, p := range cfg.prefixes(cfg.ClusterCIDRs, f) {
			out = append(out, &knftables.Element{Set: SetClusterCIDRs(f), Key: []string{p.String()}})
		}
		for _, p := range cfg.prefixes(cfg.ServiceCIDRs, f) {
			out = append(out, &knftables.Element{Set: SetServiceCIDRs(f), Key: []string{p.String()}})
		}
	}
	return out
}

// nodePortMatch selects packets addressed to this node on an address NodePorts listen on.
func nodePortMatch(cfg Config, f model.Family) string {
	if len(cfg.NodePortCIDRs) > 0 {
		// An empty set for this family matches nothing, which is what was asked for.
		return fmt.Sprintf("fib daddr type local %s daddr @%s", ipKw(f), SetNodePortCIDRs(f))
	}
	// Loopback is excluded: reaching a DNATed pod from 127.0.0.1 needs route_localnet.
	if f == model.IPv6 {
		return "fib daddr type local ip6 daddr != ::1"
	}
	return "fib daddr type local ip daddr != 127.0.0.0/8"
}

// Chain is a regular chain and its rules.
type Chain struct {
	Name  string
	Rules []string
}

// Element is an element of one of the base maps, or of a base set when Value is empty.
type Element struct {
	Map   string
	Key   []string
	Value string
	// Group is the ID of the element that claims the key this one belongs to (its
	// service-ips or service-nodeports element): when another ServicePort holds that key,
	// the whole group is left out. Empty means the element is its own group.
	Group string
	// Shared elements may be wanted by several ServicePorts (a pod behind two Services):
	// they are counted, not claimed.
	Shared bool
}

// ID identifies the element within its map.
func (e Element) ID() string { return e.Map + " " + strings.Join(e.Key, " . ") }

// GroupID is the ID of the element's group.
func (e Element) GroupID() string {
	if e.Group != "" {
		return e.Group
	}
	return e.ID()
}

// Set is a session-affinity set of client addresses.
type Set struct {
	Name    string
	Type    string
	Timeout time.Duration
}

// Service is the nftables form of one ServicePort.
type Service struct {
	Chains   []Chain
	Elements []Element
	Sets     []Set
}

// Chain name prefixes. Names are readable: "clu4-default/web/tcp/http".
func chainName(kind string, sp *model.ServicePort) string {
	return fmt.Sprintf("%s%d-%s", kind, sp.Family, sp.BaseName())
}

func endpointName(kind string, sp *model.ServicePort, e model.Endpoint) string {
	// nft names cannot hold ':'; IPv6 addresses are written with '.' instead.
	return fmt.Sprintf("%s__%s/%d", chainName(kind, sp), strings.ReplaceAll(e.Addr.String(), ":", "."), e.Port)
}

// affinitySetName carries the timeout so that a changed timeout makes a new set rather than
// a conflicting redefinition of the old one.
func affinitySetName(sp *model.ServicePort, e model.Endpoint) string {
	return fmt.Sprintf("aff%d-%ds-%s__%s/%d", sp.Family, int(sp.AffinityTimeout.Seconds()), sp.BaseName(),
		strings.ReplaceAll(e.Addr.String(), ":", "."), e.Port)
}

func protoName(sp *model.ServicePort) string { return strings.ToLower(string(sp.Protocol)) }

// Render returns the chains, map elements and sets of one ServicePort.
//
// Most ServicePorts are only map elements: their addresses map to a shared spread chain
// for their endpoint count, which picks an index at random and finds the endpoint in a map
// keyed by (address, protocol, port, index); their policies are elements of the sets the
// services chain consults. A change to such a ServicePort is a few element updates, and nft
// never needs to read our chains to apply it. Session affinity, and endpoint counts above
// MaxSpread, get chains of their own (renderChains), as do source ranges.
func Render(sp *model.ServicePort, cfg Config) *Service {
	out := render(sp, cfg)
	// Whatever the ServicePort's rules, its ClusterIPs are known: other ports of theirs are
	// rejected after DNAT. Several ports share an address, so the elements are shared.
	for _, a := range sp.ClusterIPs {
		out.Elements = append(out.Elements, Element{Map: SetClusterIPs(sp.Family), Key: []string{a.String()}, Shared: true})
	}
	return out
}

func render(sp *model.ServicePort, cfg Config) *Service {
	if sp.AffinityTimeout > 0 || len(sp.ClusterEndpoints) > MaxSpread || len(sp.LocalEndpoints) > MaxSpread {
		return renderChains(sp, cfg)
	}
	out := &Service{}
	firewall(sp, out)
	if rejecting(sp, out) {
		return out
	}
	f, proto := sp.Family, protoName(sp)
	port := fmt.Sprint(sp.Port)
	elem := func(group, m, value string, key ...string) {
		out.Elements = append(out.Elements, Element{Map: m, Key: key, Value: value, Group: group})
	}
	// spread maps the key to the chain for len(eps) endpoints, and lists them under it.
	spread := func(group string, k spreadKind, vmap string, key []string, eps []model.Endpoint) {
		v := "drop"
		if len(eps) > 0 {
			v = "goto " + SpreadChain(k, f, len(eps))
		}
		elem(group, vmap, v, key...)
		for i, e := range eps {
			elem(group, k.endpointMap(f), fmt.Sprintf("%s . %d", e.Addr, e.Port), append(slices.Clone(key), fmt.Sprint(i))...)
		}
	}
	// Hairpin only concerns pods on this node: only their packets come through it.
	seen := map[netip.Addr]bool{}
	for _, e := range append(slices.Clone(sp.ClusterEndpoints), sp.LocalEndpoints...) {
		if e.Local && !seen[e.Addr] {
			seen[e.Addr] = true
			out.Elements = append(out.Elements, Element{Map: SetHairpin(f), Key: []string{e.Addr.String(), e.Addr.String()}, Shared: true})
		}
	}

	internal := sp.ClusterEndpoints
	if sp.InternalLocal {
		internal = sp.LocalEndpoints
	}
	for _, a := range sp.ClusterIPs {
		key := []string{a.String(), proto, port}
		group := Element{Map: MapServiceIPs(f), Key: key}.ID()
		spread(group, spreadAddr, MapServiceIPs(f), key, internal)
		switch {
		case cfg.MasqueradeAll:
			elem(group, SetMasqAlways(f), "", key...)
		case cfg.detectsLocal(f):
			elem(group, SetMasqOutside(f), "", key...)
		}
	}
	if !sp.ExternallyReachable() {
		return out
	}
	for _, a := range append(slices.Clone(sp.ExternalIPs), sp.LoadBalancerIPs...) {
		key := []string{a.String(), proto, port}
		group := Element{Map: MapServiceIPs(f), Key: key}.ID()
		spread(group, spreadAddr, MapServiceIPs(f), key, sp.ClusterEndpoints)
		if !sp.ExternalLocal {
			elem(group, SetMasqAlways(f), "", key...)
			continue
		}
		// Local: external clients keep their address and reach only this node's
		// endpoints; pods and the node itself go anywhere (the node masqueraded).
		spread(group, spreadLocalAddr, MapExternalLocalIPs(f), key, sp.LocalEndpoints)
		elem(group, SetMasqFromNode(f), "", key...)
	}
	if sp.NodePort != 0 {
		key := []string{proto, fmt.Sprint(sp.NodePort)}
		group := Element{Map: MapServiceNodePorts(f), Key: key}.ID()
		spread(group, spreadNodePort, MapServiceNodePorts(f), key, sp.ClusterEndpoints)
		if !sp.ExternalLocal {
			elem(group, SetMasqAlwaysNodePorts(f), "", key...)
		} else {
			spread(group, spreadLocalNodePort, MapExternalLocalNodePorts(f), key, sp.LocalEndpoints)
			elem(group, SetMasqFromNodeNodePorts(f), "", key...)
		}
	}
	return out
}

// firewall renders loadBalancerSourceRanges: a chain of the ServicePort's own that drops
// other sources, reached through the firewall map before anything else, with or without
// endpoints.
func firewall(sp *model.ServicePort, out *Service) {
	if len(sp.SourceRanges) == 0 || len(sp.LoadBalancerIPs) == 0 {
		return
	}
	f, ip, proto := sp.Family, ipKw(sp.Family), protoName(sp)
	fw := chainName("fw", sp)
	ranges := make([]string, len(sp.SourceRanges))
	for i, p := range sp.SourceRanges {
		ranges[i] = p.String()
	}
	out.Chains = append(out.Chains, Chain{Name: fw, Rules: []string{
		fmt.Sprintf("%s saddr != { %s } drop", ip, strings.Join(ranges, ", ")),
	}})
	for _, a := range sp.LoadBalancerIPs {
		out.Elements = append(out.Elements, Element{Map: MapFirewallIPs(f), Key: []string{a.String(), proto, fmt.Sprint(sp.Port)}, Value: "goto " + fw})
	}
}

// rejecting renders a ServicePort without endpoints: nothing can answer, so connections
// are rejected at once instead of timing out. It reports whether that was the case.
func rejecting(sp *model.ServicePort, out *Service) bool {
	if len(sp.ClusterEndpoints) > 0 {
		return false
	}
	f, proto, port := sp.Family, protoName(sp), fmt.Sprint(sp.Port)
	for _, a := range slices.Concat(sp.ClusterIPs, sp.ExternalIPs, sp.LoadBalancerIPs) {
		out.Elements = append(out.Elements, Element{Map: MapNoEndpointIPs(f), Key: []string{a.String(), proto, port}, Value: "goto " + ChainReject})
	}
	if sp.NodePort != 0 {
		out.Elements = append(out.Elements, Element{Map: MapNoEndpointNodePorts(f), Key: []string{proto, fmt.Sprint(sp.NodePort)}, Value: "goto " + ChainReject})
	}
	return true
}

// renderChains renders a ServicePort with chains of its own: a chain per endpoint (hairpin
// masquerade, affinity update, DNAT), spread chains with affinity lookups, and entry chains
// for ClusterIPs and external addresses.
func renderChains(sp *model.ServicePort, cfg Config) *Service {
	out := &Service{}
	firewall(sp, out)
	if rejecting(sp, out) {
		return out
	}
	f, ip, proto := sp.Family, ipKw(sp.Family), protoName(sp)
	port := fmt.Sprint(sp.Port)
	elem := func(m string, value string, key ...string) {
		out.Elements = append(out.Elements, Element{Map: m, Key: key, Value: value})
	}
	externals := append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...)

	// One chain per endpoint in use, shared by the cluster and local spreads.
	epChain := map[model.Endpoint]string{}
	addEndpoint := func(e model.Endpoint) {
		if _, ok := epChain[e]; ok {
			return
		}
		name := endpointName("ep", sp, e)
		epChain[e] = name
		rules := []string{
			// Hairpin: a pod reaching itself through the Service must see the reply come
			// from the Service, so its source is masqueraded.
			fmt.Sprintf("%s saddr %s jump %s", ip, e.Addr, ChainMarkMasq),
		}
		if sp.AffinityTimeout > 0 {
			set := affinitySetName(sp, e)
			out.Sets = append(out.Sets, Set{Name: set, Type: addrType(f), Timeout: sp.AffinityTimeout})
			rules = append(rules, fmt.Sprintf("update @%s { %s saddr }", set, ip))
		}
		rules = append(rules, fmt.Sprintf("meta l4proto %s dnat %s to %s", proto, ip, netip.AddrPortFrom(e.Addr, e.Port)))
		out.Chains = append(out.Chains, Chain{Name: name, Rules: rules})
	}
	spread := func(name string, eps []model.Endpoint) {
		var rules []string
		for _, e := range eps {
			addEndpoint(e)
		}
		if sp.AffinityTimeout > 0 {
			for _, e := range eps {
				rules = append(rules, fmt.Sprintf("%s saddr @%s goto %s", ip, affinitySetName(sp, e), epChain[e]))
			}
		}
		switch len(eps) {
		case 0:
			rules = append(rules, "drop")
		case 1:
			rules = append(rules, "goto "+epChain[eps[0]])
		default:
			vm := make([]string, len(eps))
			for i, e := range eps {
				vm[i] = fmt.Sprintf("%d : goto %s", i, epChain[e])
			}
			rules = append(rules, fmt.Sprintf("numgen random mod %d vmap { %s }", len(eps), strings.Join(vm, ", ")))
		}
		out.Chains = append(out.Chains, Chain{Name: name, Rules: rules})
	}

	clu, loc := chainName("clu", sp), chainName("loc", sp)
	needLocal := sp.InternalLocal || sp.ExternalLocal
	spread(clu, sp.ClusterEndpoints)
	if needLocal {
		spread(loc, sp.LocalEndpoints)
	}
	// ClusterIP entry.
	svc := chainName("svc", sp)
	var svcRules []string
	switch {
	case cfg.MasqueradeAll:
		svcRules = append(svcRules, "jump "+ChainMarkMasq)
	case cfg.detectsLocal(f):
		svcRules = append(svcRules, cfg.notFromPods(f)+" jump "+ChainMarkMasq)
	}
	if sp.InternalLocal {
		svcRules = append(svcRules, "goto "+loc)
	} else {
		svcRules = append(svcRules, "goto "+clu)
	}
	out.Chains = append(out.Chains, Chain{Name: svc, Rules: svcRules})
	for _, a := range sp.ClusterIPs {
		elem(MapServiceIPs(f), "goto "+svc, a.String(), proto, port)
	}

	// External entry: NodePort, externalIPs, LoadBalancer IPs.
	if sp.ExternallyReachable() {
		ext := chainName("ext", sp)
		var extRules []string
		if !sp.ExternalLocal {
			extRules = []string{"jump " + ChainMarkMasq, "goto " + clu}
		} else {
			// The client's address is kept, so only local endpoints can answer it. Traffic
			// from this node itself has no client to preserve and may go anywhere.
			extRules = []string{
				"fib saddr type local jump " + ChainMarkMasq,
				"fib saddr type local goto " + clu,
			}
			if cfg.detectsLocal(f) {
				extRules = append(extRules, cfg.fromPods(f)+" goto "+clu)
			}
			extRules = append(extRules, "goto "+loc)
		}
		out.Chains = append(out.Chains, Chain{Name: ext, Rules: extRules})
		for _, a := range externals {
			elem(MapServiceIPs(f), "goto "+ext, a.String(), proto, port)
		}
		if sp.NodePort != 0 {
			elem(MapServiceNodePorts(f), "goto "+ext, proto, fmt.Sprint(sp.NodePort))
		}
	}
	return out
}

// Count returns the number of rules and map/set elements a rendering programs.
func (s *Service) Count() (rules, elements int) {
	for _, c := range s.Chains {
		rules += len(c.Rules)
	}
	return rules, len(s.Elements)
}
