// Package e2e runs the real fairlead-speaker binary, one per node namespace, against a real
// kube-apiserver, and checks from a client namespace on the same bridge what a client on a LAN
// would see: whose MAC its kernel resolves an external address to, and where its TCP
// connections land, across speaker crashes, cut links and an unreachable apiserver.
//
// Each node namespace accepts TCP on port 8080 for every pool address and answers with its
// node name. The addresses are made local with `ip route add local <pool> dev lo` (the service
// proxy's rules do the equivalent on a real node); arp_ignore=1 keeps the node's kernel from
// answering ARP for them itself, so every answer the client gets comes from a speaker. The
// kernel never answers neighbour solicitations for a local route, only for configured
// addresses.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

var (
	env        *controlplane.Env
	speakerBin string
	kubeconfig string
	apiAddr    string
	secretFile string
)

func TestMain(m *testing.M) {
	controlplane.Main(m, controlplane.Options{}, func(cp *controlplane.ControlPlane) (err error) {
		env, kubeconfig = cp.Env, cp.Kubeconfig
		if speakerBin, err = kit.Build("./cmd/fairlead-speaker", kit.BuildOptions{}); err != nil {
			return err
		}
		// The speakers' member traffic is encrypted, as it should be in production.
		secretFile = filepath.Join(cp.Dir, "memberlist-key")
		apiAddr = strings.TrimSuffix(strings.TrimPrefix(env.Config.Host, "https://"), "/")
		return os.WriteFile(secretFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	})
}

var ctx = context.Background()

const (
	pool4 = "198.51.100.0/24"
	pool6 = "2001:db8:ff::/64"
)

type node struct {
	name    string
	ns      *netns.NS
	mac     string
	port    string // its port on the LAN bridge
	relay   *netns.Relay
	speaker *netns.Proc
}

type cluster struct {
	t      testing.TB
	lan    *netns.NS
	client *netns.NS
	nodes  []*node
	c      client.Client
}

func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

func (c *cluster) names() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.name)
	}
	return out
}

// newCluster builds three node namespaces and a client on one bridge, registers the Nodes
// (Ready, InternalIP on the LAN), a pool and an L2Advertisement for it, and starts a speaker
// in every node namespace. Everything is removed when the test ends.
func newCluster(t testing.TB, nodeLabels map[string]map[string]string) *cluster {
	c := &cluster{t: t, lan: netns.New(t, "lan"), client: netns.New(t, "client"), c: env.Client}
	netns.Veth(t, c.client, "eth0", c.lan, "pc")
	ports := []string{"pc"}
	c.client.Addr("eth0", "192.0.2.100/24")
	c.client.Addr("eth0", "2001:db8:0:1::100/64")
	// The pools are on the LAN: the client resolves their addresses on-link.
	c.client.MustRun("ip", "route", "add", pool4, "dev", "eth0")
	c.client.MustRun("ip", "-6", "route", "add", pool6, "dev", "eth0")
	t.Cleanup(c.deleteObjects)
	for i := 1; i <= 3; i++ {
		n := &node{name: fmt.Sprintf("node%d", i), ns: netns.New(t, fmt.Sprintf("node%d", i)), port: fmt.Sprintf("p%d", i)}
		netns.Veth(t, n.ns, "eth0", c.lan, n.port)
		ports = append(ports, n.port)
		n.ns.Addr("eth0", fmt.Sprintf("192.0.2.%d/24", 10+i))
		n.ns.Addr("eth0", fmt.Sprintf("2001:db8:0:1::%d/64", 10+i))
		n.ns.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
		n.ns.Sysctl("net.ipv4.conf.eth0.arp_ignore", "1")
		n.ns.MustRun("ip", "route", "add", "local", pool4, "dev", "lo")
		n.ns.MustRun("ip", "-6", "route", "add", "local", pool6, "dev", "lo")
		serveName(t, n)
		n.relay = n.ns.ForwardRelay(apiAddr, apiAddr)
		c.nodes = append(c.nodes, n)

		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: nodeLabels[n.name]}}
		if err := c.c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		obj.Status = corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.0.2.%d", 10+i)}},
		}
		if err := c.c.Status().Update(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	c.lan.Bridge("br0", ports...)
	// Until their link-local addresses finish duplicate address detection, nodes cannot
	// resolve the client to answer it over IPv6 (see waitDAD).
	for _, ns := range append([]*netns.NS{c.client}, nodeNamespaces(c.nodes)...) {
		waitDAD(t, ns)
	}
	c.create(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{pool4, pool6}}})
	c.create(&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{"lan"}}})
	for _, n := range c.nodes {
		c.start(n)
	}
	// Every speaker up and seeing the others: the tests start from a settled cluster (a
	// speaker that has not read the API yet cannot join, which matters once it is cut off).
	for _, n := range c.nodes {
		kit.Eventually(t, 30*time.Second, n.name+"'s speaker to see all three", membersAlive(t, n, 3))
	}
	return c
}

