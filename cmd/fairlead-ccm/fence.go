package main

import (
	"net/http"

	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/fairlead-lb/fairlead/controllers/fence"
)

var fencedWrites = metrics.NewCounter(&metrics.CounterOpts{
	Name:           "fairlead_fenced_writes_total",
	Help:           "Writes to the API refused because the leader Lease was not provably held.",
	StabilityLevel: metrics.ALPHA,
})

func init() { legacyregistry.MustRegister(fencedWrites) }

// fenceClients puts a fence (controllers/fence) in front of every client the
// cloud-controller-manager builds after configuration: the elector's, the informers' and the
// service controller's, which writes Service status. A replica paused past its Lease then
// writes nothing when it resumes, instead of status computed from a stale view.
func fenceClients(c *config.CompletedConfig) {
	le := c.ComponentConfig.Generic.LeaderElection
	if !le.LeaderElect {
		return
	}
	f := fence.New(le.ResourceNamespace, le.ResourceName, fence.OnRefused(fencedWrites.Inc))
	c.Kubeconfig.Wrap(f.Wrap)
	if c.ComponentConfig.KubeCloudShared.UseServiceAccountCredentials {
		// Its configs were derived from the kubeconfig before the fence existed.
		c.ClientBuilder = fencedBuilder{next: c.ClientBuilder, wrap: f.Wrap}
	}
}

// fencedBuilder wraps the transport of every config a client builder hands out.
type fencedBuilder struct {
	next cloudprovider.ControllerClientBuilder
	wrap func(http.RoundTripper) http.RoundTripper
}

func (b fencedBuilder) Config(name string) (*rest.Config, error) {
	cfg, err := b.next.Config(name)
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(b.wrap)
	return cfg, nil
}

func (b fencedBuilder) ConfigOrDie(name string) *rest.Config {
	cfg := rest.CopyConfig(b.next.ConfigOrDie(name))
	cfg.Wrap(b.wrap)
	return cfg
}

func (b fencedBuilder) Client(name string) (clientset.Interface, error) {
	cfg, err := b.Config(name)
	if err != nil {
		return nil, err
	}
	return clientset.NewForConfig(cfg)
}

func (b fencedBuilder) ClientOrDie(name string) clientset.Interface {
	return clientset.NewForConfigOrDie(b.ConfigOrDie(name))
}
