package bgp_test

// The tests in this package run the real fairlead-speaker binary (--bgp) in node namespaces,
// against the real kube-apiserver, peering with real FRR and BIRD routers in a router
// namespace, and assert what the routers learn and install in their kernel.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

var (
	ctx         = context.Background()
	routerAddr4 = "192.0.2.1"
	routerAddr6 = "2001:db8:0:1::1"
)

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// lab is a control plane, a router namespace with a LAN bridge, and node namespaces on it.
type lab struct {
	t          testing.TB
	env        *controlplane.Env
	c          client.Client
	kubeconfig string
	apiAddr    string
	router     *netns.NS
	nodes      []*node
	speakerBin string
}

type node struct {
	name     string
	ns       *netns.NS
	v4, v6   string
	speaker  *netns.Proc
	relay    *netns.Relay // the node's way to the apiserver, which a test can cut
	lab      *lab
	extraArg []string
}

// metrics fetches the speaker's plain-HTTP metrics from inside the node's namespace, where it
// listens on loopback (the node must run with --metrics-bind-address and --metrics-secure=false).
func (n *node) metrics(addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := scrape.GetPlain(ctx, scrape.InNetNS(n.ns), addr, "/metrics")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("GET http://%s/metrics: status %d", addr, code)
	}
	return string(body), nil
}

func newLab(t testing.TB, nodes int) *lab {
	t.Helper()
	netns.Require(t)
	// FAIRLEAD_SPEAKER_RACE builds the speakers with the race detector.
	bin := kit.Binary(t, "./cmd/fairlead-speaker", kit.BuildOptions{Race: os.Getenv("FAIRLEAD_SPEAKER_RACE") != ""})
	env := controlplane.StartForTest(t, controlplane.Options{})
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, env: env, c: env.Client, apiAddr: u.Host, kubeconfig: filepath.Join(t.TempDir(), "kubeconfig"), speakerBin: bin}
	if err := env.Kubeconfig(l.kubeconfig); err != nil {
		t.Fatal(err)
	}
	l.router = netns.New(t, "router")
	var ports []string
	for i := 1; i <= nodes; i++ {
		n := &node{name: fmt.Sprintf("node%d", i), ns: netns.New(t, fmt.Sprintf("node%d", i)), lab: l,
			v4: fmt.Sprintf("192.0.2.%d", 10+i), v6: fmt.Sprintf("2001:db8:0:1::%d", 10+i)}
		port := fmt.Sprintf("p%d", i)
		netns.Veth(t, n.ns, "eth0", l.router, port)
		ports = append(ports, port)
		n.ns.Addr("eth0", n.v4+"/24")
		n.ns.Addr("eth0", n.v6+"/64")
		n.relay = n.ns.ForwardRelay(l.apiAddr, l.apiAddr)
		l.nodes = append(l.nodes, n)
		l.createNode(n)
	}
	l.router.Bridge("br0", ports...)
	l.router.Addr("br0", routerAddr4+"/24")
	l.router.Addr("br0", routerAddr6+"/64")
	return l
}

// clientBehindRouter adds a client namespace on its own subnet behind the router (which
// forwards), and gives every node the route back to it.
func (l *lab) clientBehindRouter() *netns.NS {
	l.t.Helper()
	c := netns.New(l.t, "client")
	netns.Veth(l.t, c, "eth0", l.router, "cl0")
	l.router.Addr("cl0", "203.0.113.1/24")
	c.Addr("eth0", "203.0.113.2/24")
	c.MustRun("ip", "route", "add", "default", "via", "203.0.113.1")
	l.router.Sysctl("net.ipv4.ip_forward", "1")
	for _, n := range l.nodes {
		n.ns.MustRun("ip", "route", "add", "203.0.113.0/24", "via", routerAddr4)
	}
	return c
}

