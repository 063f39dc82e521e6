package scalebench

// BenchmarkScale, run by `make bench`:
//
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 5h ./test/bench/scale/ -args -sizes 500,5000,50000
//
// Each size gets a fresh kube-apiserver + etcd (test/controlplane), so no round lists another
// round's objects. A size is measured in two steps on that apiserver:
//
//  1. The backlog: n Services are created by many parallel creators, then fairlead-controller
//     starts (its own process, defaults as a user runs it) and the clock runs until a watch has
//     seen every Service with an address. Its peak RSS is VmHWM from /proc; the apiserver's
//     write requests while it ran come from the apiserver's own apiserver_request_total.
//  2. The speaker: n/100 Nodes and an EndpointSlice per Service (3 endpoints on 3 Nodes) are
//     added, and fairlead-speaker runs as node-000 in a network namespace of its own (layer 2
//     on one dummy interface, BGP off, reaching the apiserver through a loopback relay). It is
//     measured from start to the first plan that covers every Service, then idle for -idle.
//
// The Services have externalTrafficPolicy Local. On a real cluster every Node runs a speaker
// and each is elected for its share of the addresses; here only node-000's speaker runs (the
// other Nodes' addresses are unroutable in its namespace, so its failure detector finds no
// one), and Local keeps it to the Services with an endpoint on node-000 (3/Nodes of them, 300
// at every size) instead of making it the owner of every address. The plan it computes still
// covers every Service. healthCheckNodePorts for 50,000 Local Services need a node port
// range wider than the default 2,768 ports: the apiserver gets 1024-65535.

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/test/bench/samples"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/netns"
	"github.com/fairlead-lb/fairlead/test/scrape"
)

var (
	sizesFlag      = flag.String("sizes", "500,5000", "Comma-separated Service counts, one round (and one apiserver) each.")
	creatorsFlag   = flag.Int("creators", 64, "Parallel creators of Services, EndpointSlices and Nodes.")
	perNodeFlag    = flag.Int("services-per-node", 100, "Services per Node: n Services come with n/this Nodes (at least 1).")
	idleFlag       = flag.Duration("idle", 60*time.Second, "How long the synced speaker's idle CPU is measured.")
	timeoutFlag    = flag.Duration("round-timeout", 30*time.Minute, "Give up on one step of a round after this long.")
	controllerArgs = flag.String("controller-args", "", "Extra flags for fairlead-controller, space-separated (e.g. --kube-api-qps=1000).")
	profileFlag    = flag.String("profile", "", "Directory to write a CPU profile of the controller at each size to (controller-<n>.pprof, over -profile-seconds from its start).")
	seedFromFlag   = flag.Int("seed-from", 20000, "Sizes from this one up have their backlog written into etcd instead of created through the API (seed_test.go says why); 0: never.")
	seedPaceFlag   = flag.Duration("seed-pace", 100*time.Millisecond, "Pause between two writes of 100 seeded objects.")
	profileSeconds = flag.Int("profile-seconds", 30, "Length of the controller's CPU profile.")
)

const (
	benchNS    = "scale"
	poolName   = "scale"
	poolPrefix = "2001:db8:5ca1::/112" // 65,536 addresses: room for the largest size
	// The Services' ClusterIPs (IPv6, single-stack): a /112 holds the largest size.
	serviceCIDRv6 = "fd00:10:96::/112"
	speakerNode   = "node-000"
	speakerIP     = "192.0.2.10"
	protobuf      = "application/vnd.kubernetes.protobuf"
)

var ctx = context.Background()

