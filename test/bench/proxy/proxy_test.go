// Package proxybench compares Fairlead's service proxy with kube-proxy v1.37.2 in nftables
// mode on the same apiserver, the same Services and the same kernel:
//
//	go test -run '^$' -bench VsKubeProxy -benchtime 1x ./test/bench/proxy/ -args -sizes 10,1000,10000,30000
//
// For each size the Services are grown to that count, then each proxy in turn starts from an
// empty ruleset in a node namespace of its own and is measured: its first full sync, partial
// syncs after one endpoint change, the ruleset it leaves, its peak memory, and new
// connections per second from a client through a ClusterIP to a real pod. Sync times are each
// proxy's own duration metrics (sum over count), so both are measured the same way, from
// the start of rule computation to the end of the nft transaction.
package proxybench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/test/bench/samples"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

var (
	sizesFlag    = flag.String("sizes", "10,1000,10000", "Comma-separated Service counts to measure at.")
	implsFlag    = flag.String("impls", "fairlead,kube-proxy", "Proxies to measure.")
	partialsFlag = flag.Int("partials", 5, "One-endpoint changes measured per proxy and size.")
	loadFlag     = flag.Duration("load", 2*time.Second, "Duration of each data-path round.")
	roundsFlag   = flag.Int("rounds", 20, "Data-path rounds on each side.")
	abSmallFlag  = flag.Int("datapath-small", 10, "Services on the small side of the data-path comparison; 0 skips it.")
	abLargeFlag  = flag.Int("datapath-large", 10000, "Services on the large side of the data-path comparison: measured when -sizes reaches it.")
	workersFlag  = flag.Int("workers", 4, "Concurrent connections of the data-path load.")
	dumpFlag     = flag.String("dump", "", "Directory to write each proxy's ruleset to, for reading.")
)

const (
	benchNS     = "bench"
	nodeName    = "bench-node"
	nodeLAN     = "192.0.2.1"
	clientLAN   = "192.0.2.100"
	podIP       = "10.200.0.10"
	podGW       = "10.200.0.1"
	clusterCIDR = "10.128.0.0/9"
	serviceCIDR = "10.96.0.0/16"
	echoPort    = 8080
	endpoints   = 5
)

var ctx = context.Background()

// result is one proxy's measurements at one size.
type result struct {
	impl     string
	services int
	full     time.Duration // the first full sync, by the proxy's metric
	ready    time.Duration // process start until that sync ended (includes listing from the apiserver)
	partials []time.Duration
	lines    int
	bytes    int
	rss      int64 // peak, bytes
}

// proxyImpl knows how to run and read one proxy.
type proxyImpl struct {
	name    string
	args    func(kubeconfig string) []string
	bin     string
	metrics string // host:port inside the node namespace
	// Names of the duration histograms and the label selecting the kind/family.
	fullMetric, partialMetric string
	labels                    []string
}

