// Package cloudprovider runs Fairlead's providers behind k8s.io/cloud-provider, so that the
// upstream service controller of a cloud-controller-manager (cmd/fairlead-ccm) gives Services
// their addresses: from the cluster's IPPools (bare metal) or from AWS (an NLB or an Elastic
// IP per Service). Only the LoadBalancer part of cloudprovider.Interface is implemented; nodes,
// zones and routes stay with whatever else runs in the cluster.
package cloudprovider

import (
	"context"
	"fmt"
	"io"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/scheme"
	"github.com/fairlead-lb/fairlead/controllers/cloud"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
)

// ProviderName is the name to pass as --cloud-provider.
const ProviderName = "fairlead"

// clientName is the identity the provider's own API client asks the client builder for
// (with --use-service-account-credentials, a ServiceAccount of that name in kube-system).
const clientName = "fairlead-cloud-provider"

func init() {
	cloudprovider.RegisterCloudProvider(ProviderName, func(r io.Reader) (cloudprovider.Interface, error) {
		cfg, err := ParseConfig(r)
		if err != nil {
			return nil, err
		}
		return New(context.Background(), cfg, nil)
	})
}

// Cloud is Fairlead as a cloud provider. It only balances load.
type Cloud struct {
	lb *LoadBalancer
	// backend names the AWS backend for the sweep's logs.
	backend string

	mu      sync.Mutex
	kube    client.Client
	initErr error
}

var _ cloudprovider.Interface = (*Cloud)(nil)

// New builds the provider for cfg. kube talks to the API (Services' namespaces, IPPools); nil
// means the client builder given to Initialize provides it, as in a cloud-controller-manager.
func New(ctx context.Context, cfg Config, kube client.Client) (*Cloud, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cloud{kube: kube, backend: cfg.Provider}
	c.lb = &LoadBalancer{kube: c.client}
	switch cfg.Provider {
	case BackendPools:
		c.lb.pools = newPools(c.client)
	case BackendAWSNLB, BackendAWSEIP:
		clients, err := fairaws.NewClients(ctx, fairaws.Config{Region: cfg.AWS.Region, Endpoint: cfg.AWS.Endpoint})
		if err != nil {
			return nil, err
		}
		a := cfg.AWS
		if cfg.Provider == BackendAWSNLB {
			nlb, err := fairaws.NewNLB(clients, fairaws.NLBOptions{ClusterName: a.ClusterName, VPCID: a.VPCID, Subnets: a.Subnets, NodeSecurityGroupID: a.NodeSecurityGroupID})
			if err != nil {
				return nil, err
			}
			c.lb.provider = nlb
			c.lb.name = func(svc *v1.Service) string {
				return fairaws.ServiceLoadBalancerName(a.ClusterName, key(svc), svc.Annotations)
			}
		} else {
			eip, err := fairaws.NewEIP(clients, fairaws.EIPOptions{ClusterName: a.ClusterName, Pool: a.EIPPool, AllocateOnDemand: a.AllocateOnDemand, PublicIPv4Pool: a.PublicIPv4Pool})
			if err != nil {
				return nil, err
			}
			c.lb.provider = eip
		}
	}
	return c, nil
}

// Initialize implements cloudprovider.Interface: it builds the API client the provider uses and
// starts the sweep. The cloud-controller-manager calls it once it leads (or at start without
// leader election), before starting the service controller; stop closes when it stops leading.
func (c *Cloud) Initialize(b cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kube != nil {
		return
	}
	cfg, err := b.Config(clientName)
	if err != nil {
		// The service controller then fails each sync with "not initialized", which its Events show.
		c.initErr = fmt.Errorf("fairlead: building the API client: %w", err)
		return
	}
	kube, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		c.initErr = fmt.Errorf("fairlead: building the API client: %w", err)
		return
	}
	c.kube = kube
	if c.lb.provider != nil {
		go c.sweep(kube, stop)
	}
}

// sweep releases, once, what the AWS backend holds for Services that were deleted while no
// fairlead-ccm ran: the service controller only releases for the deletions it sees. It runs
// where Initialize does, so on the leader only, and once (a second Initialize, as with leader
// migration, returns before). A Service that exists is the service controller's to release,
// when it is deleted or stops being a LoadBalancer.
func (c *Cloud) sweep(kube client.Reader, stop <-chan struct{}) {
	ctx := klog.NewContext(wait.ContextForChannel(stop), klog.Background())
	_ = (&cloud.Collector{Name: c.backend, Provider: c.lb.provider, Reader: kube,
		Keep: func(*v1.Service) bool { return true }}).Start(ctx)
}

func (c *Cloud) client() (client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.kube != nil:
		return c.kube, nil
	case c.initErr != nil:
		return nil, c.initErr
	}
	return nil, fmt.Errorf("fairlead: the cloud provider is not initialized yet")
}

// LoadBalancer implements cloudprovider.Interface.
func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c.lb, true }

// Instances implements cloudprovider.Interface: not supported.
func (c *Cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// InstancesV2 implements cloudprovider.Interface: not supported.
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return nil, false }

// Zones implements cloudprovider.Interface: not supported.
func (c *Cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters implements cloudprovider.Interface: not supported.
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes implements cloudprovider.Interface: not supported.
func (c *Cloud) Routes() (cloudprovider.Routes, bool) { return nil, false }

// ProviderName implements cloudprovider.Interface.
func (c *Cloud) ProviderName() string { return ProviderName }

// HasClusterID implements cloudprovider.Interface. The AWS backends refuse to start without a
// cluster name (it is in every tag); the pools backend has nothing to tag.
func (c *Cloud) HasClusterID() bool { return true }