func BenchmarkScale(b *testing.B) {
	if b.N > 1 {
		b.Fatal("run with -benchtime 1x: a round creates tens of thousands of objects")
	}
	netns.Require(b)
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; nothing to see
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		b.Fatal(err)
	}
	// The load is taken before the builds below make it rise.
	file := samples.Begin("test/bench/scale BenchmarkScale")
	dir := b.TempDir()
	bins := map[string]string{}
	for _, cmd := range []string{"fairlead-controller", "fairlead-speaker"} {
		bins[cmd] = filepath.Join(dir, cmd)
		build := exec.Command("go", "build", "-o", bins[cmd], "./cmd/"+cmd)
		build.Dir = controlplane.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", cmd, err, out)
		}
	}
	var results []Result
	for _, n := range sizes {
		b.Logf("%d Services", n)
		r, err := runSize(b, bins, n)
		if err != nil {
			b.Fatalf("%d Services: %v", n, err)
		}
		results = append(results, r)
		// Each size's tables as soon as it is done: the largest takes long.
		PrintTables(os.Stdout, results, file.Machine)
	}
	for _, r := range results {
		n := strconv.Itoa(r.Services)
		file.AddDurations([]time.Duration{r.Controller.Wall}, "component", "controller", "services", n, "measure", "all allocated")
		file.Add("CPU s", []float64{r.Controller.CPU}, "component", "controller", "services", n, "measure", "CPU")
		file.Add("MiB", []float64{float64(r.Controller.Peak) / (1 << 20)}, "component", "controller", "services", n, "measure", "peak RSS")
		file.Add("writes/Service", []float64{r.Controller.Writes.Total() / float64(r.Services)}, "component", "controller", "services", n, "measure", "writes")
		file.AddDurations([]time.Duration{r.Speaker.Sync}, "component", "speaker", "services", n, "measure", "start to synced")
		file.Add("CPU s", []float64{r.Speaker.SyncCPU}, "component", "speaker", "services", n, "measure", "CPU to sync")
		file.Add("CPU s/s", []float64{r.Speaker.IdleCPU / r.Speaker.Idle.Seconds()}, "component", "speaker", "services", n, "measure", "idle CPU")
		file.Add("MiB", []float64{float64(r.Speaker.Steady) / (1 << 20)}, "component", "speaker", "services", n, "measure", "steady RSS")
		file.Add("MiB", []float64{float64(r.Speaker.Peak) / (1 << 20)}, "component", "speaker", "services", n, "measure", "peak RSS")
	}
	path, err := file.Write(samples.Dir(controlplane.RepoRoot()), "scale")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %s", path)
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 60000 {
			return nil, fmt.Errorf("bad size %q (1..60000: the pool is a /112)", f)
		}
		out = append(out, n)
	}
	if !slices.IsSorted(out) {
		return nil, errors.New("sizes must grow")
	}
	return out, nil
}

// cluster is one round's control plane.
type cluster struct {
	env        *controlplane.Env
	cs         kubernetes.Interface // protobuf, no client-side limit to speak of
	kubeconfig string
	host       string // the apiserver's host:port
}

