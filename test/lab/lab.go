package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/fairlead-lb/fairlead/config/scheme"
	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/images"
)

// Lab is one lab on this machine. Its namespaces have fixed names, from Prefix: two labs run
// side by side only with different prefixes, state directories and relay ports (the e2e suite
// runs its own beside a user's `make lab`).
type Lab struct {
	Prefix   string // starts every namespace name; "" is DefaultPrefix
	State    string // state directory: pki, logs, pids, etcd data
	Bin      string // fairlead-lab, fairlead-controller, fairlead-speaker, echo; kubelet nodes: images.FairleadBinaries
	K8sBin   string // etcd, kube-apiserver, kube-controller-manager
	HostPort int    // the relay's port on the host's 127.0.0.1
	// PrometheusPort is the relay's port for Prometheus on the host's 127.0.0.1 (0: none).
	PrometheusPort int
	CRDs           string   // Fairlead's CRDs (charts/fairlead/crds)
	NodeMode       NodeMode // what plays the nodes; "" is AgentNodes
	// ControllerReplicas is how many fairlead-controller processes run with agent nodes (0
	// is 1). More than one elect a leader through a Lease, as the chart's two replicas do,
	// and each runs under a babysitter that restarts it, as kubelet restarts a container: a
	// leader that cannot renew its Lease exits.
	ControllerReplicas int
	Proxy              ProxyMode // what proxies Services on kubelet nodes; "" is FairleadProxy
	Out                io.Writer `json:"-"`
}

// DefaultState is where the lab keeps its state: /run is cleared at boot, like namespaces.
const DefaultState = "/run/fairlead-lab"

func (l *Lab) say(format string, args ...any) {
	if l.Out != nil {
		fmt.Fprintf(l.Out, format+"\n", args...)
	}
}

// Kubeconfig is the host-side kubeconfig (through the relay).
func (l *Lab) Kubeconfig() string { return filepath.Join(l.State, "pki", "host.kubeconfig") }

