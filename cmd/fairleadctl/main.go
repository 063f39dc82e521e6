// Command fairleadctl is Fairlead's command-line tool for users: it ships in the image, so it
// holds user commands only and imports nothing under test/ (main_test.go checks it); the lab
// is test/lab/cmd/fairlead-lab.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/scheme"
)

const usage = `usage:
  fairleadctl status [--kubeconfig FILE]   pools, LoadBalancer Services, announcements, BGP sessions
  fairleadctl migrate metallb [-f FILE|DIR]... [--apply] [--kubeconfig FILE] [--metallb-namespace NS] [--secret-namespace NS]
                                           MetalLB's configuration as Fairlead's (printed, or applied), with a report of what differs
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// controller-runtime's clients log through klog, like the rest of the command (otherwise
	// its first client prints a warning with a stack).
	ctrllog.SetLogger(klog.NewKlogr())
	var err error
	switch {
	case len(os.Args) >= 2 && os.Args[1] == "status":
		err = statusCommand(ctx, os.Args[2:])
	case len(os.Args) >= 2 && os.Args[1] == "migrate":
		err = migrateCommand(ctx, os.Args[2:])
	case len(os.Args) >= 2 && os.Args[1] == "lab":
		// A lab brought up by an older fairleadctl still has to come down.
		err = errors.New("the lab is not part of fairleadctl: make lab, or bin/fairlead-lab up|down|status (built from ./test/lab/cmd/fairlead-lab)")
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fairleadctl:", err)
		os.Exit(1)
	}
}

func statusCommand(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
	_ = fs.Parse(args)
	c, err := kubeClient(*kubeconfig)
	if err != nil {
		return err
	}
	return writeStatus(ctx, c, os.Stdout)
}

func kubeClient(kubeconfig string) (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme.New()})
}
