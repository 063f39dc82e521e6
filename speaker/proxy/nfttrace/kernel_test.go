package nfttrace_test

// The tracer against the kernel: one rendering of the proxy's rules is loaded into a node
// namespace with nft and into the tracer; real connections from a client, from pods and from
// the node itself must meet the fates the tracer predicts, and only those.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/speaker/proxy/model"
	"github.com/fairlead-lb/fairlead/speaker/proxy/nftsync"
	"github.com/fairlead-lb/fairlead/speaker/proxy/nfttrace"
	"github.com/fairlead-lb/fairlead/speaker/proxy/rules"
	"github.com/fairlead-lb/fairlead/test/netns"
)

const (
	nodeLAN4, nodeLAN6     = "192.0.2.1", "2001:db8:1::1"
	clientLAN4, clientLAN6 = "192.0.2.100", "2001:db8:1::100"
	podGW4, podGW6         = "10.244.1.1", "fd00:244:1::1"
	echoPort               = 8080
)

var (
	mustAddr = netip.MustParseAddr
	podAddrs = map[string][2]string{
		"pod-a": {"10.244.1.11", "fd00:244:1::b"}, // an endpoint on this node
		"pod-b": {"10.244.1.12", "fd00:244:1::c"}, // an endpoint "on another node" (labelled so)
		"pod-c": {"10.244.1.13", "fd00:244:1::d"}, // a client pod
	}
)

func endpoint(pod string, v6, local bool) model.Endpoint {
	i := 0
	if v6 {
		i = 1
	}
	return model.Endpoint{Addr: mustAddr(podAddrs[pod][i]), Port: echoPort, Local: local}
}

// servicePorts are the Services of the cross-check, one of each shape the rules take.
func servicePorts() []*model.ServicePort {
	a, b := endpoint("pod-a", false, true), endpoint("pod-b", false, false)
	a6, b6 := endpoint("pod-a", true, true), endpoint("pod-b", true, false)
	sp := func(name string, proto corev1.Protocol, f model.Family, port uint16, opts func(*model.ServicePort)) *model.ServicePort {
		s := &model.ServicePort{Namespace: "default", Name: name, Protocol: proto, Family: f, Port: port}
		opts(s)
		return s
	}
	return []*model.ServicePort{
		sp("web", corev1.ProtocolTCP, model.IPv4, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.LoadBalancerIPs, s.ExternalIPs = []netip.Addr{mustAddr("10.96.0.10")}, []netip.Addr{mustAddr("198.51.100.10")}, []netip.Addr{mustAddr("203.0.113.10")}
			s.NodePort, s.ClusterEndpoints, s.LocalEndpoints = 30080, []model.Endpoint{a, b}, []model.Endpoint{a}
		}),
		sp("web", corev1.ProtocolUDP, model.IPv4, 53, func(s *model.ServicePort) {
			s.ClusterIPs, s.NodePort, s.ClusterEndpoints, s.LocalEndpoints = []netip.Addr{mustAddr("10.96.0.10")}, 30053, []model.Endpoint{a, b}, []model.Endpoint{a}
		}),
		sp("web", corev1.ProtocolTCP, model.IPv6, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.LoadBalancerIPs = []netip.Addr{mustAddr("fd00:96::10")}, []netip.Addr{mustAddr("2001:db8:ff::10")}
			s.NodePort, s.ClusterEndpoints, s.LocalEndpoints = 30080, []model.Endpoint{a6, b6}, []model.Endpoint{a6}
		}),
		sp("local", corev1.ProtocolTCP, model.IPv4, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.LoadBalancerIPs, s.NodePort, s.ExternalLocal = []netip.Addr{mustAddr("10.96.0.20")}, []netip.Addr{mustAddr("198.51.100.20")}, 30081, true
			s.ClusterEndpoints, s.LocalEndpoints = []model.Endpoint{a, b}, []model.Endpoint{a}
		}),
		sp("local", corev1.ProtocolTCP, model.IPv6, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.LoadBalancerIPs, s.NodePort, s.ExternalLocal = []netip.Addr{mustAddr("fd00:96::20")}, []netip.Addr{mustAddr("2001:db8:ff::20")}, 30081, true
			s.ClusterEndpoints, s.LocalEndpoints = []model.Endpoint{a6, b6}, []model.Endpoint{a6}
		}),
		sp("denied", corev1.ProtocolTCP, model.IPv4, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.LoadBalancerIPs, s.SourceRanges = []netip.Addr{mustAddr("10.96.0.30")}, []netip.Addr{mustAddr("198.51.100.30")}, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
			s.ClusterEndpoints, s.LocalEndpoints = []model.Endpoint{a}, []model.Endpoint{a}
		}),
		sp("allowed", corev1.ProtocolTCP, model.IPv4, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.LoadBalancerIPs, s.SourceRanges = []netip.Addr{mustAddr("10.96.0.31")}, []netip.Addr{mustAddr("198.51.100.31")}, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			s.ClusterEndpoints, s.LocalEndpoints = []model.Endpoint{a, b}, []model.Endpoint{a}
		}),
		sp("empty", corev1.ProtocolTCP, model.IPv4, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.NodePort = []netip.Addr{mustAddr("10.96.0.40")}, 30082
		}),
		sp("empty", corev1.ProtocolUDP, model.IPv4, 53, func(s *model.ServicePort) {
			s.ClusterIPs = []netip.Addr{mustAddr("10.96.0.40")}
		}),
		sp("sticky", corev1.ProtocolTCP, model.IPv4, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.LoadBalancerIPs, s.AffinityTimeout = []netip.Addr{mustAddr("10.96.0.50")}, []netip.Addr{mustAddr("198.51.100.50")}, time.Minute
			s.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			s.ClusterEndpoints, s.LocalEndpoints = []model.Endpoint{a, b}, []model.Endpoint{a}
		}),
		sp("itp", corev1.ProtocolTCP, model.IPv4, 80, func(s *model.ServicePort) {
			s.ClusterIPs, s.InternalLocal = []netip.Addr{mustAddr("10.96.0.60")}, true
			s.ClusterEndpoints, s.LocalEndpoints = []model.Endpoint{a, b}, []model.Endpoint{a}
		}),
	}
}

