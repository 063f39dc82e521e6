package proxy_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Endpoint changes are applied as partial syncs, and traffic follows them.
func TestEndpointChangesArePartialSyncs(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	svc := c.createService("web")
	v4, v6 := clusterIPs(svc)
	c.setEndpoints("web", ready(a))
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 5, "pod-a")
	full := c.metric("fairlead_proxy_sync_duration_seconds_count", `kind="full"`)
	partial := c.metric("fairlead_proxy_sync_duration_seconds_count", `kind="partial"`)

	c.setEndpoints("web", ready(a), ready(b))
	c.expectPods(c.client, "tcp", hostPort(v6, 80), 30, "pod-a", "pod-b")
	c.setEndpoints("web", ready(b))
	c.expectPods(c.client, "udp", hostPort(v4, 80), 10, "pod-b")

	if got := c.metric("fairlead_proxy_sync_duration_seconds_count", `kind="full"`); got != full {
		t.Errorf("endpoint changes caused %v full syncs", got-full)
	}
	if got := c.metric("fairlead_proxy_sync_duration_seconds_count", `kind="partial"`); got < partial+2 {
		t.Errorf("partial syncs went from %v to %v, want at least 2 more", partial, got)
	}
	if got := c.metric("fairlead_proxy_sync_errors_total"); got != 0 {
		t.Errorf("%v sync errors", got)
	}
	if got := c.metric("fairlead_proxy_map_elements"); got == 0 {
		t.Error("map elements gauge is 0")
	}
}

// Headless and ExternalName Services get no rules.
func TestHeadlessAndExternalNameAreLeftAlone(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	c.createService("headless", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone })
	c.setEndpoints("headless", ready(a))
	c.createService("extname", func(s *corev1.Service) {
		s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
		s.Spec.IPFamilyPolicy = nil
	})
	// A regular Service created afterwards proves the speaker has seen the others.
	svc := c.createService("web")
	c.setEndpoints("web", ready(a))
	v4, _ := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 1, "pod-a")
	rules := c.node.MustRun("nft", "list", "table", "inet", "fairlead")
	for _, name := range []string{"/headless/", "/extname/"} {
		if strings.Contains(rules, c.ns+name) {
			t.Errorf("rules mention %s:\n%s", name, rules)
		}
	}
}

// internalTrafficPolicy Local: ClusterIP traffic only reaches endpoints on this node.
func TestInternalTrafficPolicyLocal(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	svc := c.createService("web", func(s *corev1.Service) {
		s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	})
	c.setEndpoints("web", ready(a), endpoint{pod: b, node: otherNode})
	v4, v6 := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 20, "pod-a")
	c.expectPods(c.client, "udp", hostPort(v6, 80), 20, "pod-a")
}

// --nodeport-addresses: NodePorts answer only on node addresses inside the given CIDRs.
func TestNodePortAddresses(t *testing.T) {
	c := newCluster(t, "--nodeport-addresses", "192.0.2.0/24")
	a := c.addPod("pod-a", 1)
	svc := c.createService("web", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
	c.setEndpoints("web", ready(a))
	np := svc.Spec.Ports[0].NodePort
	c.expectPods(c.client, "tcp", hostPort(nodeLAN4, np), 3, "pod-a")
	// The IPv6 LAN address is outside: nothing listens there, so the node refuses itself.
	if ans, err := ask(c.client, "tcp", hostPort(nodeLAN6, np), 0); err == nil {
		t.Errorf("NodePort answered on %s (by %s) outside --nodeport-addresses", nodeLAN6, ans.Pod)
	}
}

// sessionAffinity ClientIP: one client keeps its endpoint; other clients still spread.
func TestSessionAffinity(t *testing.T) {
	c := newCluster(t)
	a, b, cc := c.addPod("pod-a", 1), c.addPod("pod-b", 2), c.addPod("pod-c", 3)
	svc := c.createService("web", func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](300)}}
	})
	c.setEndpoints("web", ready(a), ready(b), ready(cc))
	v4, v6 := clusterIPs(svc)
	for _, addr := range []string{hostPort(v4, 80), hostPort(v6, 80)} {
		for _, proto := range []string{"tcp", "udp"} {
			var first string
			c.eventually("first answer", func() error {
				ans, err := ask(c.client, proto, addr, 0)
				first = ans.Pod
				return err
			})
			counts, _, err := spread(c.client, proto, addr, 30)
			if err != nil {
				t.Fatal(err)
			}
			if counts[first] != 30 {
				t.Errorf("%s %s: client moved between pods: first %s, then %v", proto, addr, first, counts)
			}
		}
	}
	// The affinity is per client: pods (distinct clients) land on different endpoints.
	seen := map[string]bool{}
	for i := 0; i < 8; i++ {
		p := c.addPod(fmt.Sprintf("cl-%d", i), 10+i)
		ans, err := ask(p.ns, "tcp", hostPort(v4, 80), 0)
		if err != nil {
			t.Fatal(err)
		}
		seen[ans.Pod] = true
	}
	if len(seen) < 2 {
		t.Errorf("8 clients all landed on %v: affinity is not per client", seen)
	}
}

