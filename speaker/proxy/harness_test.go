package proxy_test

// The traffic tests: a node namespace runs the real fairlead-speaker with --proxy against a
// real kube-apiserver; "pods" are namespaces behind veths of the node, each running
// test/echo; a client namespace sits on the node's LAN. Tests create Services and
// EndpointSlices directly (there is no kube-controller-manager) and send real packets.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

var (
	ctx        = context.Background()
	env        *controlplane.Env
	client     kubernetes.Interface
	speakerBin string
	echoBin    string
	kubeconfig string
	apiAddr    string // host:port of the apiserver on 127.0.0.1
)

func TestMain(m *testing.M) {
	controlplane.Main(m, controlplane.Options{ServiceCIDRs: "10.96.0.0/16,fd00:96::/112"}, func(cp *controlplane.ControlPlane) (err error) {
		env, kubeconfig = cp.Env, cp.Kubeconfig
		if speakerBin, err = kit.Build("./cmd/fairlead-speaker", kit.BuildOptions{}); err != nil {
			return err
		}
		if echoBin, err = kit.Build("./test/echo", kit.BuildOptions{}); err != nil {
			return err
		}
		u, err := url.Parse(env.Config.Host)
		if err != nil {
			return err
		}
		apiAddr = u.Host
		client, err = kubernetes.NewForConfig(env.Config)
		return err
	})
}

// Addresses of the topology.
const (
	nodeName   = "node-a"
	otherNode  = "node-b" // endpoints "on another node": really behind node-a, labelled otherwise
	nodeLAN4   = "192.0.2.1"
	nodeLAN6   = "2001:db8:1::1"
	clientLAN4 = "192.0.2.100"
	clientLAN6 = "2001:db8:1::100"
	podGW4     = "10.244.1.1"
	podGW6     = "fd00:244:1::1"
	echoPort   = 8080
)

// cluster is one test's world.
type cluster struct {
	t       *testing.T
	ns      string // Kubernetes namespace of the test's objects
	node    *netns.NS
	client  *netns.NS
	speaker *netns.Proc
	relay   *netns.Relay // the node's way to the apiserver, which a test can cut
	pods    map[string]*pod
	args    []string
	env     []string // extra environment of the speaker
}

type pod struct {
	name     string
	ns       *netns.NS
	ip4, ip6 string
}

var clusterSeq atomic.Int32

// newCluster builds the node and client namespaces and starts the speaker with extra args.
func newCluster(t *testing.T, extraArgs ...string) *cluster {
	t.Helper()
	return newClusterEnv(t, nil, extraArgs...)
}

// newClusterEnv is newCluster with extra environment variables for the speaker.
func newClusterEnv(t *testing.T, env []string, extraArgs ...string) *cluster {
	t.Helper()
	n := clusterSeq.Add(1)
	c := &cluster{t: t, ns: fmt.Sprintf("proxy-%d", n), pods: map[string]*pod{}, env: env}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Other tests' speakers watch every namespace: leave nothing behind for them.
	t.Cleanup(func() {
		_ = client.DiscoveryV1().EndpointSlices(c.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		svcs, _ := client.CoreV1().Services(c.ns).List(ctx, metav1.ListOptions{})
		for _, s := range svcs.Items {
			_ = client.CoreV1().Services(c.ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
		}
	})

	c.node = netns.New(t, "node")
	c.client = netns.New(t, "client")
	netns.Veth(t, c.node, "lan", c.client, "lan")
	c.node.Addr("lan", nodeLAN4+"/24")
	c.node.Addr("lan", nodeLAN6+"/64")
	c.client.Addr("lan", clientLAN4+"/24")
	c.client.Addr("lan", clientLAN6+"/64")
	for _, r := range []string{"10.96.0.0/16", "198.51.100.0/24", "203.0.113.0/24"} {
		c.client.MustRun("ip", "route", "add", r, "via", nodeLAN4)
	}
	for _, r := range []string{"fd00:96::/112", "2001:db8:ff::/64"} {
		c.client.MustRun("ip", "-6", "route", "add", r, "via", nodeLAN6)
	}
	for k, v := range map[string]string{
		"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
		"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
	} {
		c.node.Sysctl(k, v)
	}
	c.relay = c.node.ForwardRelay(apiAddr, apiAddr)
	c.args = append([]string{"--proxy", "--l2=false", "--node-name", nodeName, "--kubeconfig", kubeconfig,
		"--metrics-bind-address", "127.0.0.1:7474", "--metrics-secure=false", "--healthz-bind-address", "127.0.0.1:10256",
		"--proxy-min-sync-interval", "50ms", "--cluster-cidr", "10.244.0.0/16,fd00:244::/32",
		// nf_conntrack_max is host-wide: a test never asks to change it.
		"--conntrack-max-per-core", "0", "--conntrack-min", "0"}, extraArgs...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.node.Run("nft", "list", "table", "inet", "fairlead")
			t.Logf("ruleset of the node:\n%s", out)
		}
	})
	c.startSpeaker()
	return c
}