// Up tears down whatever is left of a previous lab and builds a new one.
func (l *Lab) Up(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab creates network namespaces: run it as root")
	}
	if l.NodeMode == "" {
		l.NodeMode = AgentNodes
	}
	if _, err := ParseNodeMode(string(l.NodeMode)); err != nil {
		return err
	}
	if l.Proxy == "" {
		l.Proxy = FairleadProxy
	}
	if _, err := ParseProxyMode(string(l.Proxy)); err != nil {
		return err
	}
	if l.kubeProxy() && !l.kubelets() {
		return fmt.Errorf("--proxy %s needs --nodes %s", KubeProxy, KubeletNodes)
	}
	need := []string{filepath.Join(l.K8sBin, "etcd"), filepath.Join(l.K8sBin, "kube-apiserver"),
		filepath.Join(l.K8sBin, "kube-controller-manager"), filepath.Join(l.Bin, "fairlead-controller"),
		filepath.Join(l.Bin, "fairlead-speaker"), l.self(), filepath.Join(l.Bin, "echo"), PrometheusBin}
	if l.kubelets() {
		for _, b := range images.FairleadBinaries {
			need = append(need, filepath.Join(l.Bin, b))
		}
		need = append(need, filepath.Join(l.K8sBin, "kubelet"), filepath.Join(l.K8sBin, "kube-scheduler"), filepath.Join(l.K8sBin, "coredns"),
			containerdBin, runcBin, filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local"))
	}
	if l.kubeProxy() {
		need = append(need, filepath.Join(l.K8sBin, "kube-proxy"))
	}
	for _, b := range need {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("missing %s (make lab builds or installs it)", b)
		}
	}
	if err := l.Down(); err != nil {
		return fmt.Errorf("cleaning the previous lab: %w", err)
	}
	for _, d := range []string{"pki", "logs", "pids", "etcd"} {
		if err := os.MkdirAll(filepath.Join(l.State, d), 0o700); err != nil {
			return err
		}
	}
	l.say("• network: namespaces %s*, LAN %s and %s", l.prefix(), LANv4, LANv6)
	if err := l.buildTopology(); err != nil {
		return err
	}
	l.say("• FRR in %s: AS %d, peering with the nodes (AS %d)", l.Router(), ASNEdge, ASNLab)
	if err := l.startRouter(); err != nil {
		return err
	}
	cpParts := "etcd, kube-apiserver, kube-controller-manager"
	if l.kubelets() {
		cpParts += ", kube-scheduler"
	}
	l.say("• control plane in %s: %s", l.CP(), cpParts)
	if err := l.startControlPlane(ctx); err != nil {
		return err
	}
	if err := l.daemon("", "relay", l.self(), "relay", "--prefix", l.prefix(), "--state", l.State, "--port", l.hostPortStr(),
		"--prometheus-port", fmt.Sprint(l.PrometheusPort)); err != nil {
		return err
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// The CRDs go in before fairlead-controller starts: started first, its IPPool watch finds
	// no kind and retries only every 10 s, leaving pools without status (READY "?" in
	// `fairleadctl status`) meanwhile. envtest's installer waits until the CRDs are served.
	// With kubelet nodes Helm installs them, with the chart.
	if !l.kubelets() {
		if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{l.CRDs}, ErrorIfPathMissing: true}); err != nil {
			return fmt.Errorf("installing CRDs from %s: %w", l.CRDs, err)
		}
	}
	if l.kubelets() {
		if err := l.startKubeletNodes(ctx, cs); err != nil {
			return err
		}
		if err := waitNodesReady(ctx, cs, Nodes, 2*time.Minute); err != nil {
			return err
		}
		if l.kubeProxy() {
			l.say("• kube-proxy (nftables) on every node")
			for _, n := range l.Nodes() {
				if err := l.startKubeProxy(n); err != nil {
					return err
				}
			}
			l.say("• helm install %s %s -n %s: fairlead-controller (Deployment) and fairlead-speaker (DaemonSet: bgp, l2) as Pods",
				Release, l.chartDir(), SpeakerNamespace)
		} else {
			l.say("• helm install %s %s -n %s: fairlead-controller (Deployment) and fairlead-speaker (DaemonSet: bgp, l2, proxy) as Pods; no kube-proxy",
				Release, l.chartDir(), SpeakerNamespace)
		}
		if err := l.installChart(ctx, cs, 3*time.Minute); err != nil {
			return err
		}
		l.say("• cluster DNS: CoreDNS (Deployment kube-system/coredns) behind Service kube-dns, %s", ClusterDNS)
		if err := deployDNS(ctx, cs, 2*time.Minute); err != nil {
			return err
		}
	} else {
		l.say("• fairlead-controller in %s", l.CP())
		if err := l.StartController(); err != nil {
			return err
		}
		for _, n := range l.Nodes() {
			l.say("• %s in %s: %s, lab agent, pods on %s and %s", n.Name, n.NS, n.V4, n.PodV4, n.PodV6)
			if err := l.StartAgent(n); err != nil {
				return err
			}
		}
		if err := waitNodesReady(ctx, cs, Nodes, 2*time.Minute); err != nil {
			return err
		}
	}
	if err := createPools(ctx, cfg); err != nil {
		return err
	}
	if err := createAnnouncements(ctx, cfg); err != nil {
		return err
	}
	if !l.kubelets() {
		if err := l.startSpeakers(ctx, cfg); err != nil {
			return err
		}
	}
	l.say("• Prometheus in %s: scrapes the controller and every speaker as the chart's ServiceMonitors say, evaluates the chart's alert rules", l.CP())
	if err := l.startPrometheus(ctx, cs); err != nil {
		return err
	}
	l.say("• demo: Deployment demo/echo (3 Pods) behind LoadBalancer Services echo-l2 and echo-bgp")
	if err := deployDemo(ctx, cs, 3*time.Minute); err != nil {
		return err
	}
	l.waitRouted(ctx, cs, time.Minute)
	l.waitServing(ctx, cs, time.Minute)
	l.say("")
	if err := printServices(ctx, cs, l.Out); err != nil {
		return err
	}
	reached := l.showTraffic(ctx, cs)
	l.say("\nThe lab is up. Use it with:\n  export KUBECONFIG=%s\n  kubectl get pods -A -o wide\n"+
		"  kubectl apply -f your-app.yaml   # Deployments and Services work as on a cluster\n"+
		"  fairlead-lab status | down%s\n"+
		"Prometheus (targets, alerts, queries): %s", l.Kubeconfig(), l.flagsHint(), l.prometheusHint())
	if reached == 0 {
		return errors.New("no request reached a Pod through an external address")
	}
	return nil
}

// createPools makes the lab's two pools: one announced on the LAN, one by BGP.
func createPools(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	for _, p := range []*v1alpha1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "lab-l2"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{PoolL2v4, PoolL2v6}, AvoidBuggyIPs: true}},
		{ObjectMeta: metav1.ObjectMeta{Name: "lab-bgp"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{PoolBGPv4, PoolBGPv6}, AutoAssign: ptr.To(false), AvoidBuggyIPs: true}},
	} {
		if err := c.Create(ctx, p); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating pool %s: %w", p.Name, err)
		}
	}
	return nil
}

