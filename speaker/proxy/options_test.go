package proxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/test/netns"
)

// sourcesSeen asks the ClusterIP from the LAN client and from a pod, and returns the sources
// the endpoint saw for each.
func (c *cluster) sourcesSeen(from *pod, addr string) (lan, fromPod string) {
	c.t.Helper()
	lan = c.expectPods(c.client, "tcp", addr, 1, "pod-a")[0].SourceIP()
	fromPod = c.expectPods(from.ns, "tcp", addr, 1, "pod-a")[0].SourceIP()
	return lan, fromPod
}

// --masquerade-all: pods reaching a ClusterIP are masqueraded too.
func TestMasqueradeAll(t *testing.T) {
	c := newCluster(t, "--masquerade-all")
	a, cl := c.addPod("pod-a", 1), c.addPod("client-pod", 2)
	svc := c.createService("web")
	c.setEndpoints("web", ready(a))
	v4, v6 := clusterIPs(svc)
	for _, addr := range []string{hostPort(v4, 80), hostPort(v6, 80)} {
		lan, fromPod := c.sourcesSeen(cl, addr)
		if lan != podGW4 && lan != podGW6 || fromPod != podGW4 && fromPod != podGW6 {
			t.Errorf("%s: sources seen %s (LAN) and %s (pod), want the node's for both", addr, lan, fromPod)
		}
	}
}

// The other --detect-local-modes tell pods' traffic (kept as is) from the LAN's
// (masqueraded): by interface name prefix, by bridge, and by the Node's podCIDRs.
func TestDetectLocalModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		node bool
	}{
		{"InterfaceNamePrefix", []string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "p"}, false},
		{"BridgeInterface", []string{"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr0"}, false},
		{"NodeCIDR", []string{"--detect-local-mode", "NodeCIDR"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, tc.args...)
			a, cl := c.addPod("pod-a", 1), c.addPod("client-pod", 2)
			if tc.name == "BridgeInterface" {
				// The pods' veths become ports of a bridge carrying the gateway addresses.
				c.node.MustRun("ip", "link", "add", "cbr0", "type", "bridge")
				c.node.MustRun("ip", "link", "set", "cbr0", "up")
				for _, dev := range []string{"p1", "p2"} {
					c.node.MustRun("ip", "addr", "flush", "dev", dev)
					c.node.MustRun("ip", "link", "set", dev, "master", "cbr0")
				}
				c.node.Addr("cbr0", podGW4+"/32")
				c.node.Addr("cbr0", podGW6+"/128")
				for _, p := range []*pod{a, cl} {
					c.node.MustRun("ip", "route", "replace", p.ip4+"/32", "dev", "cbr0")
					c.node.MustRun("ip", "-6", "route", "replace", p.ip6+"/128", "dev", "cbr0")
				}
			}
			if tc.node {
				c.createNode(nodeLAN4, nodeLAN6)
				c.updateNode(func(n *corev1.Node) {
					n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.0.0/16", []string{"10.244.0.0/16", "fd00:244::/32"}
				})
			}
			svc := c.createService("web")
			c.setEndpoints("web", ready(a))
			v4, v6 := clusterIPs(svc)
			for _, addr := range []string{hostPort(v4, 80), hostPort(v6, 80)} {
				c.eventually(addr+": LAN masqueraded, pods kept", func() error {
					lan, fromPod := c.sourcesSeen(cl, addr)
					if lan != podGW4 && lan != podGW6 || fromPod != cl.ip4 && fromPod != cl.ip6 {
						return fmt.Errorf("sources seen %s (LAN) and %s (pod)", lan, fromPod)
					}
					return nil
				})
			}
		})
	}
}