// loadBalancerSourceRanges: only listed sources reach the LoadBalancer IP.
func TestLoadBalancerSourceRanges(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4, lb6), func(s *corev1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24", "2001:db8:1::100/128"}
	})
	c.setEndpoints("web", ready(a))
	// The IPv6 client is listed, the IPv4 one is not.
	c.expectPods(c.client, "tcp", hostPort(lb6, 80), 3, "pod-a")
	if ans, err := ask(c.client, "tcp", hostPort(lb4, 80), 0); err == nil {
		t.Errorf("source outside loadBalancerSourceRanges reached %s", ans.Pod)
	} else if refused(err) {
		t.Errorf("want the packet dropped, got %v", err)
	}
	// The ranges do not apply to the ClusterIP.
	v4, _ := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 3, "pod-a")

	// Allowing the IPv4 client opens the LoadBalancer IP to it.
	svc, err := client.CoreV1().Services(c.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.LoadBalancerSourceRanges = append(svc.Spec.LoadBalancerSourceRanges, "192.0.2.0/24")
	if _, err := client.CoreV1().Services(c.ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expectPods(c.client, "tcp", hostPort(lb4, 80), 3, "pod-a")
}

// With no ready endpoint, serving terminating endpoints are used; not serving ones never are.
func TestTerminatingFallback(t *testing.T) {
	c := newCluster(t)
	a, b, cc := c.addPod("pod-a", 1), c.addPod("pod-b", 2), c.addPod("pod-c", 3)
	svc := c.createService("web")
	v4, _ := clusterIPs(svc)
	c.setEndpoints("web", ready(a),
		endpoint{pod: b, node: nodeName, notReady: true, serving: true, terminating: true})
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 20, "pod-a")
	c.setEndpoints("web",
		endpoint{pod: b, node: nodeName, notReady: true, serving: true, terminating: true},
		endpoint{pod: cc, node: nodeName, notReady: true, serving: false, terminating: true})
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 20, "pod-b")
	c.setEndpoints("web", endpoint{pod: cc, node: nodeName, notReady: true, serving: false, terminating: true})
	c.eventually("rejected without serving endpoints", func() error {
		if _, err := ask(c.client, "tcp", hostPort(v4, 80), 0); !refused(err) {
			return fmt.Errorf("want refused, got %v", err)
		}
		return nil
	})
}

// Hairpin: a pod reaching its own Service and landing on itself gets an answer, its source
// masqueraded (otherwise it would answer itself directly and drop the reply).
func TestHairpin(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	svc := c.createService("web")
	c.setEndpoints("web", ready(a))
	v4, v6 := clusterIPs(svc)
	for _, addr := range []string{hostPort(v4, 80), hostPort(v6, 80)} {
		for _, proto := range []string{"tcp", "udp"} {
			for _, ans := range c.expectPods(a.ns, proto, addr, 3, "pod-a") {
				if ip := ans.SourceIP(); ip != podGW4 && ip != podGW6 {
					t.Errorf("%s %s hairpin: source %s, want the node's", proto, addr, ans.Source)
				}
			}
		}
	}
}

