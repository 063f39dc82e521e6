// Package lab runs all of Fairlead on one Linux box, in network namespaces named fl-* (or, for
// another instance beside it, another prefix such as the e2e suite's fle2e-*): a
// control plane (etcd, kube-apiserver, kube-controller-manager, fairlead-controller), three
// nodes (a lab agent that registers the Node and runs its pods as processes in namespaces of
// their own, and fairlead-speaker), a router running FRR with a client behind it, and a client
// on the nodes' LAN. Nothing in it has a route out of the box: the only way in from the host is
// a relay on the host's 127.0.0.1 to the apiserver (and to the lab's Prometheus).
package lab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// DefaultPrefix starts the names of the namespaces of the lab `make lab` runs.
const DefaultPrefix = "fl-"

// Namespaces of a lab, by role; the lab's prefix goes in front (fl-lan, fl-cp, ...).
const (
	roleLAN      = "lan" // holds the LAN bridge
	roleCP       = "cp"
	roleRouter   = "router"
	roleClientL2 = "client-l2"
	roleClientBG = "client-bgp"
)

// Addresses of the lab (DESIGN.md, "The lab"). Every instance uses the same ones: they live in
// the instance's own namespaces.
const (
	LANv4     = "192.0.2.0/24"
	LANv6     = "2001:db8:0:1::/64"
	RouterV4  = "192.0.2.1"
	RouterV6  = "2001:db8:0:1::1"
	CPv4      = "192.0.2.10"
	ClientV4  = "192.0.2.100"
	ClientV6  = "2001:db8:0:1::100"
	ServiceV4 = "10.96.0.0/16"
	ServiceV6 = "fd00:10:96::/108"
	// The router's other side: an "outside" network for the BGP client. Private addressing, it
	// never leaves the router's namespace.
	OutsideRouter   = "10.255.0.1"
	OutsideClient   = "10.255.0.2"
	OutsideRouterV6 = "fd00:255::1"
	OutsideClientV6 = "fd00:255::2"

	PoolL2v4  = "198.51.100.0/24"
	PoolL2v6  = "2001:db8:ff::/64"
	PoolBGPv4 = "203.0.113.0/24"
	PoolBGPv6 = "2001:db8:fe::/64"

	Nodes   = 3
	ASNLab  = 64512 // the nodes (iBGP among themselves is not used; each node peers with the router)
	ASNEdge = 64500 // the router
)

// Node describes lab node i (1-based).
type Node struct {
	Index        int
	Name         string // Kubernetes name
	NS           string // namespace
	V4, V6       string
	PodV4, PodV6 netip.Prefix
}

func (l *Lab) prefix() string {
	if l.Prefix == "" {
		return DefaultPrefix
	}
	return l.Prefix
}

// LAN is the namespace holding the LAN bridge.
func (l *Lab) LAN() string { return l.prefix() + roleLAN }

// CP is the control plane's namespace.
func (l *Lab) CP() string { return l.prefix() + roleCP }

// Router is the namespace running FRR.
func (l *Lab) Router() string { return l.prefix() + roleRouter }

// ClientL2 is the client on the nodes' LAN.
func (l *Lab) ClientL2() string { return l.prefix() + roleClientL2 }

// ClientBGP is the client behind the router.
func (l *Lab) ClientBGP() string { return l.prefix() + roleClientBG }

// Nodes returns the lab's nodes.
func (l *Lab) Nodes() []Node { return nodesFor(l.prefix()) }

