package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/scheme"
	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/lab"
)

var (
	ctx = context.Background()
	cs  kubernetes.Interface
	cl  client.Client // with Fairlead's types
)

// converge is how long a test waits for the system to settle: generous, never a performance
// assertion.
const converge = 60 * time.Second

func connect() error {
	cfg, err := theLab.RESTConfig()
	if err != nil {
		return err
	}
	if cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	cl, err = client.New(cfg, client.Options{Scheme: scheme.New()})
	return err
}

// answer is what the echo server says: the Pod that answered and the client address it saw.
type answer struct {
	Pod    string
	Client netip.AddrPort
}

// request connects from inside namespace ns to addr and reads the echo server's line.
func request(ns, addr string) (answer, error) {
	line, err := lab.Request(ctx, ns, addr)
	if err != nil {
		return answer{}, err
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return answer{}, fmt.Errorf("unexpected answer %q from %s", line, addr)
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return answer{}, fmt.Errorf("answer %q from %s: %w", line, addr, err)
	}
	return answer{Pod: f[0], Client: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

// echoService is a LoadBalancer Service in front of the demo's echo Pods, from pool.
func echoService(name, pool string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: lab.DemoNamespace, Name: name,
			Annotations: map[string]string{"fairlead.dev/pool": pool}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "echo"},
			Ports:    []corev1.ServicePort{{Name: "echo", Port: 80, TargetPort: intstr.FromString("echo")}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// createService creates s, deletes it when the test ends, and waits until it has
// addresses (as many as its families).
func createService(t *testing.T, s *corev1.Service) *corev1.Service {
	t.Helper()
	if _, err := cs.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteService(t, s.Namespace, s.Name) })
	want := 1
	if s.Spec.IPFamilyPolicy != nil && *s.Spec.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack {
		want = 2
	}
	var got *corev1.Service
	kit.Eventually(t, converge, "Service "+s.Name+" gets its addresses", func(context.Context) error {
		var err error
		got, err = cs.CoreV1().Services(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n := len(got.Status.LoadBalancer.Ingress); n < want {
			return fmt.Errorf("%d of %d addresses; conditions %v", n, want, got.Status.Conditions)
		}
		return nil
	})
	return got
}

// deleteService deletes a Service and waits until it is gone (its finalizer released).
func deleteService(t *testing.T, ns, name string) {
	t.Helper()
	err := cs.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Error(err)
		return
	}
	kit.Eventually(t, converge, "Service "+name+" is gone", func(context.Context) error {
		_, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
}

// demoService returns one of the lab's demo Services and its first external address.
func demoService(t *testing.T, name string) (*corev1.Service, string) {
	t.Helper()
	s, err := cs.CoreV1().Services(lab.DemoNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.LoadBalancer.Ingress) == 0 {
		t.Fatalf("demo Service %s has no external address", name)
	}
	return s, s.Status.LoadBalancer.Ingress[0].IP
}

// ingress returns s's external address of the given family.
func ingress(t *testing.T, s *corev1.Service, v6 bool) string {
	t.Helper()
	for _, in := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil && a.Is6() == v6 {
			return in.IP
		}
	}
	t.Fatalf("Service %s has no IPv6=%v address: %v", s.Name, v6, s.Status.LoadBalancer.Ingress)
	return ""
}

func addr80(ip string) string { return net.JoinHostPort(ip, "80") }

// readyEchoPods returns the names of the demo's Pods that are Ready.
func readyEchoPods() ([]string, error) {
	pods, err := cs.CoreV1().Pods(lab.DemoNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				out = append(out, p.Name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// readyEndpoints counts the ready endpoints of Service svc.
func readyEndpoints(svc string) (int, error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(lab.DemoNamespace).List(ctx,
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sl := range slices.Items {
		for _, e := range sl.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

// inNS runs a command inside one of the lab's namespaces.
func inNS(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

var arpReply = regexp.MustCompile(`from ([0-9a-f:]{17}) `)

// arpOwner sends ARP requests for ip from the LAN client and returns the MAC that answers,
// or "" when nobody does.
func arpOwner(ip string) (string, error) {
	out, err := inNS(theLab.ClientL2(), "arping", "-c", "2", "-w", "2", "-I", "eth0", ip)
	if m := arpReply.FindStringSubmatch(out); m != nil {
		return m[1], nil
	}
	if err != nil && strings.Contains(out, "100% unanswered") {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return "", fmt.Errorf("arping %s: no reply line in %q", ip, out)
}

// nodeMAC returns the MAC address of node n's LAN interface.
func nodeMAC(t *testing.T, n lab.Node) string {
	t.Helper()
	out, err := inNS(n.NS, "ip", "-j", "link", "show", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link in %s: %v: %s", n.NS, err, out)
	}
	return links[0].Address
}

// nodeByMAC names the lab node whose LAN interface has mac.
func nodeByMAC(t *testing.T, mac string) (lab.Node, bool) {
	t.Helper()
	for _, n := range theLab.Nodes() {
		if nodeMAC(t, n) == mac {
			return n, true
		}
	}
	return lab.Node{}, false
}

// announcedBy returns the nodes that the ServiceAnnouncement of Service name lists for ip.
func announcedBy(name, ip string) ([]string, error) {
	var a v1alpha1.ServiceAnnouncement
	if err := cl.Get(ctx, client.ObjectKey{Namespace: lab.DemoNamespace, Name: name}, &a); err != nil {
		return nil, err
	}
	var nodes []string
	for _, x := range a.Status.Announcements {
		if x.IP == ip {
			nodes = append(nodes, x.Node)
		}
	}
	return nodes, nil
}

// routerHops returns the next hops the router's kernel uses for ip (from FRR's view of its
// FIB), as node names.
func routerHops(ip string) ([]string, error) {
	a := netip.MustParseAddr(ip)
	hops, err := theLab.RouterNextHops(netip.PrefixFrom(a, a.BitLen()))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range hops {
		name := h.String()
		for _, n := range theLab.Nodes() {
			if n.V4 == h.String() || n.V6 == h.String() {
				name = n.Name
			}
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

func allNodeNames() []string {
	var out []string
	for _, n := range theLab.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

// nftHas reports whether node n's proxy table mentions ip.
func nftHas(n lab.Node, ip string) (bool, error) {
	out, err := inNS(n.NS, "nft", "list", "table", "inet", "fairlead")
	if err != nil {
		return false, err
	}
	re := regexp.MustCompile(`(^|[^0-9a-f.:])` + regexp.QuoteMeta(ip) + `($|[^0-9a-f.:])`)
	return re.MatchString(out), nil
}

// kubectl runs the lab's kubectl against it through the relay on the host's loopback, as a
// user of the lab does.
func kubectl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(theLab.K8sBin, "kubectl"), append([]string{"--kubeconfig", theLab.Kubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// answering sends n requests from ns to addr and returns the set of Pods that answered.
func answering(ns, addr string, n int) ([]string, error) {
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		a, err := request(ns, addr)
		if err != nil {
			return nil, err
		}
		seen[a.Pod] = true
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}