// kernelWorld is the node, a client on its LAN, and three pods, each pod answering on
// echoPort (TCP and UDP) with the address it was reached at and the source it saw.
type kernelWorld struct {
	node, client *netns.NS
	pods         map[string]*netns.NS
}

func newKernelWorld(t *testing.T) *kernelWorld {
	w := &kernelWorld{node: netns.New(t, "node"), client: netns.New(t, "client"), pods: map[string]*netns.NS{}}
	netns.Veth(t, w.node, "lan", w.client, "lan")
	w.node.Addr("lan", nodeLAN4+"/24")
	w.node.Addr("lan", nodeLAN6+"/64")
	w.client.Addr("lan", clientLAN4+"/24")
	w.client.Addr("lan", clientLAN6+"/64")
	for _, r := range []string{"10.96.0.0/16", "198.51.100.0/24", "203.0.113.0/24"} {
		w.client.MustRun("ip", "route", "add", r, "via", nodeLAN4)
	}
	for _, r := range []string{"fd00:96::/112", "2001:db8:ff::/64"} {
		w.client.MustRun("ip", "-6", "route", "add", r, "via", nodeLAN6)
	}
	// The node's own connections to Service addresses need a route before DNAT.
	w.node.MustRun("ip", "route", "add", "default", "via", clientLAN4)
	w.node.MustRun("ip", "-6", "route", "add", "default", "via", clientLAN6)
	// ICMP errors are rate-limited per peer, and a redirect (the node routes a Service
	// address back out of the LAN it came from) uses up the allowance: a rejection would
	// then look like a drop. Neither is the rules' doing.
	for k, v := range map[string]string{"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
		"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
		"net.ipv4.icmp_ratelimit": "0", "net.ipv6.icmp.ratelimit": "0",
		"net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf.lan.send_redirects": "0"} {
		w.node.Sysctl(k, v)
	}
	for i, name := range []string{"pod-a", "pod-b", "pod-c"} {
		ns := netns.New(t, name)
		w.pods[name] = ns
		dev := fmt.Sprintf("p%d", i)
		netns.Veth(t, w.node, dev, ns, "eth0")
		ip4, ip6 := podAddrs[name][0], podAddrs[name][1]
		ns.Addr("eth0", ip4+"/32")
		ns.Addr("eth0", ip6+"/128")
		ns.MustRun("ip", "route", "add", podGW4, "dev", "eth0")
		ns.MustRun("ip", "route", "add", "default", "via", podGW4)
		ns.MustRun("ip", "-6", "route", "add", podGW6, "dev", "eth0")
		ns.MustRun("ip", "-6", "route", "add", "default", "via", podGW6)
		w.node.Addr(dev, podGW4+"/32")
		w.node.Addr(dev, podGW6+"/128")
		w.node.MustRun("ip", "route", "add", ip4+"/32", "dev", dev)
		w.node.MustRun("ip", "-6", "route", "add", ip6+"/128", "dev", dev)
		for _, ip := range []string{ip4, ip6} {
			serve(t, ns, name, net.JoinHostPort(ip, fmt.Sprint(echoPort)))
		}
	}
	// Something on the node answers on a NodePort, to tell "delivered to the node" apart.
	serve(t, w.node, "node", "127.0.0.1:30080")
	return w
}

