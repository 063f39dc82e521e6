package cloudprovider

import (
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
)

// ServiceFor describes a Service for a providers.Provider, with the translation
// fairlead-controller uses (providers/describe), so a Service means the same to a provider
// whichever way it arrives. Errors are the Service's fault and name the field.
//
// Two things differ, both because the upstream service controller decides them:
//   - nodes are taken as given: it already left out the nodes excluded from load balancers,
//     being deleted or tainted by the autoscaler, and deliberately keeps NotReady ones (it only
//     calls UpdateLoadBalancer when that set changes, so filtering on readiness here would leave
//     a node that turns Ready out until the next change; the load balancer's health checks
//     handle readiness);
//   - endpoints are empty: it does not watch EndpointSlices, so providers that send traffic to
//     pods directly (NLB "ip" targets) need fairlead-controller.
func ServiceFor(svc *v1.Service, nsLabels map[string]string, nodes []*v1.Node) (*providers.Service, error) {
	d, err := describe.Service(svc, nsLabels, nil, nil)
	if err != nil {
		return nil, err
	}
	d.Nodes = nil
	for _, n := range nodes {
		d.Nodes = append(d.Nodes, describe.Node(n))
	}
	slices.SortFunc(d.Nodes, func(a, b providers.Node) int { return strings.Compare(a.Name, b.Name) })
	return d, nil
}

// statusFor turns a provider's answer into the Service's load balancer status.
func statusFor(in providers.Ingress, mode v1.LoadBalancerIPMode) *v1.LoadBalancerStatus {
	st := &v1.LoadBalancerStatus{}
	for _, a := range in.IPs {
		m := mode
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: a.String(), IPMode: &m})
	}
	if in.Hostname != "" {
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{Hostname: in.Hostname})
	}
	return st
}

// key is how providers and the allocator name a Service.
func key(svc *v1.Service) string { return describe.Key(svc) }
