package eip

import (
	"context"
	"flag"
	"fmt"

	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
)

// AWS says how the speaker reaches EC2: its --aws-* flags. Credentials always come from the
// SDK's default chain.
type AWS struct {
	Region, Endpoint string
	// ClusterName is the controller's --aws-cluster-name: only Elastic IPs tagged with it are
	// this cluster's.
	ClusterName string
}

// AddFlags registers the speaker's --aws-* flags.
func (a *AWS) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.Region, "aws-region", "", "AWS region for --aws-eip (default: the SDK's chain: $AWS_REGION, shared config, instance metadata).")
	fs.StringVar(&a.Endpoint, "aws-endpoint", "", "Endpoint for the EC2 API (a VPC endpoint, or an emulator in tests); default: AWS' own. Credentials come from the SDK's default chain.")
	fs.StringVar(&a.ClusterName, "aws-cluster-name", "", "Cluster name the controller tags Elastic IPs with (its --aws-cluster-name); required with --aws-eip.")
}

// Mover returns the EC2 side of a Loop.
func (a AWS) Mover(ctx context.Context) (Mover, error) {
	clients, err := fairaws.NewClients(ctx, fairaws.Config{Region: a.Region, Endpoint: a.Endpoint})
	if err != nil {
		return nil, err
	}
	mover, err := fairaws.NewAssociator(clients, a.ClusterName)
	if err != nil {
		return nil, fmt.Errorf("--aws-cluster-name: %w", err)
	}
	return mover, nil
}
