// Command fairlead-speaker runs on every node (a DaemonSet): it announces the external addresses
// the controller allocated (layer 2 or BGP) and, with --proxy, programs the node's service proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/speaker/announcements"
	"github.com/fairlead-lb/fairlead/speaker/members"
	"github.com/fairlead-lb/fairlead/speaker/serving"
	"github.com/fairlead-lb/fairlead/speaker/snapshot"
)

// speaker is what every component gets: the API connection, a shared informer factory (so a
// Service is watched once however many components read it), the node's name and the metrics
// registry. Components register their informers in setup and only read them in run.
type speaker struct {
	config   *rest.Config
	client   kubernetes.Interface
	dynamic  dynamic.Interface
	informer informers.SharedInformerFactory
	node     string
	metrics  *prometheus.Registry
	// members is the failure detector, set up by the first component that elects owners.
	members *members.Shared
	// snaps is the one view of the cluster the announcing components share, set up by the
	// first that needs it.
	snaps        *snapshot.Source
	defaultClass bool
	// writer is the one ServiceAnnouncement writer (layer 2 and BGP), made on first use.
	writer *announcements.Writer
}

func (s *speaker) announcements() (*announcements.Writer, error) {
	if s.writer == nil {
		w, err := announcements.New(s.config)
		if err != nil {
			return nil, err
		}
		s.writer = w
	}
	return s.writer, nil
}

// snapshots returns the speaker's snapshot source, creating it on first use (in setup, before
// the informers start).
func (s *speaker) snapshots() (*snapshot.Source, error) {
	if s.snaps == nil {
		src, err := snapshot.NewSource(snapshot.SourceOptions{Informers: s.informer, Dynamic: s.dynamic, DefaultClass: s.defaultClass})
		if err != nil {
			return nil, err
		}
		s.snaps = src
	}
	return s.snaps, nil
}

// component is one job of the speaker. setup wires it (and fails fast on bad flags); the
// returned function runs until ctx ends.
type component struct {
	name  string
	on    *bool
	setup func(*speaker) (func(context.Context) error, error)
}

var components = []component{
	{"proxy", flag.Bool("proxy", false, "Run the nftables service proxy (replaces kube-proxy on this node)."), setupProxy},
	{"l2", flag.Bool("l2", true, "Announce external addresses on the local network by ARP and NDP."), setupL2},
	{"bgp", flag.Bool("bgp", false, "Announce external addresses to routers over BGP (BGPPeer and BGPAdvertisement objects)."), setupBGP},
	{"eip", flag.Bool("aws-eip", false, "Associate the AWS Elastic IPs this node is elected for with its network interface."), setupEIP},
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "Path to a kubeconfig (default: in-cluster).")
	node := flag.String("node-name", os.Getenv("NODE_NAME"), "This node's name (default $NODE_NAME).")
	var ep endpoints
	flag.StringVar(&ep.metricsAddr, "metrics-bind-address", ":7474", "Address of the Prometheus metrics endpoint ('0' disables it).")
	flag.BoolVar(&ep.metrics.Secure, "metrics-secure", true, "Serve metrics over HTTPS to clients whose bearer token the apiserver authenticates and authorizes for GET /metrics (false: plain HTTP to anyone).")
	flag.StringVar(&ep.metrics.CertDir, "metrics-cert-dir", "", "Directory of the metrics server's certificate and key (default: a self-signed certificate made at start).")
	flag.StringVar(&ep.metrics.CertName, "metrics-cert-name", "tls.crt", "Certificate file in --metrics-cert-dir.")
	flag.StringVar(&ep.metrics.KeyName, "metrics-key-name", "tls.key", "Key file in --metrics-cert-dir.")
	flag.StringVar(&ep.probeAddr, "health-probe-bind-address", "127.0.0.1:7475", "Address of the /healthz and /readyz endpoints ('0' disables them).")
	defaultClass := flag.Bool("default-class", true,
		"Services without spec.loadBalancerClass are Fairlead's (must match the controller's --default-class).")
	qps := flag.Float64("kube-api-qps", 50, "Requests per second to the apiserver (client-side limit).")
	cleanup := flag.Bool("cleanup", false, "Remove the proxy's nftables table (inet fairlead) and exit.")
	klog.InitFlags(nil)
	flag.Parse()
	// controller-runtime's cache and client log through their own global logger; without one
	// they complain on stderr and drop their messages.
	ctrllog.SetLogger(klog.Background().WithName("controller-runtime"))
	if *cleanup {
		if err := cleanupProxy(); err != nil {
			klog.ErrorS(err, "cleanup failed")
			os.Exit(1)
		}
		return
	}
	if err := run(*kubeconfig, *node, ep, float32(*qps), *defaultClass); err != nil {
		klog.ErrorS(err, "speaker stopped")
		os.Exit(1)
	}
}