func BenchmarkVsKubeProxy(b *testing.B) {
	if b.N > 1 {
		b.Fatal("run with -benchtime 1x: every round rebuilds thousands of Services")
	}
	netns.Require(b)
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; nothing to see
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		b.Fatal(err)
	}
	// Every sync time goes to proxy-sync.json for the plots; the load is taken before the
	// builds below make it rise.
	file := samples.Begin("test/bench/proxy BenchmarkVsKubeProxy")
	speakerBin := kit.Binary(b, "./cmd/fairlead-speaker", kit.BuildOptions{})
	echoBin := kit.Binary(b, "./test/echo", kit.BuildOptions{})
	k8sBin, err := controlplane.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	kubeProxyBin := filepath.Join(k8sBin, "kube-proxy")
	if _, err := os.Stat(kubeProxyBin); err != nil {
		b.Fatalf("kube-proxy is not built (make bench builds it with the control plane): %v", err)
	}

	cp := startCluster(b)
	client, kubeconfig, targetAddr := cp.client, cp.kubeconfig, cp.target

	impls := map[string]*proxyImpl{
		"fairlead": {
			name: "fairlead", bin: speakerBin, metrics: "127.0.0.1:7474",
			args: func(kc string) []string {
				return []string{"--proxy", "--l2=false", "--node-name", nodeName, "--kubeconfig", kc,
					// Plain HTTP, as kube-proxy's beside it: the bench reads sync times, not tokens.
					"--metrics-bind-address", "127.0.0.1:7474", "--metrics-secure=false", "--healthz-bind-address", "127.0.0.1:10256",
					"--cluster-cidr", clusterCIDR}
			},
			fullMetric: "fairlead_proxy_sync_duration_seconds", partialMetric: "fairlead_proxy_sync_duration_seconds",
		},
		"kube-proxy": {
			name: "kube-proxy", bin: kubeProxyBin, metrics: "127.0.0.1:10249",
			args: func(kc string) []string {
				// The conntrack flags at 0 leave the kernel's (partly global) settings alone.
				return []string{"--proxy-mode=nftables", "--kubeconfig", kc, "--hostname-override", nodeName,
					"--cluster-cidr", clusterCIDR, "--metrics-bind-address", "127.0.0.1:10249",
					"--healthz-bind-address", "127.0.0.1:10256", "--conntrack-max-per-core=0",
					"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0", "--oom-score-adj=0"}
			},
			fullMetric: "kubeproxy_sync_full_proxy_rules_duration_seconds", partialMetric: "kubeproxy_sync_partial_proxy_rules_duration_seconds",
			labels: []string{`ip_family="IPv4"`},
		},
	}
	var order []*proxyImpl
	for _, name := range strings.Split(*implsFlag, ",") {
		impl, ok := impls[name]
		if !ok {
			b.Fatalf("unknown proxy %q", name)
		}
		order = append(order, impl)
	}

	// One world per proxy, so their rulesets never mix: node, a pod behind it, a client on its LAN.
	worlds := map[string]*world{}
	for _, impl := range order {
		worlds[impl.name] = newWorld(b, impl.name, cp.host, echoBin)
	}

	var results []result
	var ab []abResult
	created := 0
	for _, size := range sizes {
		start := time.Now()
		if err := grow(client, created, size); err != nil {
			b.Fatal(err)
		}
		b.Logf("%d Services × %d endpoints ready in %s", size, endpoints, time.Since(start).Round(time.Millisecond))
		created = size
		for _, impl := range order {
			r, err := measure(b, client, worlds[impl.name], impl, kubeconfig, targetAddr, size)
			if err != nil {
				b.Fatalf("%s at %d Services: %v", impl.name, size, err)
			}
			b.Logf("%s at %d: full %s, partial %v, %d lines", impl.name, size, r.full, r.partials, r.lines)
			results = append(results, r)
		}
		if size == *abLargeFlag && *abSmallFlag > 0 {
			ab = dataPathAB(b, order, worlds, kubeconfig, targetAddr, echoBin, *abSmallFlag, size)
		}
	}
	printTable(os.Stdout, results, ab)
	for _, r := range results {
		n := strconv.Itoa(r.services)
		file.AddDurations([]time.Duration{r.full}, "proxy", proxyName(r.impl), "services", n, "sync", "full")
		file.AddDurations(r.partials, "proxy", proxyName(r.impl), "services", n, "sync", "partial")
	}
	path, err := file.Write(samples.Dir(controlplane.RepoRoot()), "proxy-sync")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %s", path)
}

// proxyName is how the README's tables and plots name a proxy.
func proxyName(impl string) string {
	if impl == "fairlead" {
		return "Fairlead"
	}
	return impl
}

// cluster is a control plane with the bench's namespace, Node and target Service.
type cluster struct {
	client     kubernetes.Interface
	kubeconfig string
	host       string // the apiserver's host:port
	target     string // the target Service's ClusterIP:port
}

func startCluster(b *testing.B) cluster {
	env, err := controlplane.Start(controlplane.Options{ServiceCIDRs: serviceCIDR,
		// Tens of thousands of creations: don't let the apiserver's defaults throttle the setup.
		ExtraArgs: map[string]string{"max-requests-inflight": "2000", "max-mutating-requests-inflight": "1000"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })
	cl := cluster{kubeconfig: filepath.Join(b.TempDir(), "kubeconfig")}
	if err := env.Kubeconfig(cl.kubeconfig); err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		b.Fatal(err)
	}
	cl.host = u.Host
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 5000, 5000
	if cl.client, err = kubernetes.NewForConfig(&cfg); err != nil {
		b.Fatal(err)
	}
	if err := setupObjects(cl.client); err != nil {
		b.Fatal(err)
	}
	svc, err := cl.client.CoreV1().Services(benchNS).Get(ctx, "target", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cl.target = net.JoinHostPort(svc.Spec.ClusterIP, "80")
	return cl
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 60000 {
			return nil, fmt.Errorf("bad size %q (1..60000)", f)
		}
		out = append(out, n)
	}
	if !slices.IsSorted(out) {
		return nil, errors.New("sizes must grow")
	}
	return out, nil
}