func nodeNamespaces(nodes []*node) []*netns.NS {
	var out []*netns.NS
	for _, n := range nodes {
		out = append(out, n.ns)
	}
	return out
}

// waitDAD waits for the namespace's link-local addresses to finish duplicate address
// detection: until then its kernel sends no neighbour solicitation for a reply whose source
// is not one of its own addresses (here: the external address), so TCP over IPv6 would stall.
func waitDAD(t testing.TB, ns *netns.NS) {
	kit.Eventually(t, 10*time.Second, "duplicate address detection in "+ns.Name, func(context.Context) error {
		if out := ns.MustRun("ip", "-6", "addr", "show", "tentative"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("tentative: %s", out)
		}
		return nil
	})
}

func (c *cluster) create(obj client.Object) {
	c.t.Helper()
	if err := c.c.Create(ctx, obj); err != nil {
		c.t.Fatal(err)
	}
}

// deleteObjects leaves the shared apiserver empty for the next test.
func (c *cluster) deleteObjects() {
	for _, obj := range []client.Object{&corev1.Node{}, &v1alpha1.IPPool{}, &v1alpha1.L2Advertisement{}} {
		if err := c.c.DeleteAllOf(ctx, obj); err != nil {
			c.t.Logf("cleaning up %T: %v", obj, err)
		}
	}
	for _, obj := range []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}, &v1alpha1.ServiceAnnouncement{}, &corev1.Event{}} {
		if err := c.c.DeleteAllOf(ctx, obj, client.InNamespace("default")); err != nil {
			c.t.Logf("cleaning up %T: %v", obj, err)
		}
	}
}

func (c *cluster) start(n *node) {
	p := n.ns.Start(speakerBin, "--node-name", n.name, "--kubeconfig", kubeconfig,
		"--metrics-bind-address", "127.0.0.1:7474", "--metrics-secure=false", "--memberlist-secret-file", secretFile, "-v=1")
	n.speaker = p
	// The namespace's log tail is short; keep whole logs of a failed test for the post-mortem.
	c.t.Cleanup(func() {
		if !c.t.Failed() {
			return
		}
		f, err := os.CreateTemp("", fmt.Sprintf("fairlead-l2-%s-%s-*.log", strings.ReplaceAll(c.t.Name(), "/", "_"), n.name))
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.WriteString(f, p.Output())
		c.t.Logf("full log of %s's speaker: %s", n.name, f.Name())
	})
}

// serveName accepts TCP on port 8080 of every address and answers with the node's name.
func serveName(t testing.TB, n *node) {
	var ln net.Listener
	err := n.ns.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		n.mac = ifi.HardwareAddr.String()
		ln, err = net.Listen("tcp", ":8080")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(conn, n.name)
			conn.Close()
		}
	}()
}

// service creates a LoadBalancer Service holding ips (written to its status, as the
// controller would).
func (c *cluster) service(name string, local bool, ips ...string) *corev1.Service {
	c.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Ports:                         []corev1.ServicePort{{Port: 8080, Protocol: corev1.ProtocolTCP}},
			AllocateLoadBalancerNodePorts: ptr.To(false),
		},
	}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	c.create(svc)
	c.setIPs(svc, ips...)
	return svc
}

func (c *cluster) setIPs(svc *corev1.Service, ips ...string) {
	c.t.Helper()
	svc.Status.LoadBalancer.Ingress = nil
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)})
	}
	if err := c.c.Status().Update(ctx, svc); err != nil {
		c.t.Fatal(err)
	}
}

// connect opens a TCP connection from the client and returns the name of the node that
// accepted it.
func (c *cluster) connect(ip string) (string, error) {
	var name string
	err := c.client.Do(func() error {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(conn)
		name = string(b)
		return err
	})
	return name, err
}