func runSize(b *testing.B, bins map[string]string, n int) (Result, error) {
	env, err := controlplane.Start(controlplane.Options{
		ServiceCIDRs: "10.96.0.0/16," + serviceCIDRv6,
		ExtraArgs: map[string]string{
			// Tens of thousands of creations must not be throttled by the apiserver's defaults
			// (the admin user the bench and the components use is exempt from priority and
			// fairness anyway); the watch cache is the default, stated so it stays on.
			"max-requests-inflight": "2000", "max-mutating-requests-inflight": "1000", "watch-cache": "true",
			"service-node-port-range": "1024-65535",
		}})
	if err != nil {
		return Result{}, err
	}
	defer env.Stop()
	cl := &cluster{env: env, kubeconfig: filepath.Join(b.TempDir(), "kubeconfig")}
	// The components authenticate as in a cluster (a ServiceAccount token, RBAC, priority and
	// fairness), not as the admin, whose client certificate the apiserver verifies anew on
	// every request: 6% of its CPU during the drain.
	if err := env.ServiceAccountKubeconfig(ctx, cl.kubeconfig, "fairlead-system", "fairlead", "cluster-admin"); err != nil {
		return Result{}, err
	}
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		return Result{}, err
	}
	cl.host = u.Host
	cfg := *env.Config
	cfg.QPS, cfg.Burst, cfg.ContentType = 10000, 10000, protobuf
	if cl.cs, err = kubernetes.NewForConfig(&cfg); err != nil {
		return Result{}, err
	}
	if err := cl.setup(); err != nil {
		return Result{}, err
	}

	res := Result{Services: n, Nodes: max(1, n / *perNodeFlag), Seeded: seeded(n)}
	start := time.Now()
	if res.Seeded {
		if err := cl.seed(n); err != nil {
			return res, fmt.Errorf("seeding Services into etcd: %w", err)
		}
	} else {
		var made atomic.Int64
		done := make(chan struct{})
		go progress(done, &made, n, start)
		err = parallel(n, func(i int) error {
			_, err := cl.cs.CoreV1().Services(benchNS).Create(ctx, service(i), metav1.CreateOptions{})
			made.Add(1)
			return err
		})
		close(done)
		if err != nil {
			return res, fmt.Errorf("creating Services: %w", err)
		}
	}
	res.Creation = time.Since(start)
	b.Logf("%d Services created in %s (seeded into etcd: %v)", n, res.Creation.Round(time.Millisecond), res.Seeded)

	if res.Controller, err = cl.controller(b, bins["fairlead-controller"], n); err != nil {
		return res, fmt.Errorf("controller: %w", err)
	}
	b.Logf("controller: all allocated in %s", res.Controller.Wall.Round(time.Millisecond))

	start = time.Now()
	if err := cl.nodesAndSlices(n, res.Nodes); err != nil {
		return res, err
	}
	b.Logf("%d Nodes and %d EndpointSlices created in %s", res.Nodes, n, time.Since(start).Round(time.Millisecond))
	if res.Speaker, err = cl.speaker(b, bins["fairlead-speaker"], n); err != nil {
		return res, fmt.Errorf("speaker: %w", err)
	}
	return res, nil
}

// progress tells, on stderr and as it happens (a benchmark's own log waits for its end), how
// far the creation of a large backlog has come.
func progress(done chan struct{}, made *atomic.Int64, n int, start time.Time) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fmt.Fprintf(os.Stderr, "%d of %d Services created after %s\n", made.Load(), n, time.Since(start).Round(time.Second))
		}
	}
}

// setup creates the namespace, the pool and the layer 2 advertisement of the round.
func (cl *cluster) setup() error {
	if _, err := cl.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := cl.env.Client.Create(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: poolName},
		Spec: v1alpha1.IPPoolSpec{Addresses: []string{poolPrefix}}}); err != nil {
		return err
	}
	return cl.env.Client.Create(ctx, &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "scale"},
		Spec: v1alpha1.L2AdvertisementSpec{IPPools: []string{poolName}, Interfaces: []string{"lan"}}})
}

func service(i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name(i)},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:             ptr.To(v1alpha1.LoadBalancerClass),
			IPFamilies:                    []corev1.IPFamily{corev1.IPv6Protocol},
			IPFamilyPolicy:                ptr.To(corev1.IPFamilyPolicySingleStack),
			ExternalTrafficPolicy:         corev1.ServiceExternalTrafficPolicyLocal,
			AllocateLoadBalancerNodePorts: ptr.To(false),
			Selector:                      map[string]string{"app": name(i)},
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// podIP is the i-th address of fd00:10:244::/96, in the canonical form the API insists on
// (3 per Service: more than 16 bits' worth at 50,000).
func podIP(i int) string {
	b := netip.MustParseAddr("fd00:10:244::").As16()
	binary.BigEndian.PutUint32(b[12:], uint32(i))
	return netip.AddrFrom16(b).String()
}

func name(i int) string { return fmt.Sprintf("svc-%05d", i) }

func nodeName(i int) string { return fmt.Sprintf("node-%03d", i) }