// showTraffic sends six requests to each demo Service's external address from the client that
// reaches it (the LAN client for layer 2, the client behind the router for BGP), and, as a
// reference, one to each Pod from node1.
func (l *Lab) showTraffic(ctx context.Context, cs kubernetes.Interface) (reached int) {
	for _, c := range []struct{ svc, from string }{{"echo-l2", l.ClientL2()}, {"echo-bgp", l.ClientBGP()}} {
		s, err := cs.CoreV1().Services(DemoNamespace).Get(ctx, c.svc, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			continue
		}
		ip := s.Status.LoadBalancer.Ingress[0].IP
		l.say("\n%s → %s (%s):", c.from, ip, c.svc)
		for i := 0; i < 6; i++ {
			out, err := Request(ctx, c.from, hostPort(ip, s.Spec.Ports[0].Port))
			if err != nil {
				out = "failed: " + err.Error()
			} else {
				reached++
			}
			l.say("  %s", out)
		}
	}
	pods, err := cs.CoreV1().Pods(DemoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return reached
	}
	l.say("\n%s → each Pod directly:", l.Nodes()[0].NS)
	for _, p := range pods.Items {
		out, err := Request(ctx, l.Nodes()[0].NS, hostPort(p.Status.PodIP, 8080))
		if err != nil {
			out = "failed: " + err.Error()
		}
		l.say("  %-28s %-12s on %s: %s", p.Name, p.Status.PodIP, p.Spec.NodeName, out)
	}
	return reached
}

