package ipam

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// LoadFromAPI rebuilds the state from the API: every IPPool, then the addresses recorded in
// the status of every Service that Hooks.Claim says this allocator wrote, or adopted from the
// implementation it replaces when those addresses are in pools or name the pool they came
// from (MetalLB's annotation): taking over from MetalLB keeps each address where it is,
// instead of handing it to whichever Service is reconciled first.
func (s *State) LoadFromAPI(ctx context.Context, c client.Reader) error {
	if s.hooks.Claim == nil {
		return fmt.Errorf("restoring the allocation state: no rule says which Services' status is ours")
	}
	return s.Once(func() error {
		var pools v1alpha1.IPPoolList
		if err := c.List(ctx, &pools); err != nil {
			return fmt.Errorf("listing IPPools: %w", err)
		}
		s.LoadPools(pools.Items)
		var svcs corev1.ServiceList
		if err := c.List(ctx, &svcs); err != nil {
			return fmt.Errorf("listing Services: %w", err)
		}
		var hs []Holding
		for i := range svcs.Items {
			svc := &svcs.Items[i]
			ips := IngressIPs(svc)
			if len(ips) == 0 {
				continue
			}
			// The request's Service part (ports, sharing key) matters for sharing checks; a
			// request that no longer parses still holds its addresses.
			r, _ := RequestFor(svc, labels.Set{})
			claim := s.hooks.Claim(svc, r)
			if claim == NotHeld {
				continue
			}
			h := Holding{Service: r.Service, IPs: ips, Created: svc.CreationTimestamp.Time}
			foreign := false // an address of neither a pool nor a recorded one: not ours to keep
			for i, a := range ips {
				h.Pools = append(h.Pools, v1alpha1.AllocatedFromPool(svc.Annotations, i, len(ips)))
				foreign = foreign || (h.Pools[i] == "" && s.alloc.PoolOf(a) == "")
			}
			if foreign && claim == Adopted {
				// Written by something else (a cloud's load balancer, say): the Service gets an
				// address of a pool instead, as it always did.
				continue
			}
			hs = append(hs, h)
		}
		errs := s.Restore(hs)
		for _, err := range errs {
			// Two Services claiming one address, or an address no Service may hold (a
			// special-purpose one): the Service is reconciled afresh.
			log.FromContext(ctx).Error(err, "address in Service status not restored; that Service will be given a new address")
		}
		log.FromContext(ctx).Info("allocation state restored", "pools", len(pools.Items), "services", len(hs), "conflicts", len(errs))
		return nil
	})
}

// IngressIPs returns the addresses in a Service's status.loadBalancer.ingress.
func IngressIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}