// Restarting the proxy replaces its rules atomically: a steady stream of new connections
// through it sees no failure.
func TestRestartUnderLoad(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4, lb6))
	c.setEndpoints("web", ready(a), ready(b))
	v4, _ := clusterIPs(svc)
	targets := []struct{ proto, addr string }{{"tcp", hostPort(v4, 80)}, {"tcp", hostPort(lb4, 80)}, {"udp", hostPort(lb6, 80)}}
	for _, tg := range targets {
		c.expectPods(c.client, tg.proto, tg.addr, 10, "pod-a", "pod-b")
	}

	var stop atomic.Bool
	var mu sync.Mutex
	var failures []error
	var sent atomic.Int64
	var wg sync.WaitGroup
	for _, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := ask(c.client, tg.proto, tg.addr, 0); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Errorf("%s: %w", time.Now().Format("15:04:05.000"), err))
					mu.Unlock()
				}
				sent.Add(1)
			}
		}()
	}
	for i := 0; i < 3; i++ {
		time.Sleep(300 * time.Millisecond)
		t.Logf("restart %d at %s", i, time.Now().Format("15:04:05.000"))
		c.restartSpeaker()
		t.Logf("restart %d done at %s", i, time.Now().Format("15:04:05.000"))
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed across restarts, first: %v", len(failures), sent.Load(), failures[0])
		out, _ := c.node.Run("conntrack", "-L", "-d", v4)
		t.Logf("conntrack to the ClusterIP:\n%s", out)
	}
	if sent.Load() < 30 {
		t.Errorf("only %d requests sent", sent.Load())
	}
}

// A periodic full sync repairs drift: someone deleting our table or chains.
func TestFullSyncRepairsDrift(t *testing.T) {
	c := newCluster(t, "--proxy-sync-period", "1s")
	a := c.addPod("pod-a", 1)
	svc := c.createService("web")
	c.setEndpoints("web", ready(a))
	v4, _ := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 2, "pod-a")

	c.node.MustRun("nft", "flush", "chain", "inet", "fairlead", "services")
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 2, "pod-a")
	c.node.MustRun("nft", "delete", "table", "inet", "fairlead")
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 2, "pod-a")
}

// UDP flows tracked to an endpoint that goes away are deleted from conntrack, so the same
// client flow moves to a remaining endpoint instead of following the stale entry.
func TestStaleUDPConntrackEntriesAreDeleted(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	svc := c.createService("web")
	v4, v6 := clusterIPs(svc)
	c.setEndpoints("web", ready(a))
	for i, addr := range []string{hostPort(v4, 80), hostPort(v6, 80)} {
		c.setEndpoints("web", ready(a))
		port := 40000 + i
		c.eventually("flow pinned to pod-a", func() error {
			ans, err := ask(c.client, "udp", addr, port)
			if err == nil && ans.Pod != "pod-a" {
				err = fmt.Errorf("answered by %s", ans.Pod)
			}
			return err
		})
		// pod-a keeps running: only the stale entry could still lead there.
		c.setEndpoints("web", ready(b))
		c.eventually("flow moves to pod-b", func() error {
			ans, err := ask(c.client, "udp", addr, port)
			if err == nil && ans.Pod != "pod-b" {
				err = fmt.Errorf("answered by %s", ans.Pod)
			}
			return err
		})
	}
}

// Invalid parts of objects are skipped with a log line and an Event, and never block the
// valid rest.
func TestInvalidObjectsAreSkipped(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	svc := c.createService("web")
	c.setEndpoints("web", ready(a))
	// More slices for the same Service that the apiserver accepts but the proxy must not
	// program: a multicast endpoint address, and a port out of range (in front of a live pod).
	b := c.addPod("pod-b", 2)
	for _, bad := range []*discoveryv1.EndpointSlice{
		{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-bad-addr", Namespace: c.ns, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("tcp"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](echoPort)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"239.1.1.1"}}},
		},
		{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-bad-port", Namespace: c.ns, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("tcp"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](70000)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{b.ip4}}},
		},
	} {
		if _, err := client.DiscoveryV1().EndpointSlices(c.ns).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the apiserver refused slice %s, pick another invalid value: %v", bad.Name, err)
		}
	}
	// A later valid change still goes through.
	svc2 := c.createService("after")
	c.setEndpoints("after", ready(a))
	v4, _ := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 10, "pod-a")
	a4, _ := clusterIPs(svc2)
	c.expectPods(c.client, "tcp", hostPort(a4, 80), 2, "pod-a")
	for slice, what := range map[string]string{"web-bad-addr": "239.1.1.1", "web-bad-port": "70000"} {
		c.eventually("a warning Event on "+slice, func() error {
			evs, err := client.CoreV1().Events(c.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.InvolvedObject.Name == slice && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, what) {
					return nil
				}
			}
			return errors.New("no Event yet")
		})
		if !strings.Contains(c.speaker.Output(), what) {
			t.Errorf("no log line names %s", what)
		}
	}
}