func waitNodesReady(ctx context.Context, cs kubernetes.Interface, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		ready := 0
		if err == nil {
			for i := range nodes.Items {
				if schedulable(&nodes.Items[i]) {
					ready++
				}
			}
		}
		if ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d nodes Ready after %s (last error: %v)", ready, n, timeout, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Down removes the lab: every process, namespace, mount, cgroup and file it made, and puts
// back the host settings its kubelets changed. It is safe on a half-built, crashed or already
// removed lab, of either node mode.
func (l *Lab) Down() error {
	l.stopRouter()
	l.stopDaemons()
	errs := l.deleteNamespaces()
	if left := l.Namespaces(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left: %s", strings.Join(left, " ")))
	}
	errs = append(errs, l.sweepNodes()...)
	if err := l.restoreHost(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(l.State); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Status describes the lab in a few lines.
func (l *Lab) Status(ctx context.Context, w io.Writer) error {
	nss := l.Namespaces()
	if len(nss) == 0 {
		fmt.Fprintln(w, "no lab")
		return nil
	}
	fmt.Fprintf(w, "namespaces: %d (%s ...)\n", len(nss), strings.Join(nss[:min(len(nss), 6)], " "))
	daemons := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "fairlead-controller", "prometheus", "prometheus-sd", "relay", "frr-zebra", "frr-bgpd"}
	for _, n := range l.Nodes() {
		daemons = append(daemons, "agent-"+n.Name, "containerd-"+n.Name, "kubelet-"+n.Name, "kube-proxy-"+n.Name, "speaker-"+n.Name)
	}
	for _, d := range daemons {
		// Each node mode runs its own set: what it never started is not listed.
		if _, err := os.Stat(filepath.Join(l.State, "pids", d+".pid")); err == nil {
			fmt.Fprintf(w, "%-24s %s\n", d, alive(l.daemonAlive(d)))
		}
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("apiserver: %w", err)
	}
	for _, n := range nodes.Items {
		fmt.Fprintf(w, "node %-8s ready=%v\n", n.Name, schedulable(&n))
	}
	fmt.Fprintf(w, "KUBECONFIG=%s\n", l.Kubeconfig())
	if _, err := os.Stat(filepath.Join(l.State, "pids", "prometheus.pid")); err == nil {
		fmt.Fprintf(w, "prometheus: %s\n", l.prometheusStatus(ctx))
	}
	return nil
}

func alive(ok bool) string {
	if ok {
		return "running"
	}
	return "NOT RUNNING"
}

// Relay forwards the host's 127.0.0.1:HostPort to the apiserver inside the control-plane
// namespace, and 127.0.0.1:PrometheusPort to Prometheus there, until ctx ends. Connections are
// opened from inside the namespace: the lab never gets a route to the host.
func (l *Lab) Relay(ctx context.Context) error {
	errs := make(chan error, 2)
	go func() { errs <- l.relay(ctx, l.HostPort, "127.0.0.1:"+apiPort) }()
	if l.PrometheusPort == 0 {
		return <-errs
	}
	go func() { errs <- l.relay(ctx, l.PrometheusPort, promAddr) }()
	// Either listener failing ends the relay: a half relay would look like a lab half up.
	return <-errs
}

func (l *Lab) relay(ctx context.Context, port int, target string) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			up, err := DialIn(ctx, l.CP(), "tcp", target)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// AgentFor is what `fairlead-lab agent` runs.
func (l *Lab) AgentFor(index int, echo string, cs kubernetes.Interface, schedule bool) (*Agent, error) {
	for _, n := range l.Nodes() {
		if n.Index == index {
			return NewAgent(AgentOptions{Node: n, Prefix: l.prefix(), Client: cs, State: l.State, EchoBin: echo, Schedule: schedule}), nil
		}
	}
	return nil, fmt.Errorf("no lab node %d", index)
}

// self is the lab's command, which the lab also runs as its own daemons (relay, agents,
// Prometheus' discovery).
func (l *Lab) self() string { return filepath.Join(l.Bin, "fairlead-lab") }

// StartAgent starts node n's lab agent (node1's also schedules).
func (l *Lab) StartAgent(n Node) error {
	args := []string{"agent", "--prefix", l.prefix(), "--state", l.State, "--node", fmt.Sprint(n.Index),
		"--kubeconfig", filepath.Join(l.State, "pki", "node.kubeconfig"), "--echo", filepath.Join(l.Bin, "echo")}
	if n.Index == 1 {
		args = append(args, "--schedule")
	}
	return l.daemon(n.NS, "agent-"+n.Name, l.self(), args...)
}

// StartController runs fairlead-controller in the control-plane namespace (agent nodes; with
// kubelet nodes it is the chart's Deployment).
func (l *Lab) StartController() error {
	bin, kubeconfig := filepath.Join(l.Bin, "fairlead-controller"), filepath.Join(l.State, "pki", "admin.kubeconfig")
	if l.ControllerReplicas <= 1 {
		return l.daemon(l.CP(), "fairlead-controller", bin, "--kubeconfig", kubeconfig, "--leader-elect=false")
	}
	for i := 1; i <= l.ControllerReplicas; i++ {
		// The replicas share fl-cp's network namespace: each its own metrics and probe ports.
		if err := l.babysatDaemon(l.CP(), ControllerName(i), bin, "--kubeconfig", kubeconfig, "--leader-elect=true",
			"--metrics-bind-address", fmt.Sprintf(":%d", 7472+10*(i-1)),
			"--health-probe-bind-address", fmt.Sprintf(":%d", 7473+10*(i-1))); err != nil {
			return err
		}
	}
	return nil
}

// ControllerName is the daemon name of controller replica i (1-based).
func ControllerName(i int) string {
	if i == 1 {
		return "fairlead-controller"
	}
	return fmt.Sprintf("fairlead-controller-%d", i)
}

// StopController kills fairlead-controller, every replica (agent nodes), as when another
// controller is to hold the addresses meanwhile; StartController brings it back.
func (l *Lab) StopController() error {
	var errs []error
	for i := 1; i <= max(l.ControllerReplicas, 1); i++ {
		errs = append(errs, l.killDaemon(ControllerName(i)))
	}
	return errors.Join(errs...)
}

// KillSpeaker SIGKILLs node n's speaker (agent nodes), as a crash would; StartSpeaker brings
// it back.
func (l *Lab) KillSpeaker(n Node) error { return l.killDaemon("speaker-" + n.Name) }

// KillNode SIGKILLs node n's agent and speaker, as a crash would: its Pods and namespace stay.
// StartAgent and StartSpeaker bring it back.
func (l *Lab) KillNode(n Node) error {
	var errs []error
	for _, d := range []string{"speaker-" + n.Name, "agent-" + n.Name} {
		errs = append(errs, l.killDaemon(d))
	}
	return errors.Join(errs...)
}

// prometheusHint says where the host reaches Prometheus.
func (l *Lab) prometheusHint() string {
	if l.PrometheusPort == 0 {
		return "no relay port (--prometheus-port 0); it listens on " + promAddr + " in " + l.CP()
	}
	return l.PrometheusURL() + " (through the relay)"
}

// flagsHint repeats the flags a second lab instance needs on its fairlead-lab command lines.
func (l *Lab) flagsHint() string {
	var f string
	if l.prefix() != DefaultPrefix || l.State != DefaultState {
		f = fmt.Sprintf(" --prefix %s --state %s", l.prefix(), l.State)
	}
	// lab status asks Prometheus through the relay.
	if l.PrometheusPort != DefaultPrometheusPort {
		f += fmt.Sprintf(" --prometheus-port %d", l.PrometheusPort)
	}
	return f
}
