// Command fairlead-ccm is a cloud-controller-manager whose cloud provider is Fairlead: run with
// --cloud-provider=fairlead --controllers=service, the upstream service controller gives
// LoadBalancer Services without a loadBalancerClass their addresses from Fairlead's IPPools or
// from AWS (see providers/cloudprovider), alone or beside another cloud's CCM.
package main

import (
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/util/wait"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics on /metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric
	"k8s.io/klog/v2"

	fairlead "github.com/fairlead-lb/fairlead/providers/cloudprovider"
)

func main() {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		klog.Fatalf("initializing options: %v", err)
	}
	// Fairlead only balances load: the service controller is the one that makes sense, so it is
	// what runs unless --controllers says otherwise.
	opts.KubeCloudShared.CloudProvider.Name = fairlead.ProviderName
	opts.Generic.Controllers = []string{names.ServiceLBController}
	// Its own Lease, so that it never contends with another cloud's CCM beside it (whose Lease
	// is the default, "cloud-controller-manager").
	opts.Generic.LeaderElection.ResourceName = "fairlead-ccm"
	cmd := app.NewCloudControllerManagerCommand(opts, initCloud, app.DefaultInitFuncConstructors,
		names.CCMControllerAliases(), cliflag.NamedFlagSets{}, wait.NeverStop)
	cmd.Use = "fairlead-ccm"
	cmd.Long = `fairlead-ccm is a cloud-controller-manager whose cloud provider is Fairlead: its service
controller gives LoadBalancer Services without a loadBalancerClass their addresses from
Fairlead's IPPools, an AWS NLB or an Elastic IP, as --cloud-config says.`
	os.Exit(cli.Run(cmd))
}

func initCloud(c *config.CompletedConfig) cloudprovider.Interface {
	fenceClients(c)
	shared := c.ComponentConfig.KubeCloudShared.CloudProvider
	if shared.Name != fairlead.ProviderName {
		klog.Fatalf("--cloud-provider=%q: fairlead-ccm only runs the %q cloud provider", shared.Name, fairlead.ProviderName)
	}
	cloud, err := cloudprovider.InitCloudProvider(shared.Name, shared.CloudConfigFile)
	if err != nil {
		klog.Fatalf("cloud provider %q (--cloud-config=%q): %v", shared.Name, shared.CloudConfigFile, err)
	}
	if cloud == nil {
		klog.Fatal(fmt.Sprintf("cloud provider %q is not registered", shared.Name))
	}
	return cloud
}
