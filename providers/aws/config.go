// Package aws gives Services AWS load balancers and addresses: a Network Load Balancer per
// Service (NLB) or Elastic IPs (EIP). Everything it creates is tagged with the cluster and the
// Service, and found again by those tags (and by names derived from them), so a restarted
// controller adopts what it created and deletes everything on release.
package aws

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// Config says how to reach AWS. Credentials always come from the SDK's default chain
// (environment, shared config, web identity, instance metadata): Fairlead never takes keys
// on its command line, so they cannot end up in logs or process listings.
type Config struct {
	// Region overrides the default chain's region (AWS_REGION, shared config, IMDS).
	Region string
	// Endpoint overrides the service endpoint for every client (an emulator in tests, or a
	// VPC endpoint). Empty: AWS' own endpoints.
	Endpoint string
	// MaxAttempts per API call, retries included (default 8): throttling and 5xx answers and
	// dropped connections are retried by the SDK's standard retryer with jittered backoff.
	MaxAttempts int
	// MaxBackoff caps the wait between attempts (default 20s, the SDK's).
	MaxBackoff time.Duration
	// HTTPClient replaces the SDK's HTTP client (optional).
	HTTPClient *http.Client
}

// Clients are the API clients the providers use.
type Clients struct {
	EC2   *ec2.Client
	ELBv2 *elbv2.Client
}

// NewClients loads the SDK configuration through the default chain and builds the clients.
func NewClients(ctx context.Context, c Config) (*Clients, error) {
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = 8
	}
	backoff := c.MaxBackoff
	if backoff <= 0 {
		backoff = retry.DefaultMaxBackoff
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = backoff
			})
		}),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(c.Endpoint))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws: loading configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("aws: no region: set AWS_REGION, a region in the shared config, or the provider's region option")
	}
	return &Clients{EC2: ec2.NewFromConfig(cfg), ELBv2: elbv2.NewFromConfig(cfg)}, nil
}