// The conntrack sysctls are set in the speaker's network namespace; the host's are never
// touched, and nf_conntrack_max, host-wide, cannot be raised from a namespace: the speaker
// says so and stops.
func TestConntrackSysctls(t *testing.T) {
	const dir = "/proc/sys/net/netfilter/"
	read := func(ns *netns.NS, name string) string {
		t.Helper()
		if ns == nil {
			b, err := os.ReadFile(dir + name)
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
		return strings.TrimSpace(ns.MustRun("cat", dir+name))
	}
	names := []string{"nf_conntrack_max", "nf_conntrack_tcp_timeout_established", "nf_conntrack_tcp_timeout_close_wait",
		"nf_conntrack_tcp_be_liberal", "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"}
	host := map[string]string{}
	for _, n := range names {
		host[n] = read(nil, n)
	}
	c := newCluster(t, "--conntrack-tcp-timeout-established", "3h", "--conntrack-tcp-timeout-close-wait", "30m",
		"--conntrack-tcp-be-liberal", "--conntrack-udp-timeout", "45s", "--conntrack-udp-timeout-stream", "150s")
	for name, want := range map[string]string{
		"nf_conntrack_tcp_timeout_established": "10800", "nf_conntrack_tcp_timeout_close_wait": "1800",
		"nf_conntrack_tcp_be_liberal": "1", "nf_conntrack_udp_timeout": "45", "nf_conntrack_udp_timeout_stream": "150",
	} {
		if got := read(c.node, name); got != want {
			t.Errorf("%s in the node's namespace: %s, want %s", name, got, want)
		}
	}

	// Asking for more entries than the host allows: a clear error, nothing changed.
	var hostMax int
	fmt.Sscan(host["nf_conntrack_max"], &hostMax)
	ns := netns.New(t, "ctmax")
	p := ns.Start(speakerBin, "--proxy", "--l2=false", "--node-name", nodeName, "--kubeconfig", kubeconfig,
		"--metrics-bind-address", "0", "--healthz-bind-address", "0",
		"--conntrack-max-per-core", "0", "--conntrack-min", fmt.Sprint(hostMax+1))
	if done, _ := p.Wait(20 * time.Second); !done {
		t.Fatal("the speaker kept running though it could not raise nf_conntrack_max")
	}
	if out := p.Output(); !strings.Contains(out, fmt.Sprintf("raising nf_conntrack_max from %d to %d", hostMax, hostMax+1)) ||
		!strings.Contains(out, "host-wide") {
		t.Errorf("the error does not say what failed:\n%s", out)
	}
	for _, n := range names {
		if got := read(nil, n); got != host[n] {
			t.Errorf("the host's %s changed from %s to %s", n, host[n], got)
		}
	}
}

// --cleanup removes the proxy's table and exits; without a table it has nothing to do.
func TestCleanup(t *testing.T) {
	c := newCluster(t)
	c.speaker.Kill()
	c.speaker = nil // stopped on purpose
	for i := 0; i < 2; i++ {
		out, err := c.node.Run(speakerBin, "--cleanup")
		if err != nil {
			t.Fatalf("--cleanup (run %d): %v\n%s", i, err, out)
		}
		if _, err := c.node.Run("nft", "list", "table", "inet", "fairlead"); err == nil {
			t.Fatal("the table is still there")
		}
	}
}

// kube-proxy's metrics are served under its names, labels and buckets.
func TestKubeProxyMetrics(t *testing.T) {
	start := time.Now()
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4, lb6), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	// The only endpoint is elsewhere: no local endpoint for the external policy.
	c.setEndpoints("web", endpoint{pod: b, node: otherNode})
	v4, _ := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 2, "pod-b")
	c.eventually("no local endpoints counted", func() error {
		// Two ports (TCP and UDP) per family.
		for _, fam := range []string{"IPv4", "IPv6"} {
			v, err := c.metricE("kubeproxy_sync_proxy_rules_no_local_endpoints_total", `traffic_policy="external"`, `ip_family="`+fam+`"`)
			if err != nil || v != 2 {
				return fmt.Errorf("%s: %v %v", fam, v, err)
			}
		}
		return nil
	})

	// An endpoint change the EndpointSlice controller stamped 3 s ago.
	sl, err := client.DiscoveryV1().EndpointSlices(c.ns).Get(ctx, "web-ipv4", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sl.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Add(-3 * time.Second).UTC().Format(time.RFC3339Nano)}
	sl.Endpoints[0].Addresses, sl.Endpoints[0].NodeName = []string{a.ip4}, ptrTo(nodeName)
	if _, err := client.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 2, "pod-a")
	c.eventually("network programming latency observed", func() error {
		n, err := c.metricE("kubeproxy_network_programming_duration_seconds_count", `ip_family="IPv4"`)
		if err != nil || n < 1 {
			return fmt.Errorf("count %v %v", n, err)
		}
		if s := c.metric("kubeproxy_network_programming_duration_seconds_sum", `ip_family="IPv4"`); s < 3 {
			return fmt.Errorf("sum %v, want at least 3 s", s)
		}
		return nil
	})
	if v := c.metric("kubeproxy_sync_proxy_rules_no_local_endpoints_total", `traffic_policy="external"`, `ip_family="IPv4"`); v != 0 {
		t.Errorf("IPv4 no-local count %v after a local endpoint came, want 0", v)
	}

	if _, _, err := httpGet(c.node, "127.0.0.1:10256", "/healthz"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"kubeproxy_sync_proxy_rules_duration_seconds_count", []string{`ip_family="IPv4"`}},
		{"kubeproxy_sync_proxy_rules_duration_seconds_bucket", []string{`ip_family="IPv6"`, `le="+Inf"`}},
		{"kubeproxy_sync_full_proxy_rules_duration_seconds_count", []string{`ip_family="IPv4"`}},
		{"kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket", []string{`le="16.384"`}},
		{"kubeproxy_network_programming_duration_seconds_bucket", []string{`le="300"`}},
		{"kubeproxy_sync_proxy_rules_endpoint_changes_total", nil},
		{"kubeproxy_sync_proxy_rules_service_changes_total", nil},
		{"kubeproxy_proxy_healthz_total", []string{`code="200"`}},
	} {
		if v := c.metric(m.name, m.labels...); v < 1 {
			t.Errorf("%s%v = %v, want at least 1", m.name, m.labels, v)
		}
	}
	// kube-proxy's buckets, from their first to their last.
	_, body, err := httpGet(c.node, "127.0.0.1:7474", "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.001"}`,
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="16.384"}`,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0"}`,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0.25"}`,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="115"}`,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="300"}`,
	} {
		if !strings.Contains(body, b+" ") {
			t.Errorf("no bucket %s", b)
		}
	}
	for _, name := range []string{"kubeproxy_sync_proxy_rules_last_timestamp_seconds", "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"} {
		if v := c.metric(name, `ip_family="IPv4"`); v < float64(start.Unix()) {
			t.Errorf("%s = %v, before the test started", name, v)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// --config takes kube-proxy's KubeProxyConfiguration: its fields set the matching flags,
// flags on the command line win, fields without a counterpart are named as ignored, and a
// file of another kind is refused.
func TestKubeProxyConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.conf")
	conf := `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