// neighMAC is the hardware address the client's kernel holds for ip, "" if none.
func (c *cluster) neighMAC(ip string) string {
	out, _ := c.client.Run("ip", "neigh", "show", ip, "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// expectServed waits until connections to ip land on owner and the client's neighbour entry
// holds owner's MAC.
func (c *cluster) expectServed(ip string, owner *node) {
	c.t.Helper()
	kit.Eventually(c.t, 30*time.Second, ip+" served by "+owner.name, func(context.Context) error {
		got, err := c.connect(ip)
		if mac := c.neighMAC(ip); err != nil || got != owner.name || mac != owner.mac {
			return fmt.Errorf("connect: %q, %v; neighbour %s (want %s)", got, err, mac, owner.mac)
		}
		return nil
	})
}

// expectMoved waits, without the client sending anything, until the client's neighbour entry
// for ip holds to's MAC (the new owner's gratuitous announcement did it), then checks that
// connections land there.
func (c *cluster) expectMoved(ip string, to *node) time.Duration {
	c.t.Helper()
	start := time.Now()
	kit.Eventually(c.t, 20*time.Second, ip+" moved to "+to.name, func(context.Context) error {
		if mac := c.neighMAC(ip); mac != to.mac {
			return fmt.Errorf("neighbour %s, want %s", mac, to.mac)
		}
		return nil
	})
	took := time.Since(start)
	// Connections follow (eventually: on a loaded machine the failure detector may flap once
	// while a test runs, and that is not what is being tested here).
	c.expectServed(ip, to)
	return took
}

func owner(ip string, candidates []string) string {
	o, _ := election.Owner(ip, candidates)
	return o
}

// addressesOwnedBy returns n addresses of the pools that election gives to want among
// candidates.
func addressesOwnedBy(want string, candidates []string, n int, v6 bool) []string {
	var out []string
	for i := 10; len(out) < n && i < 250; i++ {
		ip := fmt.Sprintf("198.51.100.%d", i)
		if v6 {
			ip = fmt.Sprintf("2001:db8:ff::%x", i)
		}
		if owner(ip, candidates) == want {
			out = append(out, ip)
		}
	}
	return out
}

func (c *cluster) announcement(svc string) []v1alpha1.Announcement {
	var sa v1alpha1.ServiceAnnouncement
	if err := c.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: svc}, &sa); err != nil {
		return nil
	}
	return sa.Status.Announcements
}

func (c *cluster) expectReported(svc, ip, node, protocol string) {
	c.t.Helper()
	kit.Eventually(c.t, 20*time.Second, fmt.Sprintf("ServiceAnnouncement %s: %s on %s", svc, ip, node), func(context.Context) error {
		as := c.announcement(svc)
		var l2 []v1alpha1.Announcement
		for _, a := range as {
			if a.IP == ip {
				l2 = append(l2, a)
			}
		}
		if len(l2) != 1 || l2[0].Node != node || l2[0].Protocol != protocol || !slices.Equal(l2[0].Interfaces, []string{"eth0"}) {
			return fmt.Errorf("announcements %+v", as)
		}
		return nil
	})
}

func (c *cluster) expectEvent(reason, substr string) {
	c.t.Helper()
	kit.Eventually(c.t, 20*time.Second, fmt.Sprintf("an Event %s saying %q", reason, substr), func(ctx context.Context) error {
		var evs corev1.EventList
		if err := c.c.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, substr) {
				return nil
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return fmt.Errorf("Events: %s", strings.Join(seen, "; "))
	})
}

// The owner of an IPv4 and an IPv6 address is SIGKILLed: both addresses move to the runner-up,
// the client's kernel learns it from the gratuitous announcements without asking, and
// connections land there. The API shows the move.
func TestAnnounceAndFailoverOnCrash(t *testing.T) {
	c := newCluster(t, nil)
	all := c.names()
	v4 := "198.51.100.10"
	first := owner(v4, all)
	v6 := addressesOwnedBy(first, all, 1, true)[0]
	c.service("web", false, v4, v6)

	c.expectServed(v4, c.node(first))
	c.expectServed(v6, c.node(first))
	c.expectReported("web", v4, first, v1alpha1.ProtocolARP)
	c.expectReported("web", v6, first, v1alpha1.ProtocolNDP)
	c.expectEvent("L2Announced", v4+" announced by "+first)

	c.node(first).speaker.Kill()
	rest := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == first })
	next := c.node(owner(v4, rest))
	t.Logf("IPv4 moved after %v", c.expectMoved(v4, next))
	if o := owner(v6, rest); o != next.name {
		next = c.node(o)
	}
	t.Logf("IPv6 moved after %v", c.expectMoved(v6, next))
	c.expectReported("web", v4, owner(v4, rest), v1alpha1.ProtocolARP)
	c.expectEvent("L2Moved", "taking over from "+first)

	// Back: the address returns to its rendezvous owner.
	c.start(c.node(first))
	c.expectServed(v4, c.node(first))

	// A graceful stop (SIGTERM, as on a rolling update) hands over at once: the speaker leaves
	// the member list and stops answering.
	c.node(first).speaker.Signal(syscall.SIGTERM)
	if ok, err := c.node(first).speaker.Wait(10 * time.Second); !ok || err != nil {
		t.Fatalf("speaker did not stop cleanly on SIGTERM: exited %v, %v", ok, err)
	}
	t.Logf("IPv4 moved after SIGTERM in %v", c.expectMoved(v4, c.node(owner(v4, rest))))
}

