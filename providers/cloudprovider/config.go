package cloudprovider

import (
	"bytes"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// Backends a Config can select.
const (
	// BackendPools allocates from the cluster's IPPools (bare metal), as fairlead-controller does.
	BackendPools = "pools"
	// BackendAWSNLB gives each Service a Network Load Balancer.
	BackendAWSNLB = "aws-nlb"
	// BackendAWSEIP gives each Service an Elastic IP.
	BackendAWSEIP = "aws-eip"
)

// Config is the cloud-config file (--cloud-config), YAML:
//
//	provider: aws-nlb
//	aws:
//	  region: eu-west-1
//	  clusterName: prod
//	  vpcID: vpc-0123456789abcdef0
type Config struct {
	// Provider selects the backend: "pools" (default), "aws-nlb" or "aws-eip".
	Provider string `json:"provider,omitempty"`
	// AWS configures the aws-* backends.
	AWS AWSConfig `json:"aws,omitempty"`
}

// AWSConfig configures the AWS backends. Credentials are never part of it: they come from the
// SDK's default chain (environment, web identity, instance metadata).
type AWSConfig struct {
	// Region overrides the default chain's region.
	Region string `json:"region,omitempty"`
	// Endpoint overrides AWS' endpoints (a VPC endpoint, or an emulator in tests).
	Endpoint string `json:"endpoint,omitempty"`
	// ClusterName tags everything created; required.
	ClusterName string `json:"clusterName,omitempty"`
	// VPCID is the cluster's VPC (aws-nlb; required there).
	VPCID string `json:"vpcID,omitempty"`
	// Subnets for the load balancers (aws-nlb). Empty: the VPC's subnets tagged
	// kubernetes.io/role/elb or kubernetes.io/role/internal-elb.
	Subnets []string `json:"subnets,omitempty"`
	// NodeSecurityGroupID is the nodes' security group, opened to each load balancer (aws-nlb).
	NodeSecurityGroupID string `json:"nodeSecurityGroupID,omitempty"`
	// EIPPool is the fairlead.dev/eip-pool tag of Elastic IPs to adopt (aws-eip).
	EIPPool string `json:"eipPool,omitempty"`
	// AllocateOnDemand allocates new Elastic IPs when the pool has none free (aws-eip).
	AllocateOnDemand bool `json:"allocateOnDemand,omitempty"`
	// PublicIPv4Pool allocates from a BYOIP pool (aws-eip).
	PublicIPv4Pool string `json:"publicIPv4Pool,omitempty"`
}

// ParseConfig reads a cloud-config. A missing file (nil reader) or an empty one selects the
// pools backend. Unknown fields are errors: a misspelt option must not be silently ignored.
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	if r != nil {
		data, err := io.ReadAll(r)
		if err != nil {
			return c, fmt.Errorf("fairlead cloud-config: %w", err)
		}
		if len(bytes.TrimSpace(data)) > 0 {
			if err := yaml.UnmarshalStrict(data, &c); err != nil {
				return c, fmt.Errorf("fairlead cloud-config: %w", err)
			}
		}
	}
	if c.Provider == "" {
		c.Provider = BackendPools
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch c.Provider {
	case BackendPools:
		return nil
	case BackendAWSNLB:
		if c.AWS.ClusterName == "" {
			return fmt.Errorf("fairlead cloud-config: provider %s needs aws.clusterName (it tags everything created)", c.Provider)
		}
		if c.AWS.VPCID == "" {
			return fmt.Errorf("fairlead cloud-config: provider %s needs aws.vpcID", c.Provider)
		}
	case BackendAWSEIP:
		if c.AWS.ClusterName == "" {
			return fmt.Errorf("fairlead cloud-config: provider %s needs aws.clusterName (it tags everything created)", c.Provider)
		}
		if c.AWS.EIPPool == "" && !c.AWS.AllocateOnDemand {
			return fmt.Errorf("fairlead cloud-config: provider %s needs aws.eipPool, aws.allocateOnDemand: true, or both", c.Provider)
		}
	default:
		return fmt.Errorf("fairlead cloud-config: provider %q is not one of %s, %s, %s", c.Provider, BackendPools, BackendAWSNLB, BackendAWSEIP)
	}
	return nil
}
