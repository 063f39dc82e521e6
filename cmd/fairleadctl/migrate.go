package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/metallb"
	"github.com/fairlead-lb/fairlead/config/metallb/migrate"
)

func migrateCommand(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "metallb" {
		return fmt.Errorf("usage: fairleadctl migrate metallb [-f FILE|DIR]... [--apply]")
	}
	fs := flag.NewFlagSet("migrate metallb", flag.ExitOnError)
	var o migrate.Options
	fs.Func("f", "MetalLB objects in YAML or JSON: a file, a directory (its *.yaml, *.yml, *.json), or - for stdin; repeatable. None: read them from the cluster.", func(s string) error {
		o.Files = append(o.Files, s)
		return nil
	})
	fs.BoolVar(&o.Apply, "apply", false, "Create or update the Fairlead objects in the cluster (server-side apply) instead of printing them.")
	fs.StringVar(&o.Namespace, "metallb-namespace", metallb.DefaultNamespace, "MetalLB's namespace: the only one it reads its objects from.")
	fs.StringVar(&o.Secrets, "secret-namespace", "fairlead-system", "Fairlead's speakers' namespace (--bgp-secret-namespace): where BGP password Secrets go.")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
	_ = fs.Parse(args[1:])
	var c client.Client
	if len(o.Files) == 0 || o.Apply {
		var err error
		if c, err = kubeClient(*kubeconfig); err != nil {
			return err
		}
	}
	return migrate.Run(ctx, c, o, os.Stdin, os.Stdout, os.Stderr)
}