// trafficDistribution PreferClose: with the node's zone known (from its Node object) and
// every endpoint hinted, only endpoints hinted for this zone are used.
func TestTopologyHintsFollowTheNodeZone(t *testing.T) {
	c := newCluster(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}) })
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	svc := c.createService("web", func(s *corev1.Service) {
		s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferClose)
	})
	c.setEndpoints("web", ready(a), ready(b))
	for _, name := range []string{"web-ipv4", "web-ipv6"} {
		sl, err := client.DiscoveryV1().EndpointSlices(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range sl.Endpoints {
			zone := "zone-b"
			if i == 0 {
				zone = "zone-a"
			}
			sl.Endpoints[i].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
		}
		if _, err := client.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	v4, v6 := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 20, "pod-a")
	c.expectPods(c.client, "udp", hostPort(v6, 80), 20, "pod-a")

	// The node moves to zone-b: the proxy follows.
	n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels[corev1.LabelTopologyZone] = "zone-b"
	if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 20, "pod-b")
}

// The proxy's /healthz answers 200 once it has synced.
func TestHealthz(t *testing.T) {
	c := newCluster(t)
	c.eventually("healthz 200", func() error {
		code, body, err := httpGet(c.node, "127.0.0.1:10256", "/healthz")
		if err == nil && (code != 200 || !strings.Contains(body, "lastUpdated")) {
			err = fmt.Errorf("got %d %s", code, body)
		}
		return err
	})
}

// Changes arriving within the minimum sync interval are batched into few syncs.
func TestChangesAreBatched(t *testing.T) {
	c := newCluster(t, "--proxy-min-sync-interval", "3s")
	a := c.addPod("pod-a", 1)
	before := c.metric("fairlead_proxy_sync_duration_seconds_count")
	var svcs []*corev1.Service
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("web-%d", i)
		svcs = append(svcs, c.createService(name))
		c.setEndpoints(name, ready(a))
	}
	for _, s := range svcs {
		v4, _ := clusterIPs(s)
		c.expectPods(c.client, "tcp", hostPort(v4, 80), 1, "pod-a")
	}
	// 60 API changes; each sync takes all that arrived during the previous interval.
	if syncs := c.metric("fairlead_proxy_sync_duration_seconds_count") - before; syncs > 15 {
		t.Errorf("60 changes took %v syncs: not batched", syncs)
	}
}

// Two Services claiming one externalIP and port (the apiserver does not prevent it): the
// first keeps it, the second gets a warning Event, and everything else of both still works.
func TestConflictingExternalIPs(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	ext4, _ := c.lbIP(0)
	withExt := func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		s.Spec.ExternalIPs = []string{ext4}
	}
	c.createService("first", withExt)
	c.setEndpoints("first", ready(a))
	c.expectPods(c.client, "tcp", hostPort(ext4, 80), 3, "pod-a")
	second := c.createService("second", withExt)
	c.setEndpoints("second", ready(b))
	v4, _ := clusterIPs(second)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 3, "pod-b")
	c.expectPods(c.client, "tcp", hostPort(ext4, 80), 10, "pod-a")
	c.eventually("a conflict Event on the second Service", func() error {
		evs, err := client.CoreV1().Events(c.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "second" && e.Reason == "ProxyAddressConflict" && strings.Contains(e.Message, ext4) {
				// Within one namespace the holder is named; across namespaces it would not be.
				if !strings.Contains(e.Message, "first") {
					return fmt.Errorf("the Event does not name the Service of the same namespace holding the address: %q", e.Message)
				}
				return nil
			}
		}
		return errors.New("no Event yet")
	})
}