// NodeNamed returns the lab node with Kubernetes name name.
func (l *Lab) NodeNamed(name string) (Node, bool) {
	for _, n := range l.Nodes() {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

func nodesFor(prefix string) []Node {
	var out []Node
	for i := 1; i <= Nodes; i++ {
		out = append(out, Node{
			Index: i,
			Name:  fmt.Sprintf("node%d", i),
			NS:    fmt.Sprintf("%snode%d", prefix, i),
			V4:    fmt.Sprintf("192.0.2.%d", 10+i),
			V6:    fmt.Sprintf("2001:db8:0:1::%d", 10+i),
			PodV4: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
			PodV6: netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%d::/64", i)),
		})
	}
	return out
}

// run runs a command in namespace ns ("" = the current one) and returns its output.
func run(ns string, name string, args ...string) (string, error) {
	if ns != "" {
		args = append([]string{"netns", "exec", ns, name}, args...)
		name = "ip"
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// script runs each line (an `ip`-style command with arguments split on spaces) in ns, stopping
// at the first error.
func script(ns string, lines ...string) error {
	for _, l := range lines {
		f := strings.Fields(l)
		if _, err := run(ns, f[0], f[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// Namespaces lists the lab's namespaces that exist now, Pods' included. Only the lab's own
// names count: tests make fl-* namespaces of their own, and another lab instance has names
// of its own, which this lab must never touch.
func (l *Lab) Namespaces() []string {
	own := map[string]bool{l.LAN(): true, l.CP(): true, l.Router(): true, l.ClientL2(): true, l.ClientBGP(): true}
	for _, n := range l.Nodes() {
		own[n.NS] = true
	}
	return listNamespaces(func(name string) bool { return own[name] || strings.HasPrefix(name, podNSPrefix(l.prefix())) })
}

func listNamespaces(keep func(string) bool) []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		if keep(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func addNS(name string) error {
	if err := script("", "ip netns add "+name); err != nil {
		return err
	}
	return script(name, "ip link set lo up")
}

// link plugs namespace ns into the LAN bridge as dev, with the given addresses.
func (l *Lab) link(ns, dev, port string, addrs ...string) error {
	tmp := "flt" + port
	if err := script("",
		fmt.Sprintf("ip link add %s netns %s type veth peer name %s netns %s", port, l.LAN(), tmp, ns)); err != nil {
		return err
	}
	if err := script(l.LAN(), "ip link set "+port+" master br0", "ip link set "+port+" up"); err != nil {
		return err
	}
	lines := []string{"ip link set " + tmp + " name " + dev, "ip link set " + dev + " up"}
	for _, a := range addrs {
		l := "ip addr add " + a + " dev " + dev
		if strings.Contains(a, ":") {
			l += " nodad"
		}
		lines = append(lines, l)
	}
	return script(ns, lines...)
}

// buildTopology creates every namespace and link, and the routes between them.
func (l *Lab) buildTopology() error {
	for _, ns := range []string{l.LAN(), l.CP(), l.Router(), l.ClientL2(), l.ClientBGP()} {
		if err := addNS(ns); err != nil {
			return err
		}
	}
	if err := script(l.LAN(), "ip link add br0 type bridge", "ip link set br0 up"); err != nil {
		return err
	}
	// The LAN bridge must not filter or delay anything: the lab's failover depends on
	// gratuitous ARP reaching every port at once.
	_ = script(l.LAN(), "ip link set br0 type bridge forward_delay 0 stp_state 0")
	if err := l.link(l.CP(), "eth0", "pcp", CPv4+"/24", "2001:db8:0:1::10/64"); err != nil {
		return err
	}
	// The control plane reaches every Pod as a cluster's control-plane node does (the CNI's
	// routes): the apiserver answers Pods that reach it through the `kubernetes` Service, which
	// the proxy DNATs but does not masquerade (the Pod's address is in the cluster CIDR).
	cpRoutes := []string{"ip route add default via " + RouterV4}
	for _, n := range l.Nodes() {
		cpRoutes = append(cpRoutes, fmt.Sprintf("ip route add %s via %s", n.PodV4, n.V4),
			fmt.Sprintf("ip -6 route add %s via %s", n.PodV6, n.V6))
	}
	if err := script(l.CP(), cpRoutes...); err != nil {
		return err
	}
	if err := l.link(l.Router(), "eth0", "prt", RouterV4+"/24", RouterV6+"/64"); err != nil {
		return err
	}
	// The router, the LAN's gateway, has the L2 pools on-link too (it resolves them by ARP and
	// NDP, as a gateway does for a LAN's layer 2 addresses), so clients behind it reach them.
	if err := script(l.Router(), "ip route add "+PoolL2v4+" dev eth0", "ip -6 route add "+PoolL2v6+" dev eth0"); err != nil {
		return err
	}
	if err := l.link(l.ClientL2(), "eth0", "pcl", ClientV4+"/24", ClientV6+"/64"); err != nil {
		return err
	}
	// The L2 client reaches the L2 pools on-link, by ARP and NDP, like a host on the same LAN
	// as MetalLB's layer 2 mode expects.
	if err := script(l.ClientL2(), "ip route add "+PoolL2v4+" dev eth0", "ip -6 route add "+PoolL2v6+" dev eth0",
		"ip route add default via "+RouterV4, "ip -6 route add default via "+RouterV6); err != nil {
		return err
	}
	// The router's far side and the BGP client.
	if err := script("", fmt.Sprintf("ip link add eth1 netns %s type veth peer name eth0 netns %s", l.Router(), l.ClientBGP())); err != nil {
		return err
	}
	if err := script(l.Router(), "ip link set eth1 up", "ip addr add "+OutsideRouter+"/30 dev eth1",
		"ip addr add "+OutsideRouterV6+"/64 dev eth1 nodad",
		"sysctl -qw net.ipv4.ip_forward=1", "sysctl -qw net.ipv6.conf.all.forwarding=1"); err != nil {
		return err
	}
	if err := script(l.ClientBGP(), "ip link set eth0 up", "ip addr add "+OutsideClient+"/30 dev eth0",
		"ip addr add "+OutsideClientV6+"/64 dev eth0 nodad",
		"ip route add default via "+OutsideRouter, "ip -6 route add default via "+OutsideRouterV6); err != nil {
		return err
	}
	nodes := l.Nodes()
	for _, n := range nodes {
		if err := addNS(n.NS); err != nil {
			return err
		}
		if err := l.link(n.NS, "eth0", fmt.Sprintf("pn%d", n.Index), n.V4+"/24", n.V6+"/64"); err != nil {
			return err
		}
		podGW, podGW6 := n.PodV4.Addr().Next(), n.PodV6.Addr().Next()
		lines := []string{
			"sysctl -qw net.ipv4.ip_forward=1",
			"sysctl -qw net.ipv6.conf.all.forwarding=1",
			// Pods hang off a bridge with the first address of the node's pod CIDRs as gateway.
			"ip link add cbr0 type bridge", "ip link set cbr0 up",
			fmt.Sprintf("ip addr add %s/%d dev cbr0", podGW, n.PodV4.Bits()),
			fmt.Sprintf("ip addr add %s/%d dev cbr0 nodad", podGW6, n.PodV6.Bits()),
			"ip route add default via " + RouterV4,
			"ip -6 route add default via " + RouterV6,
		}
		for _, o := range nodes {
			if o.Index != n.Index {
				lines = append(lines, fmt.Sprintf("ip route add %s via %s", o.PodV4, o.V4),
					fmt.Sprintf("ip -6 route add %s via %s", o.PodV6, o.V6))
			}
		}
		if err := script(n.NS, lines...); err != nil {
			return err
		}
	}
	return nil
}

// deleteNamespaces kills every process inside the lab's namespaces and deletes them.
func (l *Lab) deleteNamespaces() []error {
	var errs []error
	for _, ns := range l.Namespaces() {
		if out, err := run("", "ip", "netns", "pids", ns); err == nil {
			killAll(out)
		}
		if _, err := run("", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// killAll SIGKILLs the pids listed in out (`ip netns pids`), never this process: one of its
// threads may still sit in the namespace (DialIn).
func killAll(out string) {
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