// world is the namespaces one proxy runs in.
type world struct {
	node, pod, client *netns.NS
}

func newWorld(b *testing.B, role, apiAddr, echoBin string) *world {
	w := &world{node: netns.New(b, role), pod: netns.New(b, role+"-pod"), client: netns.New(b, role+"-cli")}
	netns.Veth(b, w.node, "lan", w.client, "lan")
	w.node.Addr("lan", nodeLAN+"/24")
	w.client.Addr("lan", clientLAN+"/24")
	w.client.MustRun("ip", "route", "add", serviceCIDR, "via", nodeLAN)
	netns.Veth(b, w.node, "pod", w.pod, "eth0")
	w.pod.Addr("eth0", podIP+"/32")
	w.pod.MustRun("ip", "route", "add", podGW, "dev", "eth0")
	w.pod.MustRun("ip", "route", "add", "default", "via", podGW)
	w.node.Addr("pod", podGW+"/32")
	w.node.MustRun("ip", "route", "add", podIP+"/32", "dev", "pod")
	w.node.Sysctl("net.ipv4.ip_forward", "1")
	// The load makes tens of thousands of short connections: give the client every port and
	// let it reuse those its peer is done with.
	w.client.Sysctl("net.ipv4.ip_local_port_range", "1024 65535")
	w.client.Sysctl("net.ipv4.tcp_tw_reuse", "1")
	w.pod.Sysctl("net.ipv4.tcp_max_syn_backlog", "4096")
	w.pod.Sysctl("net.core.somaxconn", "4096")
	w.node.Forward(apiAddr, apiAddr)
	w.pod.Start(echoBin, "-name", "pod", "-tcp", strconv.Itoa(echoPort))
	return w
}

// setupObjects creates the namespace, the Node both proxies claim to be, and the data-path
// Service "target" whose one endpoint is the real pod.
func setupObjects(c kubernetes.Interface) error {
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeLAN}}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := createService(c, "target"); err != nil {
		return err
	}
	return createSlice(c, "target", []string{podIP})
}

func createService(c kubernetes.Interface, name string) error {
	_, err := c.CoreV1().Services(benchNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNS},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func slice(name string, addrs []string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNS,
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](echoPort)}},
	}
	for i, a := range addrs {
		// As in a ten-node cluster: one endpoint in ten runs on this node.
		node := "other-node"
		if name == "target" || (int(crc32.ChecksumIEEE([]byte(name)))+i)%10 == 0 {
			node = nodeName
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, NodeName: ptr.To(node)})
	}
	return s
}