// Affinity lasts timeoutSeconds: the client's entry appears with it and expires after it.
func TestSessionAffinityExpires(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	svc := c.createService("web", func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](2)}}
	})
	c.setEndpoints("web", ready(a))
	v4, _ := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 1, "pod-a")
	set := fmt.Sprintf("aff4-2s-%s/web/tcp/tcp__%s/%d", c.ns, a.ip4, echoPort)
	// The pod sees the masqueraded source, but affinity is keyed on the real client.
	if out := c.node.MustRun("nft", "list", "set", "inet", "fairlead", set); !strings.Contains(out, clientLAN4) {
		t.Fatalf("client not in the affinity set:\n%s", out)
	}
	c.eventually("the entry expires", func() error {
		if out := c.node.MustRun("nft", "list", "set", "inet", "fairlead", set); strings.Contains(out, clientLAN4) {
			return errors.New("still there")
		}
		return nil
	})
}

// Services labelled service.kubernetes.io/service-proxy-name belong to another proxy and
// get no rules (until the label goes); EndpointSlices labelled service.kubernetes.io/headless
// are ignored. Both as kube-proxy does.
func TestServicesForOtherProxiesAndHeadlessSlicesAreSkipped(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	other := c.createService("other", func(s *corev1.Service) {
		s.Labels = map[string]string{"service.kubernetes.io/service-proxy-name": "someone-else"}
	})
	c.setEndpoints("other", ready(a))
	web := c.createService("web")
	c.setEndpoints("web", ready(a))
	// A slice of web's that claims to belong to a headless Service: its endpoint (pod-b) must
	// never be used.
	if _, err := client.DiscoveryV1().EndpointSlices(c.ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-headless", Namespace: c.ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: "web", "service.kubernetes.io/headless": ""}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("tcp"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](echoPort)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{b.ip4}, NodeName: ptr.To(nodeName)}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w4, _ := clusterIPs(web)
	c.expectPods(c.client, "tcp", hostPort(w4, 80), 20, "pod-a")
	o4, _ := clusterIPs(other)
	if ans, err := ask(c.client, "tcp", hostPort(o4, 80), 0); err == nil {
		t.Errorf("a Service for another proxy was programmed: %s answered", ans.Pod)
	}
	if rules := c.node.MustRun("nft", "list", "table", "inet", "fairlead"); strings.Contains(rules, o4) || strings.Contains(rules, c.ns+"/other/") {
		t.Errorf("rules mention the other proxy's Service:\n%s", rules)
	}

	// The label removed, the Service is ours.
	other, err := client.CoreV1().Services(c.ns).Get(ctx, "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(other.Labels, "service.kubernetes.io/service-proxy-name")
	if _, err := client.CoreV1().Services(c.ns).Update(ctx, other, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expectPods(c.client, "tcp", hostPort(o4, 80), 3, "pod-a")
}

// Traffic to a free address of the service ranges is dropped instead of leaving the node for
// its gateway, and traffic to a ClusterIP on a port its Service does not define is rejected.
// The ranges come from the cluster's ServiceCIDR objects (followed as they change) and from
// --service-cidr.
func TestUnallocatedClusterIPsAndUnknownPorts(t *testing.T) {
	c := newCluster(t, "--service-cidr", "10.97.0.0/16")
	c.addUpstream()
	a := c.addPod("pod-a", 1)
	svc := c.createService("web")
	c.setEndpoints("web", ready(a))
	v4, v6 := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 3, "pod-a")
	c.expectPods(c.client, "tcp", hostPort(v6, 80), 3, "pod-a")

	// Outside every service range the gateway is reached: the upstream is really there.
	c.expectPods(c.client, "tcp", "10.98.0.7:80", 1, "upstream")

	dropped := func(addr string) {
		t.Helper()
		c.eventually(addr+" dropped", func() error {
			ans, err := ask(c.client, "tcp", addr, 0)
			if err == nil {
				return fmt.Errorf("answered by %s", ans.Pod)
			}
			if refused(err) {
				return fmt.Errorf("want the packet dropped (a timeout), got %v", err)
			}
			return nil
		})
	}
	free4, free6 := freeClusterIP(t, "10.96.255.", v4), freeClusterIP(t, "fd00:96::f", v6)
	dropped(hostPort(free4, 80)) // the apiserver's default ServiceCIDR
	dropped(hostPort(free6, 80))
	dropped("10.97.0.5:80") // --service-cidr
	for _, addr := range []string{hostPort(v4, 81), hostPort(v6, 81)} {
		c.eventually(addr+" rejected", func() error {
			if ans, err := ask(c.client, "tcp", addr, 0); !refused(err) {
				return fmt.Errorf("want connection refused, got %v (%s)", err, ans.Pod)
			}
			return nil
		})
	}

	// A new ServiceCIDR object extends the ranges.
	extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: c.ns + "-extra"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.98.0.0/24"}}}
	if _, err := client.NetworkingV1().ServiceCIDRs().Create(ctx, extra, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.NetworkingV1().ServiceCIDRs().Delete(ctx, extra.Name, metav1.DeleteOptions{}) })
	dropped("10.98.0.7:80")
	// The Service itself is untouched by all this.
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 3, "pod-a")
}