func (c *cluster) startSpeaker() {
	c.t.Helper()
	var p *netns.Proc
	if len(c.env) > 0 {
		p = c.node.Start("env", append(append(slices.Clone(c.env), speakerBin), c.args...)...)
	} else {
		p = c.node.Start(speakerBin, c.args...)
	}
	c.speaker = p
	// Registered after Start's own cleanup, so it runs before that kills the process.
	c.t.Cleanup(func() {
		if done, err := p.Exited(); done && p == c.speaker && !c.t.Failed() {
			c.t.Errorf("speaker exited during the test: %v\n%s", err, p.Output())
		}
	})
	c.eventually("the speaker programs its table", func() error {
		if done, err := c.speaker.Exited(); done {
			return fmt.Errorf("speaker exited: %v\n%s", err, c.speaker.Output())
		}
		_, err := c.node.Run("nft", "list", "chain", "inet", "fairlead", "services")
		return err
	})
}

// restartSpeaker stops the speaker with SIGTERM and starts a new one.
func (c *cluster) restartSpeaker() {
	c.t.Helper()
	c.speaker.Signal(syscall.SIGTERM)
	if done, _ := c.speaker.Wait(10 * time.Second); !done {
		c.t.Fatal("speaker did not stop on SIGTERM")
	}
	c.startSpeaker()
	// The old rules are still there; wait for the new process to have replaced them.
	c.eventually("the new speaker's full sync", func() error {
		v, err := c.metricE("fairlead_proxy_sync_duration_seconds_count", `kind="full"`)
		if err == nil && v < 1 {
			err = errors.New("no full sync yet")
		}
		return err
	})
	// It must have updated the table in place: replacing it loses affinity entries and,
	// for an instant, packets.
	if strings.Contains(c.speaker.Output(), "replaced the nftables table") {
		c.t.Errorf("the restarted proxy replaced the table:\n%s", c.speaker.Output())
	}
}

// addPod creates a pod namespace behind the node, running the echo server on echoPort
// (TCP and UDP). idx picks its addresses: 10.244.1.<10+idx>, fd00:244:1::<10+idx>.
func (c *cluster) addPod(name string, idx int) *pod {
	c.t.Helper()
	p := &pod{name: name, ns: netns.New(c.t, name),
		ip4: fmt.Sprintf("10.244.1.%d", 10+idx), ip6: fmt.Sprintf("fd00:244:1::%x", 10+idx)}
	dev := fmt.Sprintf("p%d", idx)
	netns.Veth(c.t, c.node, dev, p.ns, "eth0")
	p.ns.Addr("eth0", p.ip4+"/32")
	p.ns.Addr("eth0", p.ip6+"/128")
	p.ns.MustRun("ip", "route", "add", podGW4, "dev", "eth0")
	p.ns.MustRun("ip", "route", "add", "default", "via", podGW4)
	p.ns.MustRun("ip", "-6", "route", "add", podGW6, "dev", "eth0")
	p.ns.MustRun("ip", "-6", "route", "add", "default", "via", podGW6)
	c.node.Addr(dev, podGW4+"/32")
	c.node.Addr(dev, podGW6+"/128")
	c.node.MustRun("ip", "route", "add", p.ip4+"/32", "dev", dev)
	c.node.MustRun("ip", "-6", "route", "add", p.ip6+"/128", "dev", dev)
	proc := p.ns.Start(echoBin, "-name", name, "-tcp", fmt.Sprint(echoPort), "-udp", fmt.Sprint(echoPort))
	c.eventually("echo server "+name+" starts", func() error {
		if !strings.Contains(proc.Output(), "ready") {
			return errors.New("not ready")
		}
		return nil
	})
	c.pods[name] = p
	return p
}

// eventually retries fn until it succeeds or a generous deadline passes.
func (c *cluster) eventually(what string, fn func() error) {
	c.t.Helper()
	kit.Eventually(c.t, 30*time.Second, what, func(context.Context) error { return fn() })
}

// answer is what an echo server said.
type answer struct {
	Pod    string
	Source string // address:port the pod saw
}

// SourceIP is the address part of Source.
func (a answer) SourceIP() string {
	h, _, _ := net.SplitHostPort(a.Source)
	return h
}