// serve answers "<who> <local address> <source>" on TCP and UDP at addr, inside ns.
func serve(t *testing.T, ns *netns.NS, who, addr string) {
	var ln net.Listener
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s %s\n", who, c.LocalAddr(), c.RemoteAddr())
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %s %s\n", who, addr, from), from)
		}
	}()
}

// observe makes one connection from ns (bound to src) and says what became of it, in the
// words of nfttrace.Outcome.String.
func observe(ns *netns.NS, p nfttrace.Packet) (string, error) {
	var fate string
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: time.Second}
		if p.Proto == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: p.Src.AsSlice()}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: p.Src.AsSlice()}
		}
		conn, err := d.Dial(p.Proto, netip.AddrPortFrom(p.Dst, p.DPort).String())
		if err == nil {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			if p.Proto == "udp" {
				_, err = conn.Write([]byte("hi"))
			}
		}
		var line string
		if err == nil {
			line, err = bufio.NewReader(conn).ReadString('\n')
		}
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			fate = "reject"
			return nil
		case errors.As(err, &ne) && ne.Timeout():
			fate = "drop"
			return nil
		case err != nil:
			return err
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return fmt.Errorf("answer %q", line)
		}
		if f[0] == "node" {
			fate = "accept (to the node)"
			return nil
		}
		seen := netip.MustParseAddrPort(f[2]).Addr().Unmap()
		fate = "dnat " + f[1]
		if seen != p.Src {
			fate += " masquerade"
		}
		return nil
	})
	return fate, err
}