// parallel runs fn(0..n-1) on -creators goroutines and returns the first error.
func parallel(n int, fn func(int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range *creatorsFlag {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

// writes reads the apiserver's write counters.
func (cl *cluster) writes() (Writes, error) {
	body, err := cl.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("apiserver /metrics: %w", err)
	}
	s, err := ParseText(string(body))
	if err != nil {
		return nil, err
	}
	return RequestWrites(s), nil
}

// controller runs fairlead-controller on the backlog until a watch has seen every Service with
// an address.
func (cl *cluster) controller(b *testing.B, bin string, n int) (ControllerResult, error) {
	var res ControllerResult
	var got atomic.Int64
	seen := sync.Map{}
	stopInf, err := cl.watchServices(func(s *corev1.Service) {
		if hasAddress(s) {
			if _, dup := seen.LoadOrStore(s.Name, true); !dup {
				got.Add(1)
			}
		}
	})
	if err != nil {
		return res, err
	}
	defer close(stopInf)

	args := []string{"--kubeconfig", cl.kubeconfig, "--default-class=false", "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}
	var pprofAddr string
	if *profileFlag != "" {
		if pprofAddr, err = freePort(); err != nil {
			return res, err
		}
		args = append(args, "--pprof-bind-address", pprofAddr)
	}
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("fairlead-scale-controller-%d.log", n))
	log, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer log.Close()
	cmd := exec.Command(bin, append(args, strings.Fields(*controllerArgs)...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	before, err := cl.writes()
	if err != nil {
		return res, err
	}
	servers0, err := serverCPU()
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer stopProcess(cmd, exited)
	if pprofAddr != "" {
		go profile(b, pprofAddr, n)
		go cl.profileAPIServer(b, n)
	}
	for got.Load() < int64(n) {
		select {
		case <-exited:
			return res, fmt.Errorf("exited after %d of %d (log: %s)", got.Load(), n, logPath)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > *timeoutFlag {
			return res, fmt.Errorf("%d of %d allocated after %s (log: %s)", got.Load(), n, *timeoutFlag, logPath)
		}
	}
	res.Wall = time.Since(start)
	if res.CPU, _, res.Peak, err = processStats(cmd.Process.Pid); err != nil {
		return res, err
	}
	servers1, err := serverCPU()
	if err != nil {
		return res, err
	}
	res.APIServer, res.Etcd = servers1["kube-apiserver"]-servers0["kube-apiserver"], servers1["etcd"]-servers0["etcd"]
	// Events and the pool's usage are written after the Services' status; give them a moment
	// (the pool's status at most once a second) before counting.
	time.Sleep(3 * time.Second)
	after, err := cl.writes()
	if err != nil {
		return res, err
	}
	if res.Writes, err = after.Sub(before); err != nil {
		return res, err
	}
	res.Duplicates, err = cl.duplicates()
	return res, err
}

// watchServices calls fn for every Service added or updated, from an informer that keeps only
// what fn needs (a 50,000-Service cache of whole objects would cost the machine the bench
// measures on).
func (cl *cluster) watchServices(fn func(*corev1.Service)) (chan struct{}, error) {
	f := informers.NewSharedInformerFactoryWithOptions(cl.cs, 0, informers.WithNamespace(benchNS),
		informers.WithTransform(func(o any) (any, error) {
			if s, ok := o.(*corev1.Service); ok {
				return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion},
					Status: s.Status}, nil
			}
			return o, nil
		}))
	inf := f.Core().V1().Services().Informer()
	note := func(o any) {
		if s, ok := o.(*corev1.Service); ok {
			fn(s)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: note, UpdateFunc: func(_, o any) { note(o) }}); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	f.Start(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		close(stop)
		return nil, errors.New("Service watch did not sync")
	}
	return stop, nil
}

func hasAddress(s *corev1.Service) bool {
	return slices.ContainsFunc(s.Status.LoadBalancer.Ingress, func(in corev1.LoadBalancerIngress) bool { return in.IP != "" })
}

// duplicates counts addresses held by more than one Service.
func (cl *cluster) duplicates() (int, error) {
	list, err := cl.cs.CoreV1().Services(benchNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	held := map[netip.Addr]int{}
	for _, s := range list.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				held[a]++
			}
		}
	}
	dups := 0
	for _, k := range held {
		dups += k - 1
	}
	return dups, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// profile saves a CPU profile of the controller's first seconds.
func profile(b *testing.B, addr string, n int) {
	var resp *http.Response
	var err error
	for range 100 { // the endpoint opens once the manager starts
		resp, err = http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, *profileSeconds))
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		b.Logf("controller profile: %v", err)
		return
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(*profileFlag, 0o755); err != nil {
		b.Logf("controller profile: %v", err)
		return
	}
	path := filepath.Join(*profileFlag, fmt.Sprintf("controller-%d.pprof", n))
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		_ = f.Close()
	}
	b.Logf("controller profile %s: %v", path, err)
}

