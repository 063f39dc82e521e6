package cloudprovider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	servicehelpers "k8s.io/cloud-provider/service/helpers"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/describe"
	"github.com/fairlead-lb/fairlead/providers/ipam"
)

// pools allocates from the IPPools with the allocation state fairlead-controller uses
// (providers/ipam): same pool selection, sharing, requested addresses and annotations.
//
// As in the controller, the state lives in the API: before the first allocation it is rebuilt
// (ipam's LoadFromAPI, with claim as the rule) from the status of every Service the service
// controller balances, so a restarted or newly elected fairlead-ccm never hands out an address
// a Service already holds.
type pools struct {
	kube  func() (client.Client, error)
	state *ipam.State
}

func newPools(kube func() (client.Client, error)) *pools {
	return &pools{kube: kube, state: ipam.New(ipam.Hooks{Claim: claim})}
}

// claim mirrors the upstream service controller's choice of Services, plus its finalizer,
// which it adds before asking for a load balancer: such a Service's status is ours, whatever
// it names.
func claim(svc *v1.Service, _ ipam.Request) ipam.Claim {
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil &&
		servicehelpers.HasLBFinalizer(svc) {
		return ipam.Wrote
	}
	return ipam.NotHeld
}

// load restores the state once (pools, then the addresses Services hold).
func (p *pools) load(ctx context.Context) error {
	kube, err := p.kube()
	if err != nil {
		return err
	}
	return p.state.LoadFromAPI(ctx, kube)
}

// refresh reloads the pools before an allocation: they are read on every call rather than
// watched, since the service controller calls rarely and retries failures itself.
func (p *pools) refresh(ctx context.Context) error {
	if err := p.load(ctx); err != nil {
		return err
	}
	kube, err := p.kube()
	if err != nil {
		return err
	}
	var list v1alpha1.IPPoolList
	if err := kube.List(ctx, &list); err != nil {
		return fmt.Errorf("listing IPPools: %w", err)
	}
	for name, problem := range p.state.LoadPools(list.Items) {
		klog.FromContext(ctx).V(2).Info("IPPool not in use", "pool", name, "reason", problem.Reason, "message", problem.Message)
	}
	return nil
}

func (p *pools) ensure(ctx context.Context, svc *v1.Service) ([]netip.Addr, error) {
	if err := p.refresh(ctx); err != nil {
		return nil, err
	}
	kube, err := p.kube()
	if err != nil {
		return nil, err
	}
	var ns v1.Namespace
	if err := kube.Get(ctx, types.NamespacedName{Name: svc.Namespace}, &ns); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", svc.Namespace, err)
	}
	// Bad input is an InvalidRequest: nothing is allocated or released; the Service keeps its
	// status.
	in, err := ipam.Pools{State: p.state}.Ensure(ctx, describe.Spec(svc, ns.Labels))
	if err != nil {
		var e *ipam.Error
		if errors.As(err, &e) {
			return nil, fmt.Errorf("%s: %s", e.Reason, e.Message)
		}
		return nil, err
	}
	return in.IPs, nil
}

func (p *pools) held(ctx context.Context, key string) ([]netip.Addr, error) {
	if err := p.load(ctx); err != nil {
		return nil, err
	}
	return p.state.Held(key), nil
}

func (p *pools) release(ctx context.Context, key string) ([]netip.Addr, error) {
	if err := p.load(ctx); err != nil {
		return nil, err
	}
	return p.state.Release(key), nil
}