masqueradeAll: true
conntrack:
  tcpEstablishedTimeout: 2h0m0s
  tcpCloseWaitTimeout: 20m0s
iptables:
  syncPeriod: 30s
`
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, "--config", file, "--conntrack-tcp-timeout-close-wait", "40m")
	a, cl := c.addPod("pod-a", 1), c.addPod("client-pod", 2)
	svc := c.createService("web")
	c.setEndpoints("web", ready(a))
	v4, _ := clusterIPs(svc)
	// masqueradeAll from the file: even a pod's source is masqueraded.
	if _, fromPod := c.sourcesSeen(cl, hostPort(v4, 80)); fromPod != podGW4 {
		t.Errorf("a pod's request arrived from %s, want the node's %s (masqueradeAll)", fromPod, podGW4)
	}
	for name, want := range map[string]string{"nf_conntrack_tcp_timeout_established": "7200", "nf_conntrack_tcp_timeout_close_wait": "2400"} {
		if got := strings.TrimSpace(c.node.MustRun("cat", "/proc/sys/net/netfilter/"+name)); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if out := c.speaker.Output(); !strings.Contains(out, "ignored") || !strings.Contains(out, "iptables") {
		t.Errorf("the ignored iptables section is not reported:\n%s", out)
	}

	// Another kind of file: the speaker refuses to start, naming it.
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: ConfigMap\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := netns.New(t, "badcfg")
	p := ns.Start(speakerBin, "--proxy", "--l2=false", "--node-name", nodeName, "--kubeconfig", kubeconfig,
		"--metrics-bind-address", "0", "--healthz-bind-address", "0", "--config", bad)
	if done, _ := p.Wait(20 * time.Second); !done || !strings.Contains(p.Output(), "ConfigMap") || !strings.Contains(p.Output(), "want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration") {
		t.Errorf("a ConfigMap was taken as configuration (exited: %v):\n%s", done, p.Output())
	}
}
