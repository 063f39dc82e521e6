// Command fairlead-lab runs the whole system in network namespaces on one Linux box (see
// README, "The lab"): `make lab` runs `fairlead-lab up`. It is a developer's tool and lives
// beside the lab under test/: the image ships fairleadctl, which must not carry a harness that
// creates namespaces and starts etcd (cmd/fairleadctl's tests check it).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/test/lab"
)

const usage = `usage:
  fairlead-lab up [--nodes kubelet|agent] [--proxy fairlead|kube-proxy] [--bin DIR] [--k8s-bin DIR] [--crds DIR] [--state DIR] [--port N] [--prometheus-port N] [--prefix P]
  fairlead-lab down [--state DIR] [--prefix P]
  fairlead-lab status [--state DIR] [--prefix P] [--prometheus-port N]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// controller-runtime's clients log through klog, like the rest of the command (otherwise
	// its first client prints a warning with a stack).
	ctrllog.SetLogger(klog.NewKlogr())
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "fairlead-lab:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("fairlead-lab "+verb, flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage+"\nflags:\n")
		fs.PrintDefaults()
	}
	self, _ := os.Executable()
	l := &lab.Lab{Out: os.Stdout}
	fs.StringVar(&l.State, "state", lab.DefaultState, "State directory (certificates, logs, etcd data).")
	fs.StringVar(&l.Prefix, "prefix", lab.DefaultPrefix, "Prefix of the lab's namespace names (another prefix, state and port: a second lab).")
	fs.StringVar(&l.Bin, "bin", filepath.Dir(self), "Directory holding fairlead-lab, fairlead-controller, fairlead-speaker and echo; with kubelet nodes also fairlead-ccm and fairleadctl (the image), all static.")
	fs.StringVar(&l.K8sBin, "k8s-bin", os.Getenv("FAIRLEAD_K8S_BIN"), "Directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet.")
	nodes := fs.String("nodes", string(lab.KubeletNodes), "up: what plays the nodes: kubelet (kubelet + containerd each, kube-scheduler, Fairlead by its chart) or agent (the lab agent: Pods and Fairlead as processes, faster).")
	proxy := fs.String("proxy", string(lab.FairleadProxy), "up, kubelet nodes: what proxies Services: fairlead (the speakers' proxy) or kube-proxy (kube-proxy on every node, for comparison).")
	fs.StringVar(&l.CRDs, "crds", "charts/fairlead/crds", "Directory of Fairlead's CRDs (the chart is the directory above).")
	fs.IntVar(&l.HostPort, "port", 16443, "Port of the apiserver relay on the host's 127.0.0.1.")
	fs.IntVar(&l.PrometheusPort, "prometheus-port", lab.DefaultPrometheusPort, "Port of the relay to the lab's Prometheus on the host's 127.0.0.1 (0: none).")
	node := fs.Int("node", 0, "agent: the lab node to run (1-3).")
	kubeconfig := fs.String("kubeconfig", "", "agent: kubeconfig.")
	echo := fs.String("echo", "", "agent: the program every container runs.")
	schedule := fs.Bool("schedule", false, "agent: also bind pending Pods to nodes.")
	klog.InitFlags(fs)
	_ = fs.Parse(args)
	switch verb {
	case "up":
		mode, err := lab.ParseNodeMode(*nodes)
		if err != nil {
			return err
		}
		l.NodeMode = mode
		if l.Proxy, err = lab.ParseProxyMode(*proxy); err != nil {
			return err
		}
		return l.Up(ctx)
	case "down":
		if err := l.Down(); err != nil {
			return err
		}
		fmt.Println("the lab is down")
		return nil
	case "status":
		return l.Status(ctx, os.Stdout)
	case "relay": // started by `up` in the background
		return l.Relay(ctx)
	case "prometheus-sd": // started by `up` in the control-plane namespace
		return l.DiscoverTargets(ctx)
	case "agent": // started by `up` in each node's namespace
		cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		a, err := l.AgentFor(*node, *echo, cs, *schedule)
		if err != nil {
			return err
		}
		return a.Run(ctx)
	}
	fmt.Fprint(os.Stderr, usage)
	os.Exit(2)
	return nil
}