func createSlice(c kubernetes.Interface, name string, addrs []string) error {
	_, err := c.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, slice(name, addrs), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// endpointAddrs are the (fake) pod addresses of bulk Service i, variant v of its last one.
func endpointAddrs(i, v int) []string {
	// Each Service owns endpoints+1 consecutive addresses from 10.128.0.0: its last endpoint
	// alternates between the last two.
	const base = uint32(10)<<24 | uint32(128)<<16
	var out []string
	for k := range endpoints {
		n := base + uint32(i*(endpoints+1)+k)
		if k == endpoints-1 {
			n += uint32(v % 2)
		}
		out = append(out, netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String())
	}
	return out
}

func bulkName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// grow creates bulk Services from..to-1 with their EndpointSlices, in parallel.
func grow(c kubernetes.Interface, from, to int) error {
	next := atomic.Int64{}
	next.Store(int64(from))
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				err := createService(c, bulkName(i))
				if err == nil {
					err = createSlice(c, bulkName(i), endpointAddrs(i, 0))
				}
				if err != nil {
					errc <- fmt.Errorf("creating %s: %w", bulkName(i), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// startProxy runs impl in w from an empty ruleset and waits for its first full sync; it
// returns the process, the sync's duration by the proxy's metric, and the time from start.
func startProxy(w *world, impl *proxyImpl, kubeconfig, target string) (proc *netns.Proc, full, ready time.Duration, err error) {
	if _, err := w.node.Run("nft", "flush", "ruleset"); err != nil {
		return nil, 0, 0, err
	}
	start := time.Now()
	proc = w.node.Start(impl.bin, impl.args(kubeconfig)...)
	defer func() {
		if err != nil {
			stopProxy(proc)
		}
	}()
	deadline := time.Now().Add(15 * time.Minute)
	for {
		if done, err := proc.Exited(); done {
			return nil, 0, 0, fmt.Errorf("exited: %v\n%s", err, tailOf(proc.Output(), 60))
		}
		sum, count, err := impl.read(w, impl.fullMetric, impl.fullLabels())
		if err == nil && count >= 1 {
			ready = time.Since(start)
			full = time.Duration(sum / count * float64(time.Second))
			break
		}
		if time.Now().After(deadline) {
			return nil, 0, 0, fmt.Errorf("no full sync after 15 minutes (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := waitServing(w.client, target); err != nil {
		return nil, 0, 0, fmt.Errorf("the target Service never answered: %w", err)
	}
	return proc, full, ready, nil
}

func stopProxy(proc *netns.Proc) {
	proc.Signal(os.Interrupt)
	if ok, _ := proc.Wait(20 * time.Second); !ok {
		proc.Kill()
	}
}

func (impl *proxyImpl) fullLabels() []string {
	if impl.name == "kube-proxy" {
		return impl.labels
	}
	return append([]string{`kind="full"`}, impl.labels...)
}

func (impl *proxyImpl) partialLabels() []string {
	if impl.name == "kube-proxy" {
		return impl.labels
	}
	return append([]string{`kind="partial"`}, impl.labels...)
}

// read returns a histogram's sum and count from the proxy's metrics.
func (impl *proxyImpl) read(w *world, metric string, labels []string) (sum, count float64, err error) {
	m, err := metricsIn(w.node, impl.metrics)
	if err != nil {
		return 0, 0, err
	}
	return m.get(metric+"_sum", labels...), m.get(metric+"_count", labels...), nil
}

// measure runs one proxy from an empty ruleset and takes its sync measurements.
func measure(b *testing.B, c kubernetes.Interface, w *world, impl *proxyImpl, kubeconfig, target string, size int) (result, error) {
	r := result{impl: impl.name, services: size}
	proc, full, ready, err := startProxy(w, impl, kubeconfig, target)
	if err != nil {
		return r, err
	}
	defer stopProxy(proc)
	r.full, r.ready = full, ready
	fullLabels, partial := impl.fullLabels(), impl.partialLabels()

	// Partial syncs: one endpoint of one random Service changes.
	for range *partialsFlag {
		ps, pc, err := impl.read(w, impl.partialMetric, partial)
		if err != nil {
			return r, err
		}
		_, fc, err := impl.read(w, impl.fullMetric, fullLabels)
		if err != nil {
			return r, err
		}
		svc := rand.IntN(max(size, 1))
		if err := toggleEndpoint(c, svc); err != nil {
			return r, err
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			s, n, err := impl.read(w, impl.partialMetric, partial)
			_, f, err2 := impl.read(w, impl.fullMetric, fullLabels)
			if err == nil && err2 == nil && n > pc {
				r.partials = append(r.partials, time.Duration((s-ps)/(n-pc)*float64(time.Second)))
				break
			}
			if err == nil && err2 == nil && f > fc {
				b.Logf("%s: a full sync came instead of a partial one; not counted", impl.name)
				break
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("the endpoint change was never synced:\n%s", tailOf(proc.Output(), 40))
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Past both proxies' minimum sync interval, so the next change is a sync of its own.
		time.Sleep(1100 * time.Millisecond)
	}

	out, err := w.node.Run("nft", "list", "ruleset")
	if err != nil {
		return r, err
	}
	r.lines, r.bytes = strings.Count(out, "\n"), len(out)
	if *dumpFlag != "" {
		_ = os.WriteFile(filepath.Join(*dumpFlag, fmt.Sprintf("%s-%d.nft", impl.name, size)), []byte(out), 0o644)
	}
	r.rss = peakRSS(proc.Cmd.Process.Pid)
	return r, nil
}

// toggleEndpoint moves the last endpoint of bulk Service i to its other address.
func toggleEndpoint(c kubernetes.Interface, i int) error {
	name := bulkName(i)
	cur, err := c.DiscoveryV1().EndpointSlices(benchNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	addrs := endpointAddrs(i, 1)
	if last := cur.Endpoints[len(cur.Endpoints)-1].Addresses[0]; last == addrs[len(addrs)-1] {
		addrs = endpointAddrs(i, 0)
	}
	s := slice(name, addrs)
	s.ResourceVersion = cur.ResourceVersion
	_, err = c.DiscoveryV1().EndpointSlices(benchNS).Update(ctx, s, metav1.UpdateOptions{})
	return err
}

func waitServing(ns *netns.NS, addr string) error {
	var err error
	for range 300 {
		if err = request(ns, addr); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// request makes one connection through the Service and reads the pod's answer.
func request(ns *netns.NS, addr string) error {
	return ns.Do(func() error { return dialOnce(addr) })
}

func dialOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	// Close with a reset: the pod closed first and would otherwise keep every connection in
	// TIME_WAIT for a minute; at thousands a second the client's ports come round again
	// while those are still there, and each such SYN stalls a worker for a 1 s retransmit,
	// which made the rate a measure of port reuse rather than of the proxy.
	defer func() {
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "pod ") {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}

// freeze stops the given processes and every control plane's (kube-apiserver and etcd from
// the binary directory) until the returned function continues them.
func freeze(pids ...int) (func(), error) {
	dir, err := controlplane.BinDir()
	if err != nil {
		return nil, err
	}
	want := len(pids)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil &&
			(exe == filepath.Join(dir, "kube-apiserver") || exe == filepath.Join(dir, "etcd")) {
			pids = append(pids, n)
		}
	}
	if len(pids) < want+2 {
		return nil, fmt.Errorf("found processes %v, want the proxies, kube-apiserver and etcd", pids)
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGSTOP)
	}
	return func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	}, nil
}

// round counts new connections (connect, answer, close) through the Service at addr for one
// load period, from w's client; each connection's first packet goes through the proxy's NAT
// lookup.
func round(w *world, addr string) float64 {
	// Every round starts from an empty connection tracking table. Closed connections stay in
	// it for 10 s, holding the masquerade's source ports towards the pod; the more there are,
	// the longer finding a free one takes, so later rounds would be slower than earlier ones
	// for reasons unrelated to the rules.
	if out, err := w.node.Run("conntrack", "-F"); err != nil && !strings.Contains(out, "emptied") {
		fmt.Fprintf(os.Stderr, "data path: flushing conntrack: %v\n", err)
	}
	time.Sleep(200 * time.Millisecond)
	var ok, failed atomic.Int64
	stop := time.Now().Add(*loadFlag)
	var wg sync.WaitGroup
	for range *workersFlag {
		wg.Go(func() {
			_ = w.client.Do(func() error {
				for time.Now().Before(stop) {
					if dialOnce(addr) == nil {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "data path: %d failed connections in a round\n", f)
	}
	return float64(ok.Load()) / loadFlag.Seconds()
}

// abResult is one proxy's data path with few and with many Services, measured in alternation.
type abResult struct {
	impl         string
	small, large int
	// Per round, in the order taken; round i of both belong together.
	smallRates, largeRates []float64
}

// dataPathAB compares the data path of each proxy with `small` Services against `large`: a
// second control plane holds the small set, and each proxy runs twice at once, in its world
// of the big control plane and in a second world fed by the small one. With the proxies and
// both control planes stopped (SIGSTOP: nothing but the kernel's rules and the load run),
// rounds alternate between the two worlds, so that whatever drifts on the machine during the
// measurement affects both sides alike.
func dataPathAB(b *testing.B, order []*proxyImpl, worlds map[string]*world, kubeconfig, target, echoBin string, small, large int) []abResult {
	cp := startCluster(b)
	if err := grow(cp.client, 0, small); err != nil {
		b.Fatal(err)
	}
	smallKubeconfig, smallTarget, u := cp.kubeconfig, cp.target, cp.host

	var out []abResult
	for _, impl := range order {
		ws, wl := newWorld(b, impl.name+"-small", u, echoBin), worlds[impl.name]
		ps, _, _, err := startProxy(ws, impl, smallKubeconfig, smallTarget)
		if err != nil {
			b.Fatalf("%s with %d Services: %v", impl.name, small, err)
		}
		pl, _, _, err := startProxy(wl, impl, kubeconfig, target)
		if err != nil {
			stopProxy(ps)
			b.Fatalf("%s with %d Services: %v", impl.name, large, err)
		}
		r := abResult{impl: impl.name, small: small, large: large}
		func() {
			thaw, err := freeze(ps.Cmd.Process.Pid, pl.Cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			defer thaw()
			for i := range *roundsFlag {
				// small, large, large, small, small, large, ...: each side goes first as often.
				if i%2 == 0 {
					r.smallRates = append(r.smallRates, round(ws, smallTarget))
					r.largeRates = append(r.largeRates, round(wl, target))
				} else {
					r.largeRates = append(r.largeRates, round(wl, target))
					r.smallRates = append(r.smallRates, round(ws, smallTarget))
				}
			}
		}()
		stopProxy(ps)
		stopProxy(pl)
		b.Logf("%s data path: %d Services %v conn/s, %d Services %v conn/s", impl.name, small, r.smallRates, large, r.largeRates)
		out = append(out, r)
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// metrics are Prometheus text samples: "name{labels}" → value.
type metrics map[string]float64

// get sums the samples of a metric whose labels contain all the given pairs.
func (m metrics) get(name string, labels ...string) float64 {
	var sum float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(k, l)
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// metricsIn reads the plain-HTTP metrics endpoint addr inside ns.
func metricsIn(ns *netns.NS, addr string) (metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, body, err := scrape.GetPlain(ctx, scrape.InNetNS(ns), addr, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET http://%s/metrics: %d %s", addr, code, body)
	}
	m := metrics{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, nil
}

func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func printTable(w io.Writer, rs []result, ab []abResult) {
	fmt.Fprintf(w, "\nService proxy benchmark, %s, %d CPUs, %s; ClusterIP Services × %d endpoints\n\n",
		time.Now().Format("2006-01-02"), runtime.NumCPU(), runtime.GOARCH, endpoints)
	fmt.Fprintln(w, "| proxy | Services | full sync | start → synced | partial sync mean | max | ruleset lines | peak RSS |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	byKey := map[string]result{}
	for _, r := range rs {
		byKey[fmt.Sprintf("%s/%d", r.impl, r.services)] = r
		mean, mx := stats(r.partials)
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %d | %d MiB |\n", r.impl, r.services, dur(r.full), dur(r.ready),
			dur(mean), dur(mx), r.lines, r.rss>>20)
	}
	fmt.Fprintln(w, "\n| Services | full sync kube-proxy/fairlead | partial sync kube-proxy/fairlead | ruleset lines kube-proxy/fairlead |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|")
	for _, r := range rs {
		k, ok := byKey[fmt.Sprintf("kube-proxy/%d", r.services)]
		if r.impl != "fairlead" || !ok {
			continue
		}
		fm, _ := stats(r.partials)
		km, _ := stats(k.partials)
		fmt.Fprintf(w, "| %d | %.1f× | %.1f× | %.1f× |\n", r.services, ratio(k.full, r.full), ratio(km, fm),
			float64(k.lines)/float64(max(r.lines, 1)))
	}
	if len(ab) == 0 {
		return
	}
	// The data path: the per-packet cost should not grow with the Service count. The paired
	// change is the median over rounds of (large/small - 1), each pair taken back to back.
	fmt.Fprintln(w, "\n| proxy | new conn/s, few Services (min–max) | many Services (min–max) | change of medians | median paired change |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, r := range ab {
		var paired []float64
		for i := range r.smallRates {
			paired = append(paired, r.largeRates[i]/max(r.smallRates[i], 1)-1)
		}
		ms, ml := median(r.smallRates), median(r.largeRates)
		fmt.Fprintf(w, "| %s | %d: %.0f (%.0f–%.0f) | %d: %.0f (%.0f–%.0f) | %+.1f%% | %+.1f%% |\n", r.impl,
			r.small, ms, slices.Min(r.smallRates), slices.Max(r.smallRates),
			r.large, ml, slices.Min(r.largeRates), slices.Max(r.largeRates),
			100*(ml/max(ms, 1)-1), 100*median(paired))
	}
}

func stats(d []time.Duration) (mean, mx time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
		mx = max(mx, x)
	}
	return sum / time.Duration(len(d)), mx
}

func ratio(a, b time.Duration) float64 { return a.Seconds() / max(b.Seconds(), 1e-6) }

func dur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
}
