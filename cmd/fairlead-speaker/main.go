// Command fairlead-speaker runs on every node (a DaemonSet): it announces the external addresses
// the controller allocated (layer 2 or BGP) and, with --proxy, programs the node's service proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// speaker is what every component gets: the API connection, a shared informer factory (so a
// Service is watched once however many components read it), the node's name and the metrics
// registry. Components register their informers in setup and only read them in run.
type speaker struct {
	config   *rest.Config
	client   kubernetes.Interface
	informer informers.SharedInformerFactory
	node     string
	metrics  *prometheus.Registry
	// members is the failure detector, set up by the first component that elects owners.
	members *memberList
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
	metricsAddr := flag.String("metrics-bind-address", ":7474", "Address of the Prometheus metrics endpoint ('0' disables it).")
	qps := flag.Float64("kube-api-qps", 50, "Requests per second to the apiserver (client-side limit).")
	cleanup := flag.Bool("cleanup", false, "Remove the proxy's nftables table (inet fairlead) and exit.")
	klog.InitFlags(nil)
	flag.Parse()
	if *cleanup {
		if err := cleanupProxy(); err != nil {
			klog.ErrorS(err, "cleanup failed")
			os.Exit(1)
		}
		return
	}
	if err := run(*kubeconfig, *node, *metricsAddr, float32(*qps)); err != nil {
		klog.ErrorS(err, "speaker stopped")
		os.Exit(1)
	}
}

func run(kubeconfig, node, metricsAddr string, qps float32) error {
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &speaker{config: cfg, client: client, node: node, metrics: reg,
		informer: informers.NewSharedInformerFactory(client, 0)}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	var runs []func(context.Context) error
	for _, c := range components {
		if !*c.on {
			continue
		}
		r, err := c.setup(s)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		runs = append(runs, r)
		klog.InfoS("component enabled", "component", c.name, "node", node)
	}
	s.informer.Start(ctx.Done())
	for _, r := range runs {
		g.Go(func() error { return r(ctx) })
	}
	if metricsAddr != "0" {
		srv := &http.Server{Addr: metricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
		g.Go(func() error {
			go func() { <-ctx.Done(); _ = srv.Close() }()
			if err := srv.ListenAndServe(); err != http.ErrServerClosed {
				return err
			}
			return nil
		})
	}
	err = g.Wait()
	if s.members != nil {
		s.members.wait()
	}
	return err
}