// The owner's link is cut: the others see it gone and take over; when the link returns, the
// address goes back, and the client follows without waiting for its entry to go stale.
func TestFailoverOnLinkCut(t *testing.T) {
	c := newCluster(t, nil)
	all := c.names()
	v4 := "198.51.100.20"
	first := c.node(owner(v4, all))
	v6 := addressesOwnedBy(first.name, all, 1, true)[0]
	c.service("web", false, v4, v6)
	c.expectServed(v4, first)
	c.expectServed(v6, first)

	c.lan.MustRun("ip", "link", "set", first.port, "down")
	rest := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == first.name })
	t.Logf("IPv4 moved after %v", c.expectMoved(v4, c.node(owner(v4, rest))))
	t.Logf("IPv6 moved after %v", c.expectMoved(v6, c.node(owner(v6, rest))))

	// While the partition heals, both sides may briefly answer; what matters is where it settles.
	c.lan.MustRun("ip", "link", "set", first.port, "up")
	c.expectServed(v4, first)
	c.expectServed(v6, first)
}

// externalTrafficPolicy: Local follows the ready endpoints; a node labelled
// exclude-from-external-load-balancers never answers, even for addresses it would win.
func TestTrafficPolicyLocalAndExcludedNode(t *testing.T) {
	c := newCluster(t, map[string]map[string]string{"node1": {election.ExcludeLabel: "true"}})
	local := c.service("local", true, "198.51.100.30")
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "local-1", Labels: map[string]string{discoveryv1.LabelServiceName: local.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.2.5"}, NodeName: ptr.To("node2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080)}},
	}
	c.create(eps)
	c.expectServed("198.51.100.30", c.node("node2"))

	// The endpoint moves to node3 (node2's goes unready first, as during a rollout).
	eps.Endpoints = []discoveryv1.Endpoint{
		{Addresses: []string{"10.244.2.5"}, NodeName: ptr.To("node2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		{Addresses: []string{"10.244.3.5"}, NodeName: ptr.To("node3"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
	}
	if err := c.c.Update(ctx, eps); err != nil {
		t.Fatal(err)
	}
	c.expectMoved("198.51.100.30", c.node("node3"))

	// Addresses node1 would own if it were not excluded go to the others.
	ips := addressesOwnedBy("node1", c.names(), 3, false)
	c.service("cluster", false, ips...)
	for _, ip := range ips {
		c.expectServed(ip, c.node(owner(ip, []string{"node2", "node3"})))
	}
	// An invalid L2Advertisement is skipped (and logged; the controller reports it in its
	// status, see controllers/l2advertisement) and blocks nothing else.
	c.create(&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: v1alpha1.L2AdvertisementSpec{
		NodeSelectors: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: "Near"}}}},
	}})
	for _, n := range c.nodes {
		kit.Eventually(t, 20*time.Second, n.name+"'s speaker to log that it skips the broken L2Advertisement", func(context.Context) error {
			out := n.speaker.Output()
			if !strings.Contains(out, `object="L2Advertisement broken"`) || !strings.Contains(out, `\"Near\" is not a valid label selector operator`) {
				return errors.New("not in its log yet")
			}
			return nil
		})
	}
	c.client.MustRun("ip", "neigh", "flush", "dev", "eth0")
	for _, ip := range ips {
		c.expectServed(ip, c.node(owner(ip, []string{"node2", "node3"})))
	}

	// node1's speaker, asked directly, stays silent.
	for _, ip := range ips {
		out, _ := c.client.Run("arping", "-c", "3", "-i", "eth0", ip)
		if strings.Contains(strings.ToLower(out), c.node("node1").mac) {
			t.Errorf("excluded node1 answered for %s:\n%s", ip, out)
		}
	}
}

// Without the apiserver the speakers keep announcing what they had, and still fail over
// between themselves; when it returns they converge on what changed meanwhile.
func TestAPIServerUnreachable(t *testing.T) {
	c := newCluster(t, nil)
	all := c.names()
	v4 := "198.51.100.40"
	first := c.node(owner(v4, all))
	svc := c.service("web", false, v4)
	c.expectServed(v4, first)

	for _, n := range c.nodes {
		n.relay.Cut()
	}
	// Long enough for every watch to have broken and the clients to be retrying.
	time.Sleep(5 * time.Second)
	c.client.MustRun("ip", "neigh", "flush", "dev", "eth0")
	c.expectServed(v4, first)

	// A speaker crash is still handled: membership does not need the apiserver.
	first.speaker.Kill()
	rest := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == first.name })
	c.expectMoved(v4, c.node(owner(v4, rest)))

	// Changes made while the speakers cannot see them are applied when they can.
	v4b := addressesOwnedBy(rest[0], rest, 1, false)[0]
	c.setIPs(svc, v4, v4b)
	time.Sleep(2 * time.Second)
	for _, n := range c.nodes {
		n.relay.Restore()
	}
	c.expectServed(v4b, c.node(rest[0]))
	c.expectServed(v4, c.node(owner(v4, rest)))
}
