package chart

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/routers"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

// Values of the speaker test: every speaker component on, an address pool announced by layer 2
// and by BGP to a router that wants an MD5 password kept in a Secret of another namespace, which
// the values grant the speakers.
const speakerValues = `
metrics: {reader: {serviceAccount: {name: prometheus, namespace: monitoring}}}
speaker: {l2: true, bgp: true, proxy: true, clusterCIDR: 10.244.0.0/16, bgpSecretNamespaces: [bgp-secrets]}
ipPools:
  - name: lan
    spec: {addresses: ["198.51.100.0/28"], avoidBuggyIPs: true}
l2Advertisements:
  - name: lan
    spec: {ipPools: [lan], interfaces: [eth0]}
bgpPeers:
  - name: router
    spec: {peerAddress: 192.0.2.1, peerASN: 64500, localASN: 64512, passwordSecret: {name: bgp-router, namespace: bgp-secrets}}
bgpAdvertisements:
  - name: lan
    spec: {ipPools: [lan]}
`

const (
	lbIP       = "198.51.100.1" // the first address the controller hands out (.0 is avoided)
	nodeAddr   = "192.0.2.11"
	routerAddr = "192.0.2.1"
	clientAddr = "192.0.2.100"
)

// TestSpeakerRunsWithItsRBAC runs the fairlead-speaker binary as the chart's speaker
// ServiceAccount, with exactly the chart's RBAC and the DaemonSet's args, in a node namespace
// on a LAN bridge shared with a client and an FRR router, and the controller as its own
// ServiceAccount, with the DaemonSet's capabilities only. With that the speaker answers ARP for the address the
// controller allocated, proxies a client's TCP connection to the endpoint through its nftables
// table, establishes an MD5-protected BGP session with the password read from a namespace the
// values grant it (not the release's), advertises the address, and writes ServiceAnnouncement, BGPPeer status and
// Events. Then, as the same ServiceAccount, the test shows what the speaker cannot do.
func TestSpeakerRunsWithItsRBAC(t *testing.T) {
	// Each test has its own apiserver; most of their time is spent waiting (leases, sessions).
	t.Parallel()
	netns.Require(t)
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx := context.Background()
	c := env.Client
	for _, ns := range []string{namespace, "bgp-secrets", "monitoring"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(speakerValues), &vals); err != nil {
		t.Fatal(err)
	}
	objs, err := render(load(t), vals)
	if err != nil {
		t.Fatal(err)
	}
	applyObjects(t, c, objs)
	var ds appsv1.DaemonSet
	var dep appsv1.Deployment
	find(t, objs, "DaemonSet", release+"-speaker", &ds)
	find(t, objs, "Deployment", release+"-controller", &dep)
	create := func(o client.Object) {
		t.Helper()
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "bgp-secrets", Name: "bgp-router"},
		StringData: map[string]string{"password": "s3cret-md5"}})
	// An advertisement the controller must report (with the chart's RBAC) as not Accepted,
	// while the speaker goes on announcing what the valid one covers. (That the speaker skips
	// it whole is speaker/l2/plan's unit test.)
	create(&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: v1alpha1.L2AdvertisementSpec{
		IPPools: []string{"lan"}, Interfaces: []string{"eth1"},
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack id": "r1"}}},
	}})

	// The LAN: a node, a client and a router on one bridge.
	lan, node, clientNS, router := netns.New(t, "lan"), netns.New(t, "node1"), netns.New(t, "client"), netns.New(t, "router")
	netns.Veth(t, node, "eth0", lan, "pn")
	netns.Veth(t, clientNS, "eth0", lan, "pc")
	netns.Veth(t, router, "eth0", lan, "pr")
	lan.Bridge("br0", "pn", "pc", "pr")
	node.Addr("eth0", nodeAddr+"/24")
	clientNS.Addr("eth0", clientAddr+"/24")
	router.Addr("eth0", routerAddr+"/24")
	// The pool is on the LAN: the client resolves its addresses by ARP.
	clientNS.MustRun("ip", "route", "add", "198.51.100.0/28", "dev", "eth0")
	frr := routers.StartFRR(t, router, fmt.Sprintf(`router bgp 64500
 bgp router-id %[1]s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor %[2]s remote-as 64512
 neighbor %[2]s password s3cret-md5
 neighbor %[2]s timers connect 1
 address-family ipv4 unicast
  neighbor %[2]s activate
 exit-address-family
`, routerAddr, nodeAddr))

	// The "pod": the node itself answers on 8080 (a host-network endpoint).
	var ln net.Listener
	if err := node.Do(func() (err error) { ln, err = net.Listen("tcp", nodeAddr+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(conn, "pod on node1")
			conn.Close()
		}
	}()

	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}
	create(n)
	n.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeAddr}},
	}
	if err := c.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	create(svc)
	create(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{nodeAddr}, NodeName: ptr.To("node1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	})

	ctrlMetrics := freeLocalAddr(t)
	ctrlProc := startController(t, env, &dep, "--metrics-bind-address="+ctrlMetrics, "--zap-log-level=debug")
	// The speaker, as the DaemonSet runs it: the chart's args, then what the Pod's
	// environment gives it (node name, namespace) and a kubeconfig reaching the apiserver
	// through a relay, with no route out of the namespace.
	apiAddr := strings.TrimSuffix(strings.TrimPrefix(env.Config.Host, "https://"), "/")
	node.Forward(apiAddr, apiAddr)
	kubeconfig := filepath.Join(t.TempDir(), "speaker.kubeconfig")
	writeImpersonating(t, env, kubeconfig, saUser(ds.Spec.Template.Spec.ServiceAccountName))
	// The member list key, as the DaemonSet mounts it from the chart's Secret.
	var keySecret corev1.Secret
	find(t, objs, "Secret", release+"-memberlist", &keySecret)
	keyFile := filepath.Join(t.TempDir(), "memberlist-key")
	if err := os.WriteFile(keyFile, keySecret.Data["key"], 0o600); err != nil {
		t.Fatal(err)
	}
	dsArgs := slices.Clone(ds.Spec.Template.Spec.Containers[0].Args)
	const keyArg = "--memberlist-secret-file=/etc/fairlead/memberlist/key"
	if i := slices.Index(dsArgs, keyArg); i < 0 || len(keySecret.Data["key"]) != 32 {
		t.Fatalf("the DaemonSet does not use a 32-byte member list key from the chart's Secret: %v", dsArgs)
	} else {
		dsArgs[i] = "--memberlist-secret-file=" + keyFile
	}
	args := append(dsArgs,
		"--kubeconfig", kubeconfig, "--node-name", "node1", "--bgp-secret-namespace", namespace,
		"--metrics-bind-address", "127.0.0.1:7474", "--healthz-bind-address", "127.0.0.1:10256",
		"-v", "6") // the most verbose logs: a password printed at any level must show
	for _, want := range []string{"--l2=true", "--bgp=true", "--proxy=true"} {
		if !slices.Contains(args, want) {
			t.Fatalf("the DaemonSet's args %v lack %s", args, want)
		}
	}
	// With the DaemonSet's capabilities and no others: root whose bounding set holds only
	// what the container adds, as in the Pod.
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	if fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
		t.Fatalf("the speaker keeps capabilities besides those it adds: %+v", sc.Capabilities)
	}
	caps := "-all"
	for _, c := range sc.Capabilities.Add {
		caps += ",+" + strings.ToLower(string(c))
	}
	speaker := node.Start("setpriv", append([]string{"--bounding-set", caps, "--inh-caps", caps, "--", binary(t, "fairlead-speaker")}, args...)...)
	// nsenter and setpriv exec, so the pid is the speaker's.
	kit.Eventually(t, 10*time.Second, "the speaker's effective capabilities to be NET_ADMIN and NET_RAW", func(context.Context) error {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", speaker.Cmd.Process.Pid))
		if err != nil {
			return err
		}
		// CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13.
		if !strings.Contains(string(st), "\nCapEff:\t0000000000003000\n") {
			return fmt.Errorf("status:\n%s", st)
		}
		return nil
	})

	kit.Eventually(t, 60*time.Second, "the controller to allocate "+lbIP, func(context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Status.LoadBalancer.Ingress[0].IP != lbIP {
			return fmt.Errorf("ingress %v", svc.Status.LoadBalancer.Ingress)
		}
		return nil
	})

	// Layer 2 and the proxy: the client resolves the address to the node and its connection
	// reaches the endpoint through the speaker's nftables rules.
	var nodeMAC string
	if err := node.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err == nil {
			nodeMAC = ifi.HardwareAddr.String()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	kit.Eventually(t, 60*time.Second, "a TCP connection from the client to "+lbIP+":80", func(context.Context) error {
		var got []byte
		err := clientNS.Do(func() error {
			conn, err := net.DialTimeout("tcp", lbIP+":80", time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			got, err = io.ReadAll(conn)
			return err
		})
		if err != nil {
			return err
		}
		if string(got) != "pod on node1" {
			return fmt.Errorf("answer %q", got)
		}
		return nil
	})
	if out, _ := clientNS.Run("ip", "neigh", "show", lbIP); !strings.Contains(out, nodeMAC) {
		t.Errorf("the client's neighbour entry for %s is %q, want the node's MAC %s", lbIP, out, nodeMAC)
	}
	if table := node.MustRun("nft", "list", "table", "inet", "fairlead"); !strings.Contains(table, lbIP) {
		t.Errorf("the speaker's nftables table does not mention %s:\n%s", lbIP, table)
	}

	// What the speaker writes: where the address is announced (only on the valid
	// advertisement's interface), the BGP session in the peer's status, and Events.
	kit.Eventually(t, 30*time.Second, "the ServiceAnnouncement", func(context.Context) error {
		var sa v1alpha1.ServiceAnnouncement
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), &sa); err != nil {
			return err
		}
		for _, a := range sa.Status.Announcements {
			if a.IP == lbIP && a.Node == "node1" && a.Protocol == v1alpha1.ProtocolARP && fmt.Sprint(a.Interfaces) == "[eth0]" {
				return nil
			}
		}
		return fmt.Errorf("announcements %+v", sa.Status.Announcements)
	})
	kit.Eventually(t, 60*time.Second, "an Established session in the BGPPeer's status", func(context.Context) error {
		var p v1alpha1.BGPPeer
		if err := c.Get(ctx, client.ObjectKey{Name: "router"}, &p); err != nil {
			return err
		}
		for _, s := range p.Status.Nodes {
			if s.Node == "node1" && s.State == "Established" {
				return nil
			}
		}
		return fmt.Errorf("status %+v", p.Status.Nodes)
	})
	kit.Eventually(t, 30*time.Second, "the router to learn "+lbIP+"/32 from the node", func(context.Context) error {
		out, err := frr.Vtysh("show bgp ipv4 unicast " + lbIP + "/32 json")
		if err != nil {
			return err
		}
		var r struct {
			Paths []struct {
				Nexthops []struct {
					IP string `json:"ip"`
				} `json:"nexthops"`
			} `json:"paths"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return err
		}
		if len(r.Paths) != 1 || len(r.Paths[0].Nexthops) == 0 || r.Paths[0].Nexthops[0].IP != nodeAddr {
			return fmt.Errorf("route %s", out)
		}
		return nil
	})
	kit.Eventually(t, 30*time.Second, "the speaker's Events", func(context.Context) error {
		var evs corev1.EventList
		if err := c.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Source.Component == "fairlead-speaker" && e.InvolvedObject.Name == "web" && e.Reason == "L2Announced" {
				return nil
			}
		}
		return fmt.Errorf("no L2Announced Event from the speaker among %d", len(evs.Items))
	})
	// Metrics as the chart's ServiceMonitors scrape them: HTTPS with the token of the
	// ServiceAccount metrics.reader names (bound by the chart), which each component has the
	// apiserver review with its own chart RBAC; a token without the binding is refused.
	cs := kubernetes.NewForConfigOrDie(env.Config)
	granted, err := scrape.Token(ctx, cs, "monitoring", "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	denied, err := scrape.Token(ctx, cs, "monitoring", "nosy")
	if err != nil {
		t.Fatal(err)
	}
	scrape.CheckAuth(t, ctx, nil, ctrlMetrics, granted, denied)
	scrape.CheckAuth(t, ctx, scrape.InNetNS(node), "127.0.0.1:7474", granted, denied)
	// The DaemonSet's probes, where kubelet sends them: no token, on the node's loopback.
	for _, p := range []*corev1.Probe{ds.Spec.Template.Spec.Containers[0].LivenessProbe, ds.Spec.Template.Spec.Containers[0].ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Fatalf("the speaker lacks an HTTP probe: %+v", p)
		}
		addr := net.JoinHostPort(p.HTTPGet.Host, p.HTTPGet.Port.String())
		kit.Eventually(t, 30*time.Second, "the speaker's probe "+addr+p.HTTPGet.Path, func(context.Context) error {
			code, body, err := scrape.GetPlain(ctx, scrape.InNetNS(node), addr, p.HTTPGet.Path)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("%d %s", code, body)
			}
			return err
		})
	}
	// What the dashboard and the alerts query is what the two serve (dashboard_test.go).
	served, ctrlText, err := scrapeSecure(nil, ctrlMetrics, granted)
	if err != nil {
		t.Fatalf("scraping the controller: %v", err)
	}
	fromSpeaker, speakerText, err := scrapeSecure(node, "127.0.0.1:7474", granted)
	if err != nil {
		t.Fatalf("scraping the speaker: %v", err)
	}
	maps.Copy(served, fromSpeaker)
	checkServedMetrics(t, metricNamesOf(served))
	checkNoSecretLeaks(t, c, "s3cret-md5", map[string]string{
		"the speaker's log":        speaker.Output(),
		"the controller's log":     ctrlProc.output(),
		"the speaker's metrics":    speakerText,
		"the controller's metrics": ctrlText,
	})
	// The speaker's own account of layer 2 and of the proxy, as the alerts read it.
	for series, want := range map[string]float64{
		`fairlead_l2_addresses{state="elected"}`:                                   1,
		`fairlead_l2_addresses{state="unowned"}`:                                   0,
		`fairlead_l2_announced{interface="eth0",ip="` + lbIP + `",protocol="ARP"}`: 1,
	} {
		if got, ok := served[series]; !ok || got != want {
			t.Errorf("the speaker serves %s = %v (present: %v), want %v", series, got, ok, want)
		}
	}
	// kube-proxy's metrics port (its default, 127.0.0.1:10249) answers as kube-proxy's does:
	// tools and kube-proxy's e2e tests ask it which proxy mode runs.
	conn := dial(t, node, "tcp", "127.0.0.1:10249")
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "GET /proxyMode HTTP/1.0\r\nHost: proxy\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
		t.Errorf("GET /proxyMode on 127.0.0.1:10249: %v", err)
	} else if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || string(body) != "nftables" {
		t.Errorf("GET /proxyMode on 127.0.0.1:10249: %s %q, want 200 nftables", resp.Status, body)
	}
	conn.Close()
	kubeProxyPort, err := scrapeMetrics(dial(t, node, "tcp", "127.0.0.1:10249"))
	if err != nil {
		t.Fatalf("scraping 127.0.0.1:10249: %v", err)
	}
	if !metricNamesOf(kubeProxyPort)["kubeproxy_sync_proxy_rules_last_timestamp_seconds"] {
		t.Errorf("127.0.0.1:10249/metrics lacks kubeproxy_sync_proxy_rules_last_timestamp_seconds")
	}
	if at := served["fairlead_proxy_last_sync_timestamp_seconds"]; time.Since(time.Unix(int64(at), 0)) > 5*time.Minute {
		t.Errorf("fairlead_proxy_last_sync_timestamp_seconds = %v, not a recent sync", at)
	}

	// The controller, with its chart RBAC, reports the broken advertisement.
	kit.Eventually(t, 30*time.Second, "the broken L2Advertisement to be marked not Accepted", func(context.Context) error {
		var a v1alpha1.L2Advertisement
		if err := c.Get(ctx, client.ObjectKey{Name: "broken"}, &a); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionAccepted); cond == nil || cond.Status != metav1.ConditionFalse {
			return fmt.Errorf("conditions %+v", a.Status.Conditions)
		}
		return nil
	})

	// And nothing more: as the speaker's ServiceAccount.
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: saUser(ds.Spec.Template.Spec.ServiceAccountName)}
	sp, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		try  func() error
	}{
		{"write Service status", func() error {
			s := svc.DeepCopy()
			s.Status.LoadBalancer.Ingress = nil
			return sp.Status().Update(ctx, s)
		}},
		{"delete Services", func() error { return sp.Delete(ctx, svc.DeepCopy()) }},
		{"read Secrets cluster-wide", func() error { return sp.List(ctx, &corev1.SecretList{}) }},
		{"read a Secret outside its namespace", func() error {
			return sp.Get(ctx, client.ObjectKey{Namespace: "default", Name: "anything"}, &corev1.Secret{})
		}},
		{"create IPPools", func() error {
			return sp.Create(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "mine"},
				Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.0/24"}}})
		}},
		{"change L2Advertisements", func() error {
			var a v1alpha1.L2Advertisement
			if err := c.Get(ctx, client.ObjectKey{Name: "lan"}, &a); err != nil {
				return err
			}
			a.Spec.Interfaces = []string{"eth9"}
			return sp.Update(ctx, &a)
		}},
		{"write L2Advertisement status", func() error {
			var a v1alpha1.L2Advertisement
			if err := c.Get(ctx, client.ObjectKey{Name: "broken"}, &a); err != nil {
				return err
			}
			a.Status.Conditions = nil
			return sp.Status().Update(ctx, &a)
		}},
		{"delete ServiceAnnouncements", func() error {
			return sp.Delete(ctx, &v1alpha1.ServiceAnnouncement{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}})
		}},
		{"write Leases", func() error {
			return sp.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "not-yours"}})
		}},
	} {
		if err := tc.try(); !apierrors.IsForbidden(err) {
			t.Errorf("the speaker can %s (err %v), want Forbidden", tc.what, err)
		}
	}
}

// checkNoSecretLeaks fails when the BGP password shows anywhere the components wrote: their
// logs and metrics (given), every Event, and every object of Fairlead's kinds (status included).
func checkNoSecretLeaks(t *testing.T, c client.Client, secret string, written map[string]string) {
	t.Helper()
	for _, list := range []client.ObjectList{&corev1.EventList{}, &eventsv1.EventList{}, &v1alpha1.BGPPeerList{},
		&v1alpha1.BGPAdvertisementList{}, &v1alpha1.ServiceAnnouncementList{}, &v1alpha1.IPPoolList{},
		&v1alpha1.L2AdvertisementList{}, &corev1.ServiceList{}, &corev1.NodeList{}, &coordinationv1.LeaseList{}} {
		if err := c.List(context.Background(), list); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		written[fmt.Sprintf("%T", list)] = string(b)
	}
	for what, text := range written {
		if text == "" {
			t.Errorf("%s is empty: nothing to check", what)
		}
		if strings.Contains(text, secret) {
			t.Errorf("the BGP password appears in %s", what)
		}
	}
}
