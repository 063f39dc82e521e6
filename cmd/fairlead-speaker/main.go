// Command fairlead-speaker runs on every node (a DaemonSet): it announces the external addresses
// the controller allocated (layer 2 or BGP) and, with --proxy, programs the node's service proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/speaker"
	"github.com/fairlead-lb/fairlead/speaker/proxy"
	"github.com/fairlead-lb/fairlead/speaker/serving"
)

// options are the speaker's command line: its own flags, and its components' (AddFlags of
// each package).
type options struct {
	speaker.Options
	kubeconfig, node string
	qps              float64
	cleanup          bool
	endpoints        serving.Endpoints
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.Proxy, "proxy", false, "Run the nftables service proxy (replaces kube-proxy on this node).")
	fs.BoolVar(&o.L2, "l2", true, "Announce external addresses on the local network by ARP and NDP.")
	fs.BoolVar(&o.BGP, "bgp", false, "Announce external addresses to routers over BGP (BGPPeer and BGPAdvertisement objects).")
	fs.BoolVar(&o.ElasticIPs, "aws-eip", false, "Associate the AWS Elastic IPs this node is elected for with its network interface.")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig (default: in-cluster).")
	fs.StringVar(&o.node, "node-name", os.Getenv("NODE_NAME"), "This node's name (default $NODE_NAME).")
	fs.BoolVar(&o.DefaultClass, "default-class", true,
		"Services without spec.loadBalancerClass are Fairlead's (must match the controller's --default-class).")
	fs.Float64Var(&o.qps, "kube-api-qps", 50, "Requests per second to the apiserver (client-side limit).")
	fs.BoolVar(&o.cleanup, "cleanup", false, "Remove the proxy's nftables table (inet fairlead) and exit.")
	o.endpoints.AddFlags(fs)
	o.ProxyOptions.AddFlags(fs)
	o.MemberOptions.AddFlags(fs)
	o.BGPOptions.AddFlags(fs)
	o.AWS.AddFlags(fs)
	klog.InitFlags(fs)
}

func main() {
	var o options
	o.addFlags(flag.CommandLine)
	flag.Parse()
	// controller-runtime's cache and client log through their own global logger; without one
	// they complain on stderr and drop their messages.
	ctrllog.SetLogger(klog.Background().WithName("controller-runtime"))
	if o.cleanup {
		if err := proxy.Cleanup(context.Background()); err != nil {
			klog.ErrorS(err, "cleanup failed")
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		klog.ErrorS(err, "speaker stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	if o.node == "" {
		return fmt.Errorf("--node-name (or $NODE_NAME) is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	qps := float32(o.qps)
	cfg.QPS, cfg.Burst = qps, int(2*qps)
	cfg.UserAgent = "fairlead-speaker/" + o.node
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
	cluster := speaker.Cluster{Node: o.node, Config: cfg, Client: client, Dynamic: dyn, Metrics: reg,
		Informers: informers.NewSharedInformerFactory(client, 0)}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	// Both ports are opened before any component is made, so that a taken port fails the start
	// cleanly instead of leaving announcements behind.
	var synced atomic.Bool
	servers, err := o.endpoints.Listen(ctx, reg, cfg, synced.Load)
	if err != nil {
		return err
	}
	s, err := speaker.New(cluster, o.Options)
	if err != nil {
		servers.Close()
		return err
	}
	s.Start(ctx)
	for _, c := range s.Components() {
		g.Go(func() error { return c.Run(ctx) })
	}
	g.Go(func() error { return servers.Serve(ctx) })
	if len(servers.Addrs()) > 0 {
		go func() { synced.Store(s.WaitForCacheSync(ctx)) }()
	}
	err = g.Wait()
	s.Wait()
	return err
}