// profileAPIServer saves a CPU profile of the apiserver over the controller's first seconds:
// on 2 cores shared with it, the apiserver is what bounds the controller once its client
// limit is raised.
func (cl *cluster) profileAPIServer(b *testing.B, n int) {
	raw, err := cl.cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
		Param("seconds", strconv.Itoa(*profileSeconds)).Timeout(time.Duration(*profileSeconds+30) * time.Second).DoRaw(ctx)
	path := filepath.Join(*profileFlag, fmt.Sprintf("apiserver-%d.pprof", n))
	if err == nil {
		if err = os.MkdirAll(*profileFlag, 0o755); err == nil {
			err = os.WriteFile(path, raw, 0o644)
		}
	}
	b.Logf("apiserver profile %s: %v", path, err)
}

// nodesAndSlices creates the Nodes (Ready, each with an InternalIP) and an EndpointSlice per
// Service with three ready endpoints on three consecutive Nodes, so that node-000 has local
// endpoints for 3/nodes of the Services.
func (cl *cluster) nodesAndSlices(n, nodes int) error {
	if nodes > 1+2*254 {
		return fmt.Errorf("%d Nodes: only %d addresses for them in 198.51.100.0/24 and 203.0.113.0/24", nodes, 2*254)
	}
	err := parallel(nodes, func(i int) error {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i), Labels: map[string]string{"kubernetes.io/hostname": nodeName(i)}}}
		created, err := cl.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIP(i)}},
		}
		_, err = cl.cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("creating Nodes: %w", err)
	}
	err = parallel(n, func(i int) error {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name(i) + "-1",
				Labels: map[string]string{discoveryv1.LabelServiceName: name(i), discoveryv1.LabelManagedBy: "scale-bench"}},
			AddressType: discoveryv1.AddressTypeIPv6,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for j := range 3 {
			k := 3*i + j
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{podIP(k + 1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				NodeName:   ptr.To(nodeName(k % nodes)),
			})
		}
		_, err := cl.cs.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, s, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("creating EndpointSlices: %w", err)
	}
	return nil
}

// nodeIP is node i's InternalIP: node-000 is the speaker's, on its interface; the others are
// documentation addresses with no route in the speaker's namespace, so its failure detector's
// joins fail at once instead of waiting for a timeout.
func nodeIP(i int) string {
	switch {
	case i == 0:
		return speakerIP
	case i <= 254:
		return fmt.Sprintf("198.51.100.%d", i)
	default:
		return fmt.Sprintf("203.0.113.%d", i-254)
	}
}

