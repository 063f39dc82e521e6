package main

import (
	"context"
	"flag"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/speaker/eip"
)

var (
	awsRegion   = flag.String("aws-region", "", "AWS region for --aws-eip (default: the SDK's chain: $AWS_REGION, shared config, instance metadata).")
	awsEndpoint = flag.String("aws-endpoint", "", "Endpoint for the EC2 API (a VPC endpoint, or an emulator in tests); default: AWS' own. Credentials come from the SDK's default chain.")
	awsCluster  = flag.String("aws-cluster-name", "", "Cluster name the controller tags Elastic IPs with (its --aws-cluster-name); required with --aws-eip.")
)

// setupEIP wires the Elastic IP mover: the speaker of the node elected for an Elastic IP
// associates it with this node's interface. It elects from the same member list as layer 2,
// so a dead speaker's addresses move within a second, not when its Node goes NotReady.
func setupEIP(s *speaker) (func(context.Context) error, error) {
	clients, err := fairaws.NewClients(context.Background(), fairaws.Config{Region: *awsRegion, Endpoint: *awsEndpoint})
	if err != nil {
		return nil, err
	}
	mover, err := fairaws.NewAssociator(clients, *awsCluster)
	if err != nil {
		return nil, fmt.Errorf("--aws-cluster-name: %w", err)
	}
	ml, err := s.memberList()
	if err != nil {
		return nil, err
	}
	ctrllog.SetLogger(klog.Background().WithName("controller-runtime"))
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	pools, err := cache.New(s.config, cache.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	services := s.informer.Core().V1().Services()
	nodes := s.informer.Core().V1().Nodes()
	slices := s.informer.Discovery().V1().EndpointSlices()
	broadcaster := record.NewBroadcaster()
	recorder := broadcaster.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "fairlead-speaker", Host: s.node})
	var loop *eip.Loop
	var alive func(string) bool // set before the loop runs
	loop = eip.New(eip.Options{
		Node:     s.node,
		Mover:    mover,
		Metrics:  s.metrics,
		Recorder: recorder,
		Log:      klog.Background().WithName("eip"),
		Snapshot: func() (eip.Input, error) {
			in := eip.Input{DefaultClass: *l2DefaultClass, Alive: alive}
			in.Services, _ = services.Lister().List(labels.Everything())
			in.Nodes, _ = nodes.Lister().List(labels.Everything())
			in.EndpointSlices, _ = slices.Lister().List(labels.Everything())
			var list v1alpha1.IPPoolList
			if err := pools.List(context.Background(), &list); err != nil {
				return in, fmt.Errorf("listing IPPools: %w", err)
			}
			for i := range list.Items {
				in.Pools = append(in.Pools, &list.Items[i])
			}
			return in, nil
		},
	})
	kick := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { loop.Kick() },
		UpdateFunc: func(any, any) { loop.Kick() },
		DeleteFunc: func(any) { loop.Kick() },
	}
	for _, inf := range []toolscache.SharedIndexInformer{services.Informer(), nodes.Informer(), slices.Informer()} {
		if _, err := inf.AddEventHandler(kick); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context) error {
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		inf, err := pools.GetInformer(ctx, &v1alpha1.IPPool{})
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(kick); err != nil {
			return err
		}
		go func() { _ = pools.Start(ctx) }()
		if !pools.WaitForCacheSync(ctx) {
			return ctx.Err()
		}
		s.informer.WaitForCacheSync(ctx.Done())
		mem, err := ml.get(ctx)
		if err != nil {
			return err
		}
		alive = mem.Alive
		mem.OnChange(ctx, loop.Kick)
		return loop.Run(ctx)
	}, nil
}