// ask sends one request from inside ns and returns the answer. proto is "tcp" or "udp";
// localPort pins the client's source port when non-zero.
func ask(ns *netns.NS, proto, addr string, localPort int) (answer, error) {
	var a answer
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		if localPort != 0 {
			if proto == "udp" {
				d.LocalAddr = &net.UDPAddr{Port: localPort}
			} else {
				d.LocalAddr = &net.TCPAddr{Port: localPort}
			}
		}
		conn, err := d.Dial(proto, addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if proto == "udp" {
			if _, err := conn.Write([]byte("hi")); err != nil {
				return err
			}
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return fmt.Errorf("bad answer %q", line)
		}
		a = answer{Pod: f[0], Source: f[1]}
		return nil
	})
	return a, err
}

// refused reports whether err is an immediate rejection (not a timeout).
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// spread sends n requests and counts answers per pod; any failure is returned.
func spread(ns *netns.NS, proto, addr string, n int) (map[string]int, []answer, error) {
	counts := map[string]int{}
	var all []answer
	for i := 0; i < n; i++ {
		a, err := ask(ns, proto, addr, 0)
		if err != nil {
			return counts, all, fmt.Errorf("request %d to %s/%s: %w", i, proto, addr, err)
		}
		counts[a.Pod]++
		all = append(all, a)
	}
	return counts, all, nil
}

// Objects.

type svcOpt func(*corev1.Service)

func (c *cluster) createService(name string, opts ...svcOpt) *corev1.Service {
	c.t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			Ports: []corev1.ServicePort{
				{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: 80},
				{Name: "udp", Protocol: corev1.ProtocolUDP, Port: 80},
			},
		},
	}
	for _, o := range opts {
		o(s)
	}
	var lbIngress []corev1.LoadBalancerIngress
	lbIngress, s.Status.LoadBalancer.Ingress = s.Status.LoadBalancer.Ingress, nil
	out, err := client.CoreV1().Services(c.ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	if lbIngress != nil {
		out.Status.LoadBalancer.Ingress = lbIngress
		if out, err = client.CoreV1().Services(c.ns).UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil {
			c.t.Fatal(err)
		}
	}
	return out
}

func loadBalancer(ips ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

// endpoint describes one endpoint of an EndpointSlice.
type endpoint struct {
	pod                            *pod
	node                           string
	notReady, serving, terminating bool
}

func ready(p *pod) endpoint { return endpoint{pod: p, node: nodeName} }

// setEndpoints writes the Service's EndpointSlices (one per family), replacing earlier ones.
func (c *cluster) setEndpoints(svc string, eps ...endpoint) {
	c.t.Helper()
	for _, fam := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		name := fmt.Sprintf("%s-%s", svc, strings.ToLower(string(fam)))
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns,
				Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: fam,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr.To("tcp"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](echoPort)},
				{Name: ptr.To("udp"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](echoPort)},
				{Name: ptr.To("sctp"), Protocol: ptr.To(corev1.ProtocolSCTP), Port: ptr.To[int32](echoPort)},
			},
		}
		for _, e := range eps {
			addr := e.pod.ip4
			if fam == discoveryv1.AddressTypeIPv6 {
				addr = e.pod.ip6
			}
			cond := discoveryv1.EndpointConditions{Ready: ptr.To(!e.notReady)}
			if e.notReady {
				cond.Serving, cond.Terminating = ptr.To(e.serving), ptr.To(e.terminating)
			}
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{addr}, Conditions: cond, NodeName: ptr.To(e.node),
			})
		}
		cur, err := client.DiscoveryV1().EndpointSlices(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			sl.ResourceVersion = cur.ResourceVersion
			_, err = client.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, sl, metav1.UpdateOptions{})
		} else {
			_, err = client.DiscoveryV1().EndpointSlices(c.ns).Create(ctx, sl, metav1.CreateOptions{})
		}
		if err != nil {
			c.t.Fatal(err)
		}
	}
}

// clusterIPs returns the Service's IPv4 and IPv6 ClusterIPs.
func clusterIPs(s *corev1.Service) (v4, v6 string) {
	for _, ip := range s.Spec.ClusterIPs {
		if strings.Contains(ip, ":") {
			v6 = ip
		} else {
			v4 = ip
		}
	}
	return v4, v6
}

func hostPort(ip string, port int32) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

