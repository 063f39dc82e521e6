package main

import (
	"context"
	"flag"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

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
	src, err := s.snapshots()
	if err != nil {
		return nil, err
	}
	broadcaster := record.NewBroadcaster()
	recorder := broadcaster.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "fairlead-speaker", Host: s.node})
	loop := eip.New(eip.Options{
		Node:      s.node,
		Mover:     mover,
		Snapshots: src,
		Members:   ml,
		Metrics:   s.metrics,
		Recorder:  recorder,
		Log:       klog.Background().WithName("eip"),
	})
	return func(ctx context.Context) error {
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		return loop.Run(ctx)
	}, nil
}