// speaker runs fairlead-speaker as node-000 and measures it.
func (cl *cluster) speaker(b *testing.B, bin string, n int) (SpeakerResult, error) {
	var res SpeakerResult
	// One interface, a veth whose other end is alone in a namespace of its own: what the
	// speaker announces on it reaches nothing else.
	ns, peer := netns.New(b, "scale-spk"), netns.New(b, "scale-lan")
	netns.Veth(b, ns, "lan", peer, "lan")
	ns.Addr("lan", speakerIP+"/24")
	ns.Forward(cl.host, cl.host)
	const metricsAddr = "127.0.0.1:7474"

	before, err := cl.writes()
	if err != nil {
		return res, err
	}
	start := time.Now()
	proc := ns.Start(bin, "--kubeconfig", cl.kubeconfig, "--node-name", speakerNode, "--l2", "--bgp=false",
		"--default-class=false", "--metrics-bind-address", metricsAddr, "--metrics-secure=false", "--health-probe-bind-address", "0")
	defer stopProc(proc)
	pid := proc.Cmd.Process.Pid

	// Synced: the plan (fairlead_l2_addresses, elected + unowned) covers every Service.
	for {
		if done, err := proc.Exited(); done {
			return res, fmt.Errorf("exited: %v\n%s", err, tailOf(proc.Output(), 40))
		}
		if m, err := metricsIn(ns, metricsAddr); err == nil {
			e, _ := Find(m, "fairlead_l2_addresses", "state", "elected")
			u, _ := Find(m, "fairlead_l2_addresses", "state", "unowned")
			if int(e+u) >= n {
				res.Sync = time.Since(start)
				if res.SyncCPU, _, _, err = processStats(pid); err != nil {
					return res, err
				}
				o, _ := Find(m, "fairlead_l2_owned_addresses")
				res.Owned = int(o)
				break
			}
		}
		if time.Since(start) > *timeoutFlag {
			return res, fmt.Errorf("no plan covering %d Services after %s\n%s", n, *timeoutFlag, tailOf(proc.Output(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("speaker: synced in %s, %.2f CPU s, %d addresses owned", res.Sync.Round(time.Millisecond), res.SyncCPU, res.Owned)

	// Reported: a ServiceAnnouncement for every owned address (the speaker's own writes, at
	// its default client rate); idle is measured after them.
	for {
		var sas v1alpha1.ServiceAnnouncementList
		if err := cl.env.Client.List(ctx, &sas, client.InNamespace(benchNS)); err != nil {
			return res, err
		}
		if len(sas.Items) >= res.Owned {
			res.Reported = time.Since(start)
			break
		}
		if time.Since(start) > *timeoutFlag {
			return res, fmt.Errorf("%d of %d ServiceAnnouncements after %s", len(sas.Items), res.Owned, *timeoutFlag)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // the Events that go with the reports
	cpu0, _, _, err := processStats(pid)
	if err != nil {
		return res, err
	}
	idle := time.Now()
	time.Sleep(*idleFlag)
	cpu1, rss, peak, err := processStats(pid)
	if err != nil {
		return res, err
	}
	res.Idle, res.IdleCPU, res.Steady, res.Peak = time.Since(idle), cpu1-cpu0, rss, peak
	after, err := cl.writes()
	if err != nil {
		return res, err
	}
	res.Writes, err = after.Sub(before)
	return res, err
}

// processStats reads a live process's CPU seconds (user+system), RSS and peak RSS in bytes.
func processStats(pid int) (cpu float64, rss, peak int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	kb := func(v string) int64 {
		k, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return k * 1024
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			peak = kb(v)
		}
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = kb(v)
		}
	}
	return (utime + stime) / ticks, rss, peak, nil
}

// serverCPU returns the CPU seconds of this process' children kube-apiserver and etcd (one
// apiserver and one etcd run at a time).
func serverCPU() (map[string]float64, error) {
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	cpu := map[string]float64{}
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm, f := s[open+1:end], strings.Fields(s[end+2:])
		if (comm != "kube-apiserver" && comm != "etcd") || len(f) < 13 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		c, _, _, err := processStats(pid)
		if err != nil {
			return nil, err
		}
		cpu[comm] += c
	}
	if len(cpu) != 2 {
		return nil, fmt.Errorf("found the CPU of %v, want kube-apiserver and etcd", cpu)
	}
	return cpu, nil
}

func stopProcess(cmd *exec.Cmd, exited chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func stopProc(p *netns.Proc) {
	p.Signal(os.Interrupt)
	if ok, _ := p.Wait(20 * time.Second); !ok {
		p.Kill()
	}
}

func tailOf(s string, lines int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// metricsIn reads the plain-HTTP metrics endpoint addr inside ns.
func metricsIn(ns *netns.NS, addr string) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, body, err := scrape.GetPlain(ctx, scrape.InNetNS(ns), addr, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET http://%s/metrics: %d %s", addr, code, body)
	}
	return ParseText(string(body))
}
