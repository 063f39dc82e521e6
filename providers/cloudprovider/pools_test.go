package cloudprovider

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	servicehelpers "k8s.io/cloud-provider/service/helpers"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/providers/ipam"
)

// fairlead-ccm restores exactly the Services the upstream service controller balances and has
// asked it for: no class, its cleanup finalizer on. Whatever pool such a Service names, its
// addresses are the pools' (the CCM hands out no Elastic IPs).
func TestClaim(t *testing.T) {
	svc := func(class *string, finalizer bool, typ v1.ServiceType) *v1.Service {
		s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
			Spec: v1.ServiceSpec{Type: typ, LoadBalancerClass: class}}
		if finalizer {
			s.Finalizers = []string{servicehelpers.LoadBalancerCleanupFinalizer}
		}
		return s
	}
	for _, tc := range []struct {
		name string
		svc  *v1.Service
		req  ipam.Request
		want ipam.Claim
	}{
		{"balanced", svc(nil, true, v1.ServiceTypeLoadBalancer), ipam.Request{}, ipam.Wrote},
		{"naming any pool", svc(nil, true, v1.ServiceTypeLoadBalancer), ipam.Request{Pool: "public-eips"}, ipam.Wrote},
		{"not asked yet", svc(nil, false, v1.ServiceTypeLoadBalancer), ipam.Request{}, ipam.NotHeld},
		{"another class", svc(ptr.To("fairlead.dev/lb"), true, v1.ServiceTypeLoadBalancer), ipam.Request{}, ipam.NotHeld},
		{"no longer a load balancer", svc(nil, true, v1.ServiceTypeClusterIP), ipam.Request{}, ipam.NotHeld},
	} {
		if got := claim(tc.svc, tc.req); got != tc.want {
			t.Errorf("%s: claim %d, want %d", tc.name, got, tc.want)
		}
	}
}