// freeClusterIP returns an address with the given prefix that no Service has.
func freeClusterIP(t *testing.T, prefix, avoid string) string {
	t.Helper()
	svcs, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{avoid: true}
	for _, s := range svcs.Items {
		for _, ip := range s.Spec.ClusterIPs {
			used[ip] = true
		}
	}
	for i := 200; i < 250; i++ {
		ip := fmt.Sprintf("%s%d", prefix, i)
		if !used[ip] {
			return ip
		}
	}
	t.Fatal("no free ClusterIP")
	return ""
}

// --nodeport-addresses defaults to primary: NodePorts answer on the Node's primary IPs only,
// and follow them when they change.
func TestNodePortAddressesPrimary(t *testing.T) {
	c := newCluster(t)
	c.node.Addr("lan", "192.0.2.2/24")
	c.node.Addr("lan", "2001:db8:1::2/64")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}) })
	setAddrs := func(addrs ...string) {
		t.Helper()
		n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = nil
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The first InternalIP of each family is primary; the second IPv4 one is not.
	setAddrs(nodeLAN4, "192.0.2.2", nodeLAN6)
	a := c.addPod("pod-a", 1)
	svc := c.createService("web", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
	c.setEndpoints("web", ready(a))
	np := svc.Spec.Ports[0].NodePort
	c.expectPods(c.client, "tcp", hostPort(nodeLAN4, np), 3, "pod-a")
	c.expectPods(c.client, "tcp", hostPort(nodeLAN6, np), 3, "pod-a")
	for _, addr := range []string{"192.0.2.2", "2001:db8:1::2"} {
		if ans, err := ask(c.client, "tcp", hostPort(addr, np), 0); err == nil {
			t.Errorf("NodePort answered on %s (by %s), not a primary IP", addr, ans.Pod)
		}
	}
	// The Node's addresses change: the NodePorts follow.
	setAddrs("192.0.2.2", "2001:db8:1::2")
	c.expectPods(c.client, "tcp", hostPort("192.0.2.2", np), 3, "pod-a")
	c.expectPods(c.client, "tcp", hostPort("2001:db8:1::2", np), 3, "pod-a")
	c.eventually("the old address closes", func() error {
		if ans, err := ask(c.client, "tcp", hostPort(nodeLAN4, np), 0); err == nil {
			return fmt.Errorf("NodePort still answers on %s (by %s)", nodeLAN4, ans.Pod)
		}
		return nil
	})
}

// /healthz and the healthCheckNodePorts say when the rules are not current (a change waits
// longer than --proxy-health-timeout for a successful sync), /healthz also when the Node is
// going away (deleted, or tainted by the cluster autoscaler); health check ports listen on
// the node's NodePort addresses only.
func TestHealthFollowsSyncsAndTheNode(t *testing.T) {
	env, fail := failingNft(t)
	c := newClusterEnv(t, env, "--proxy-health-timeout", "2s")
	c.node.Addr("lan", "192.0.2.2/24")
	c.createNode(nodeLAN4, nodeLAN6)
	a := c.addPod("pod-a", 1)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4, lb6), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	c.setEndpoints("web", ready(a))
	hc := svc.Spec.HealthCheckNodePort
	expect := func(what, addr, path string, code int, body string) {
		t.Helper()
		from := c.client
		if strings.HasPrefix(addr, "127.") {
			from = c.node
		}
		c.eventually(what, func() error {
			got, b, err := httpGet(from, addr, path)
			if err == nil && (got != code || !strings.Contains(b, body)) {
				err = fmt.Errorf("got %d %s", got, b)
			}
			return err
		})
	}
	healthz := "127.0.0.1:10256"
	expect("health check 200", hostPort(nodeLAN4, hc), "/", 200, `"serviceProxyHealthy":true`)
	expect("healthz 200", healthz, "/healthz", 200, `"nodeEligible":true`)
	if _, _, err := httpGet(c.client, hostPort("192.0.2.2", hc), "/"); err == nil {
		t.Error("the health check port answers on 192.0.2.2, not a NodePort address")
	}

	// nft fails: once a change has waited 2s, everything says unhealthy.
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.createService("other")
	expect("healthz 503 while syncs fail", healthz, "/healthz", 503, "lastUpdated")
	expect("livez 503 while syncs fail", healthz, "/livez", 503, "lastUpdated")
	expect("health check 503 while syncs fail", hostPort(nodeLAN4, hc), "/", 503, `"serviceProxyHealthy":false`)
	if !strings.Contains(c.speaker.Output(), "injected failure") {
		t.Error("the failing syncs were not logged")
	}
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	expect("health check 200 again", hostPort(nodeLAN4, hc), "/", 200, `"serviceProxyHealthy":true`)
	expect("healthz 200 again", healthz, "/healthz", 200, `"nodeEligible":true`)

	// The cluster autoscaler is about to remove the node.
	taint := corev1.Taint{Key: "ToBeDeletedByClusterAutoscaler", Value: "1700000000", Effect: corev1.TaintEffectNoSchedule}
	c.updateNode(func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, taint) })
	expect("healthz 503 with the taint", healthz, "/healthz", 503, `"nodeEligible":false`)
	expect("livez 200 with the taint", healthz, "/livez", 200, `"nodeEligible":false`)
	c.updateNode(func(n *corev1.Node) { n.Spec.Taints = nil })
	expect("healthz 200 without the taint", healthz, "/healthz", 200, `"nodeEligible":true`)

	// The Node is being deleted (a finalizer holds it).
	c.updateNode(func(n *corev1.Node) { n.Finalizers = []string{"fairlead.test/hold"} })
	if err := client.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("healthz 503 while the Node is deleted", healthz, "/healthz", 503, `"nodeEligible":false`)
}