func (l *lab) createNode(n *node) {
	l.t.Helper()
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{"kubernetes.io/hostname": n.name}}}
	l.create(obj)
	obj.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.v4}, {Type: corev1.NodeInternalIP, Address: n.v6}},
	}
	if err := l.c.Status().Update(ctx, obj); err != nil {
		l.t.Fatal(err)
	}
}

// start runs the node's speaker.
func (n *node) start() {
	n.lab.t.Helper()
	args := []string{"--bgp", "--l2=false", "--node-name", n.name, "--kubeconfig", n.lab.kubeconfig,
		"--metrics-bind-address", "0", "--bgp-secret-namespace", "default", "-v", "2"}
	n.speaker = n.ns.Start(n.lab.speakerBin, append(args, n.extraArg...)...)
}

func (l *lab) startAll() {
	for _, n := range l.nodes {
		n.start()
	}
}

func (l *lab) create(obj client.Object) {
	l.t.Helper()
	if err := l.c.Create(ctx, obj); err != nil {
		l.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func (l *lab) pool() {
	l.create(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "public"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24", "2001:db8:ff::/64"}}})
}

// service creates a LoadBalancer Service and writes its external addresses into its status,
// as the controller would.
func (l *lab) service(name string, local bool, ips ...string) *corev1.Service {
	l.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Selector:                      map[string]string{"app": name},
			Ports:                         []corev1.ServicePort{{Port: 80}},
			AllocateLoadBalancerNodePorts: ptr.To(false),
		},
	}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	l.create(svc)
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	if err := l.c.Status().Update(ctx, svc); err != nil {
		l.t.Fatal(err)
	}
	return svc
}

// endpoints sets the Service's ready endpoints to one per listed node, in both families (the
// lab's Services have addresses of both, and an address is advertised by the nodes with
// endpoints of its family).
func (l *lab) endpoints(svc string, nodes ...string) {
	l.t.Helper()
	for _, fam := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		name, addr := svc+"-x", "10.244.%d.10"
		if fam == discoveryv1.AddressTypeIPv6 {
			name, addr = svc+"-x6", "fd00:10:244:%d::10"
		}
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: fam}
		for i, n := range nodes {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf(addr, i+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				NodeName:   ptr.To(n),
			})
		}
		var old discoveryv1.EndpointSlice
		if err := l.c.Get(ctx, client.ObjectKeyFromObject(es), &old); err == nil {
			old.Endpoints = es.Endpoints
			if err := l.c.Update(ctx, &old); err != nil {
				l.t.Fatal(err)
			}
			continue
		}
		l.create(es)
	}
}

// fib returns the sorted gateways of the kernel route to prefix in ns (nil: no route).
func fib(ns *netns.NS, prefix string) ([]string, error) {
	fam := "-4"
	if strings.Contains(prefix, ":") {
		fam = "-6"
	}
	out, err := ns.Run("ip", "-j", fam, "route", "show", "exact", prefix)
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return nil, fmt.Errorf("ip route: %v: %s", err, out)
	}
	var gws []string
	for _, r := range routes {
		if r.Gateway != "" {
			gws = append(gws, r.Gateway)
		}
		for _, nh := range r.Nexthops {
			gws = append(gws, nh.Gateway)
		}
	}
	slices.Sort(gws)
	return gws, nil
}

func wantSet(got, want []string) error {
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

func (l *lab) peerStatus(name string) (v1alpha1.BGPPeerStatus, error) {
	var p v1alpha1.BGPPeer
	err := l.c.Get(ctx, client.ObjectKey{Name: name}, &p)
	return p.Status, err
}

// sessionState returns node's entry in the peer's status.
func (l *lab) sessionState(peer, nodeName string) (v1alpha1.BGPSessionStatus, bool) {
	st, err := l.peerStatus(peer)
	if err != nil {
		return v1alpha1.BGPSessionStatus{}, false
	}
	for _, e := range st.Nodes {
		if e.Node == nodeName {
			return e, true
		}
	}
	return v1alpha1.BGPSessionStatus{}, false
}

func v4s(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.v4)
	}
	return out
}

func v6s(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.v6)
	}
	return out
}
