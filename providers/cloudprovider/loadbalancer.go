package cloudprovider

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
)

// LoadBalancer is cloudprovider.LoadBalancer over one backend: the IPPools, or a
// providers.Provider.
//
// The upstream service controller never gives it Services with a spec.loadBalancerClass: those
// belong to whatever implements their class (fairlead-controller for fairlead.dev/lb).
type LoadBalancer struct {
	kube func() (client.Client, error)
	// Exactly one of pools and provider is set.
	pools    *pools
	provider providers.Provider
	// name is the provider's name for a Service's load balancer (default: its key).
	name func(svc *v1.Service) string
	// locks keep the calls that create or delete a Service's load balancer one at a time.
	locks serviceLocks
}

var _ cloudprovider.LoadBalancer = (*LoadBalancer)(nil)

func withLogger(ctx context.Context, svc *v1.Service) context.Context {
	return klog.NewContext(ctx, klog.Background().WithValues("service", klog.KObj(svc)))
}

// GetLoadBalancer implements cloudprovider.LoadBalancer. The service controller asks it before
// deleting: for the pools it is exact (the Service holds addresses); the cloud providers only
// find what exists by listing tagged resources, so they always say it exists and let
// EnsureLoadBalancerDeleted, which is idempotent and finds everything by tag, decide.
func (l *LoadBalancer) GetLoadBalancer(ctx context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	ctx = withLogger(ctx, svc)
	if l.pools != nil {
		ips, err := l.pools.held(ctx, key(svc))
		if err != nil || len(ips) == 0 {
			return nil, false, err
		}
		return statusFor(providers.Ingress{IPs: ips}, v1.LoadBalancerIPModeVIP), true, nil
	}
	return svc.Status.LoadBalancer.DeepCopy(), true, nil
}

// GetLoadBalancerName implements cloudprovider.LoadBalancer.
func (l *LoadBalancer) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	if l.name != nil {
		return l.name(svc)
	}
	return key(svc)
}

// EnsureLoadBalancer implements cloudprovider.LoadBalancer.
func (l *LoadBalancer) EnsureLoadBalancer(ctx context.Context, _ string, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	ctx = withLogger(ctx, svc)
	unlock, err := l.locks.lock(ctx, key(svc))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if l.pools != nil {
		ips, err := l.pools.ensure(ctx, svc)
		if err != nil {
			return nil, err
		}
		klog.FromContext(ctx).V(2).Info("addresses assigned", "ips", ips)
		return statusFor(providers.Ingress{IPs: ips}, v1.LoadBalancerIPModeVIP), nil
	}
	in, err := l.ensureProvider(ctx, svc, nodes)
	if err != nil {
		return nil, err
	}
	return statusFor(in, v1.LoadBalancerIPModeVIP), nil
}

// updater is a provider whose resources depend on the nodes (an NLB's targets). Update brings
// what exists up to date and creates nothing.
type updater interface {
	Update(ctx context.Context, svc *providers.Service) error
}

// Without Update, an NLB's targets would silently stop following the nodes.
var _ updater = (*fairaws.NLB)(nil)

// UpdateLoadBalancer implements cloudprovider.LoadBalancer: the nodes changed. The service
// controller's node worker calls it from its own copy of the Service, also after
// EnsureLoadBalancerDeleted released everything, so it must create nothing: an Ensure then
// would make an address or a load balancer that nothing releases. Addresses from the pools and
// Elastic IPs do not depend on nodes (the speakers follow the nodes themselves), so for them
// nothing is called.
func (l *LoadBalancer) UpdateLoadBalancer(ctx context.Context, _ string, svc *v1.Service, nodes []*v1.Node) error {
	u, ok := l.provider.(updater)
	if l.pools != nil || !ok {
		return nil
	}
	ctx = withLogger(ctx, svc)
	unlock, err := l.locks.lock(ctx, key(svc))
	if err != nil {
		return err
	}
	defer unlock()
	desc, err := l.describe(ctx, svc, nodes)
	if err != nil {
		return err
	}
	if err := u.Update(ctx, desc); err != nil {
		return withReason(err)
	}
	return nil
}

// EnsureLoadBalancerDeleted implements cloudprovider.LoadBalancer.
func (l *LoadBalancer) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *v1.Service) error {
	ctx = withLogger(ctx, svc)
	unlock, err := l.locks.lock(ctx, key(svc))
	if err != nil {
		return err
	}
	defer unlock()
	if l.pools != nil {
		released, err := l.pools.release(ctx, key(svc))
		if err == nil && len(released) > 0 {
			klog.FromContext(ctx).V(2).Info("addresses released", "ips", released)
		}
		return err
	}
	if err := l.provider.Release(ctx, key(svc)); err != nil {
		return withReason(err)
	}
	return nil
}

func (l *LoadBalancer) ensureProvider(ctx context.Context, svc *v1.Service, nodes []*v1.Node) (providers.Ingress, error) {
	desc, err := l.describe(ctx, svc, nodes)
	if err != nil {
		return providers.Ingress{}, err
	}
	in, err := l.provider.Ensure(ctx, desc)
	if err != nil {
		return providers.Ingress{}, withReason(err)
	}
	return in, nil
}

func (l *LoadBalancer) describe(ctx context.Context, svc *v1.Service, nodes []*v1.Node) (*providers.Service, error) {
	kube, err := l.kube()
	if err != nil {
		return nil, err
	}
	var ns v1.Namespace
	if err := kube.Get(ctx, types.NamespacedName{Name: svc.Namespace}, &ns); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", svc.Namespace, err)
	}
	desc, err := ServiceFor(svc, ns.Labels, nodes)
	if err != nil {
		return nil, withReason(err)
	}
	return desc, nil
}

// withReason puts the provider's reason in front of its message: the service controller only
// shows the message (in a SyncLoadBalancerFailed Event).
func withReason(err error) error {
	return fmt.Errorf("%s: %w", providers.ReasonOf(err), err)
}