// trafficDistribution PreferSameNode: endpoints hinted for this node (hints.forNodes) are
// used alone; when none is, the others serve rather than nothing.
func TestPreferSameNodeHints(t *testing.T) {
	c := newCluster(t)
	a, b := c.addPod("pod-a", 1), c.addPod("pod-b", 2)
	svc := c.createService("web", func(s *corev1.Service) {
		s.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferSameNode)
	})
	c.setEndpoints("web", ready(a), endpoint{pod: b, node: otherNode})
	hint := func(forA string) {
		t.Helper()
		for _, name := range []string{"web-ipv4", "web-ipv6"} {
			sl, err := client.DiscoveryV1().EndpointSlices(c.ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range sl.Endpoints {
				node := otherNode
				if i == 0 {
					node = forA
				}
				// As the EndpointSlice controller writes them: the zone and the node.
				sl.Endpoints[i].Hints = &discoveryv1.EndpointHints{
					ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}, ForNodes: []discoveryv1.ForNode{{Name: node}}}
			}
			if _, err := client.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	hint(nodeName)
	v4, v6 := clusterIPs(svc)
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 20, "pod-a")
	c.expectPods(c.client, "udp", hostPort(v6, 80), 20, "pod-a")
	// No endpoint is hinted for this node any more: both serve.
	hint("node-c")
	c.expectPods(c.client, "tcp", hostPort(v4, 80), 30, "pod-a", "pod-b")
}