// normalize forgets what the kernel's answer cannot tell: how a rejection was made.
func normalize(outs []nfttrace.Outcome) []string {
	var out []string
	for _, o := range outs {
		s := o.String()
		if o.Verdict == nfttrace.Reject {
			s = "reject"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestTracerAgreesWithTheKernel(t *testing.T) {
	cfg := rules.Config{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/32")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("fd00:96::/112")},
	}
	desired := map[string]*rules.Service{}
	for _, sp := range servicePorts() {
		desired[sp.Key()] = rules.Render(sp, cfg)
	}
	script, _, err := nftsync.FullScript("fairlead", cfg, desired)
	if err != nil {
		t.Fatal(err)
	}
	rs := nfttrace.New()
	if err := rs.Load(script); err != nil {
		t.Fatal(err)
	}
	tr := &nfttrace.Tracer{Rules: rs, Node: nfttrace.Node{Addrs: []netip.Addr{
		mustAddr(nodeLAN4), mustAddr(nodeLAN6), mustAddr(podGW4), mustAddr(podGW6)}}}

	w := newKernelWorld(t)
	file := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	w.node.MustRun("nft", "-f", file)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := w.node.Run("nft", "list", "ruleset")
			t.Logf("the node's ruleset:\n%s", out)
		}
	})

	type from struct {
		ns    *netns.NS
		src   string
		local bool
		iface string
	}
	client := func(v6 bool) from {
		if v6 {
			return from{ns: w.client, src: clientLAN6, iface: "lan"}
		}
		return from{ns: w.client, src: clientLAN4, iface: "lan"}
	}
	node := func(src string) from { return from{ns: w.node, src: src, local: true} }
	pod := func(name string, v6 bool) from {
		i, dev := 0, map[string]string{"pod-a": "p0", "pod-b": "p1", "pod-c": "p2"}[name]
		if v6 {
			i = 1
		}
		return from{ns: w.pods[name], src: podAddrs[name][i], iface: dev}
	}
	cases := []struct {
		from  from
		proto string
		dst   string
	}{
		{client(false), "tcp", "10.96.0.10:80"},
		{client(false), "udp", "10.96.0.10:53"},
		{client(true), "tcp", "[fd00:96::10]:80"},
		{pod("pod-c", false), "tcp", "10.96.0.10:80"},
		{pod("pod-c", false), "udp", "10.96.0.10:53"},
		{pod("pod-c", true), "tcp", "[fd00:96::10]:80"},
		{pod("pod-a", false), "tcp", "10.96.0.10:80"}, // hairpin
		{node(nodeLAN4), "tcp", "10.96.0.10:80"},
		{client(false), "tcp", "10.96.0.10:81"},
		{client(false), "udp", "10.96.0.10:54"},
		{pod("pod-c", false), "tcp", "10.96.0.99:80"},
		{client(false), "tcp", nodeLAN4 + ":30080"},
		{client(false), "udp", nodeLAN4 + ":30053"},
		{client(true), "tcp", "[" + nodeLAN6 + "]:30080"},
		{pod("pod-c", false), "tcp", podGW4 + ":30080"},
		{node(nodeLAN4), "tcp", nodeLAN4 + ":30080"},
		{node("127.0.0.1"), "tcp", "127.0.0.1:30080"},
		{client(false), "tcp", "198.51.100.10:80"},
		{client(false), "tcp", "203.0.113.10:80"},
		{client(true), "tcp", "[2001:db8:ff::10]:80"},
		{pod("pod-c", false), "tcp", "198.51.100.10:80"},
		{client(false), "tcp", "198.51.100.20:80"},
		{client(false), "tcp", nodeLAN4 + ":30081"},
		{client(true), "tcp", "[2001:db8:ff::20]:80"},
		{client(true), "tcp", "[" + nodeLAN6 + "]:30081"},
		{pod("pod-c", false), "tcp", "198.51.100.20:80"},
		{pod("pod-c", true), "tcp", "[2001:db8:ff::20]:80"},
		{node(nodeLAN4), "tcp", "198.51.100.20:80"},
		{client(false), "tcp", "10.96.0.20:80"},
		{client(false), "tcp", "198.51.100.30:80"},
		{pod("pod-c", false), "tcp", "198.51.100.30:80"},
		{client(false), "tcp", "10.96.0.30:80"},
		{client(false), "tcp", "198.51.100.31:80"},
		{pod("pod-c", false), "tcp", "198.51.100.31:80"},
		{client(false), "tcp", "10.96.0.40:80"},
		{client(false), "udp", "10.96.0.40:53"},
		{client(false), "tcp", nodeLAN4 + ":30082"},
		{pod("pod-c", false), "tcp", "10.96.0.60:80"},
		{client(false), "tcp", "10.96.0.60:80"},
	}
	checked := 0
	for _, c := range cases {
		ap := netip.MustParseAddrPort(c.dst)
		p := nfttrace.Packet{Src: mustAddr(c.from.src), Dst: ap.Addr(), Proto: c.proto, DPort: ap.Port(), Local: c.from.local, InIface: c.from.iface}
		outs, err := tr.Trace(p)
		if err != nil {
			t.Fatal(err)
		}
		want := normalize(outs)
		// Enough tries to see every predicted fate: a miss of one in k has odds (1-1/k)^n.
		n := 3
		if len(want) > 1 {
			n = 16 * len(want)
		}
		var got []string
		for range n {
			fate, err := observe(c.from.ns, p)
			if err != nil {
				t.Fatalf("%v: %v", p, err)
			}
			got = append(got, fate)
		}
		slices.Sort(got)
		if got = slices.Compact(got); !slices.Equal(got, want) {
			t.Errorf("%v: the kernel did %q, the tracer says %q", p, got, want)
		}
		checked++
	}

	// Session affinity: the kernel's first choice holds, and the tracer told of the same.
	for _, dst := range []string{"198.51.100.50:80", "10.96.0.50:80"} {
		ap := netip.MustParseAddrPort(dst)
		p := nfttrace.Packet{Src: mustAddr(clientLAN4), Dst: ap.Addr(), Proto: "tcp", DPort: ap.Port(), InIface: "lan"}
		first, err := observe(w.client, p)
		if err != nil {
			t.Fatal(err)
		}
		outs, err := tr.Trace(p)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(outs, func(o nfttrace.Outcome) bool { return o.String() == first })
		if i < 0 {
			t.Fatalf("%v: the kernel's first choice %q is none of the tracer's %v", p, first, outs)
		}
		tr.Apply(outs[i])
		want := normalize(mustTrace(t, tr, p))
		for range 8 {
			fate, err := observe(w.client, p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal([]string{fate}, want) {
				t.Errorf("%v with affinity: the kernel did %q, the tracer says %q", p, fate, want)
			}
		}
		checked++
	}
	t.Logf("%d cases agree", checked)
}

func mustTrace(t *testing.T, tr *nfttrace.Tracer, p nfttrace.Packet) []nfttrace.Outcome {
	t.Helper()
	outs, err := tr.Trace(p)
	if err != nil {
		t.Fatal(err)
	}
	return outs
}