// expectPods waits until n requests to addr are all answered, by exactly the named pods.
func (c *cluster) expectPods(from *netns.NS, proto, addr string, n int, pods ...string) []answer {
	c.t.Helper()
	var all []answer
	c.eventually(fmt.Sprintf("%s %s answered by %v", proto, addr, pods), func() error {
		counts, answers, err := spread(from, proto, addr, n)
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for _, p := range pods {
			want[p] = true
			if counts[p] == 0 {
				return fmt.Errorf("%s never answered: %v", p, counts)
			}
		}
		for p := range counts {
			if !want[p] {
				return fmt.Errorf("%s answered: %v", p, counts)
			}
		}
		all = answers
		return nil
	})
	return all
}

// lbIP returns a LoadBalancer address unique to this cluster (198.51.100.0/24, 2001:db8:ff::/64).
func (c *cluster) lbIP(i int) (v4, v6 string) {
	n := int(clusterSeq.Load())*4 + i
	return fmt.Sprintf("198.51.100.%d", n%250+1), fmt.Sprintf("2001:db8:ff::%x", n)
}

// httpGet fetches http://addr/path from inside ns. The connection is dialled on the
// namespace's thread: http.Transport would dial from another goroutine, outside it.
func httpGet(ns *netns.NS, addr, path string) (int, string, error) {
	var code int
	var body string
	err := ns.Do(func() error {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		req.Close = true
		if err := req.Write(conn); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		code, body = resp.StatusCode, string(b)
		return err
	})
	return code, body, err
}

// metric returns the sum of the samples of a metric (matching all given label pairs) that
// the speaker exports.
func (c *cluster) metric(name string, labels ...string) float64 {
	c.t.Helper()
	v, err := c.metricE(name, labels...)
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

func (c *cluster) metricE(name string, labels ...string) (float64, error) {
	_, body, err := httpGet(c.node, "127.0.0.1:7474", "/metrics")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// addUpstream gives the node a default gateway: a namespace that owns the whole service
// ranges (10.96.0.0/14, fd00:96::/112) and answers on ports 80 and 81 as "upstream". It
// stands for the network beyond a real node, where traffic for a ClusterIP no rule catches
// would go.
func (c *cluster) addUpstream() {
	c.t.Helper()
	up := netns.New(c.t, "upstr")
	netns.Veth(c.t, c.node, "gw", up, "gw")
	c.node.Addr("gw", "192.0.2.129/30")
	c.node.Addr("gw", "2001:db8:2::1/64")
	up.Addr("gw", "192.0.2.130/30")
	up.Addr("gw", "2001:db8:2::2/64")
	c.node.MustRun("ip", "route", "add", "default", "via", "192.0.2.130")
	c.node.MustRun("ip", "-6", "route", "add", "default", "via", "2001:db8:2::2")
	up.MustRun("ip", "route", "add", "default", "via", "192.0.2.129")
	up.MustRun("ip", "-6", "route", "add", "default", "via", "2001:db8:2::1")
	up.MustRun("ip", "route", "add", "local", "10.96.0.0/14", "dev", "lo")
	up.MustRun("ip", "-6", "route", "add", "local", "fd00:96::/112", "dev", "lo")
	proc := up.Start(echoBin, "-name", "upstream", "-tcp", "80,81", "-udp", "80,81")
	c.eventually("upstream echo server starts", func() error {
		if !strings.Contains(proc.Output(), "ready") {
			return errors.New("not ready")
		}
		return nil
	})
	c.client.MustRun("ip", "route", "add", "10.97.0.0/16", "via", nodeLAN4)
	c.client.MustRun("ip", "route", "add", "10.98.0.0/16", "via", nodeLAN4)
}

// failingNft returns environment for the speaker under which its nft fails while the file
// it names exists: a fault injected in front of the real nft.
func failingNft(t *testing.T) (env []string, switchFile string) {
	t.Helper()
	real, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	switchFile = filepath.Join(dir, "fail")
	script := fmt.Sprintf("#!/bin/sh\nif [ -e %s ]; then echo 'injected failure' >&2; exit 1; fi\nexec %s \"$@\"\n", switchFile, real)
	if err := os.WriteFile(filepath.Join(dir, "nft"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"PATH=" + dir + ":" + os.Getenv("PATH")}, switchFile
}

// createNode creates this node's Node object with the given InternalIPs, deleted at the end.
func (c *cluster) createNode(addrs ...string) {
	c.t.Helper()
	n, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{}); err == nil && len(n.Finalizers) > 0 {
			n.Finalizers = nil
			_, _ = client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		}
		_ = client.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{})
	})
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// updateNode applies fn to this node's Node object.
func (c *cluster) updateNode(fn func(*corev1.Node)) {
	c.t.Helper()
	n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	fn(n)
	if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}