// An ingress address with ipMode Proxy belongs to a load balancer in front of the cluster
// (KEP-1860): the proxy programs nothing for it, so traffic for it goes to that load balancer
// instead of being short-cut to a Pod; the Service's VIP-mode address works as usual. Once
// the address becomes a VIP, the proxy takes it.
func TestProxyModeIngressIsLeftToTheLoadBalancer(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4, lb6))
	svc.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(corev1.LoadBalancerIPModeProxy)
	svc, err := client.CoreV1().Services(c.ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.setEndpoints("web", ready(a))
	c.expectPods(c.client, "tcp", hostPort(lb6, 80), 3, "pod-a")
	if ans, err := ask(c.client, "tcp", hostPort(lb4, 80), 0); err == nil {
		t.Errorf("the proxy short-cut Proxy-mode address %s to %s", lb4, ans.Pod)
	}
	if table := c.node.MustRun("nft", "list", "table", "inet", "fairlead"); strings.Contains(table, lb4) {
		t.Errorf("the ruleset mentions Proxy-mode address %s:\n%s", lb4, table)
	}

	svc.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(corev1.LoadBalancerIPModeVIP)
	if _, err := client.CoreV1().Services(c.ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.expectPods(c.client, "tcp", hostPort(lb4, 80), 3, "pod-a")
}

// With only terminating endpoints on the node, its healthCheckNodePort says 503 (no local
// endpoint is ready: the load balancer in front drains the node, as with kube-proxy) while the
// node still sends what reaches it to the serving terminating endpoint.
func TestHealthCheckCountsOnlyReadyLocalEndpoints(t *testing.T) {
	c := newCluster(t)
	c.createNode(nodeLAN4, nodeLAN6)
	a := c.addPod("pod-a", 1)
	lb4, lb6 := c.lbIP(0)
	svc := c.createService("web", loadBalancer(lb4, lb6), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	hc := hostPort(nodeLAN4, svc.Spec.HealthCheckNodePort)
	check := func(what string, code int, body string) {
		t.Helper()
		c.eventually(what, func() error {
			got, b, err := httpGet(c.client, hc, "/")
			if err == nil && (got != code || !strings.Contains(b, body)) {
				err = fmt.Errorf("got %d %s", got, b)
			}
			return err
		})
	}
	c.setEndpoints("web", ready(a))
	check("health check 200 with a ready endpoint", 200, `"localEndpoints":1`)
	c.setEndpoints("web", endpoint{pod: a, node: nodeName, notReady: true, serving: true, terminating: true})
	check("health check 503 with only a terminating endpoint", 503, `"localEndpoints":0`)
	c.expectPods(c.client, "tcp", hostPort(lb4, 80), 3, "pod-a")
}

// A UDP flow follows a targetPort change: the Pod stays, its port changes, and the tracked
// entry that DNATs the flow to the old port is deleted (e2e's "cleanup conntrack entries when
// UDP service target port changes").
func TestUDPFlowFollowsATargetPortChange(t *testing.T) {
	c := newCluster(t)
	a := c.addPod("pod-a", 1)
	second := a.ns.Start(echoBin, "-name", "pod-a-9090", "-udp", "9090")
	c.eventually("second echo server starts", func() error {
		if !strings.Contains(second.Output(), "ready") {
			return errors.New("not ready")
		}
		return nil
	})
	svc := c.createService("web")
	v4, _ := clusterIPs(svc)
	c.setEndpoints("web", ready(a))
	const port = 40200
	answeredBy := func(what, want string) {
		t.Helper()
		c.eventually(what, func() error {
			ans, err := ask(c.client, "udp", hostPort(v4, 80), port)
			if err == nil && ans.Pod != want {
				err = fmt.Errorf("answered by %s", ans.Pod)
			}
			return err
		})
	}
	answeredBy("flow pinned to port "+fmt.Sprint(echoPort), "pod-a")
	sl, err := client.DiscoveryV1().EndpointSlices(c.ns).Get(ctx, "web-ipv4", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range sl.Ports {
		if *p.Protocol == corev1.ProtocolUDP {
			sl.Ports[i].Port = ptr.To[int32](9090)
		}
	}
	if _, err := client.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	answeredBy("flow moves to port 9090", "pod-a-9090")
}