// endpoints are the speaker's HTTP listeners.
type endpoints struct {
	metricsAddr, probeAddr string
	metrics                serving.Options
}

func run(kubeconfig, node string, ep endpoints, qps float32, defaultClass bool) error {
	if node == "" {
		return fmt.Errorf("--node-name (or $NODE_NAME) is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = qps, int(2*qps)
	cfg.UserAgent = "fairlead-speaker/" + node
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &speaker{config: cfg, client: client, dynamic: dyn, node: node, metrics: reg, defaultClass: defaultClass,
		informer: informers.NewSharedInformerFactory(client, 0)}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	// Both ports are opened before any component starts, so that a taken port fails the start
	// cleanly instead of leaving announcements behind.
	var synced atomic.Bool
	servers, err := ep.listen(ctx, reg, cfg, synced.Load)
	if err != nil {
		return err
	}
	var runs []func(context.Context) error
	for _, c := range components {
		if !*c.on {
			continue
		}
		r, err := c.setup(s)
		if err != nil {
			closeAll(servers)
			return fmt.Errorf("%s: %w", c.name, err)
		}
		runs = append(runs, r)
		klog.InfoS("component enabled", "component", c.name, "node", node)
	}
	s.informer.Start(ctx.Done())
	if s.snaps != nil {
		s.snaps.Start(ctx)
	}
	for _, r := range runs {
		g.Go(func() error { return r(ctx) })
	}
	for _, sv := range servers {
		g.Go(func() error { return serving.Serve(ctx, sv.l, sv.srv) })
	}
	if servers != nil {
		go func() {
			s.informer.WaitForCacheSync(ctx.Done())
			if s.snaps != nil {
				s.snaps.WaitForCacheSync(ctx)
			}
			synced.Store(ctx.Err() == nil)
		}()
	}
	err = g.Wait()
	if s.members != nil {
		s.members.Wait()
	}
	return err
}

type server struct {
	l   net.Listener
	srv *http.Server
}

func closeAll(servers []server) {
	for _, sv := range servers {
		_ = sv.l.Close()
	}
}

// listen opens the metrics and health ports that are not disabled.
func (ep endpoints) listen(ctx context.Context, reg *prometheus.Registry, cfg *rest.Config, ready func() bool) ([]server, error) {
	var out []server
	if ep.metricsAddr != "0" {
		l, srv, err := serving.Listen(ctx, ep.metricsAddr, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ep.metrics, cfg, klog.Background().WithName("metrics"))
		if err != nil {
			return nil, err
		}
		klog.InfoS("serving metrics", "address", l.Addr().String(), "secure", ep.metrics.Secure)
		out = append(out, server{l, srv})
	}
	if ep.probeAddr != "0" {
		l, err := net.Listen("tcp", ep.probeAddr)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("health probes: %w", err)
		}
		klog.InfoS("serving health probes", "address", l.Addr().String())
		out = append(out, server{l, &http.Server{Handler: serving.Health(ready), ReadHeaderTimeout: 10 * time.Second}})
	}
	return out, nil
}
