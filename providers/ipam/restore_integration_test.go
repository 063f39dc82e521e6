package ipam_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/ipam"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

// At startup the state takes over the addresses other implementations wrote for Services of
// Fairlead's class when they are in a pool or name their pool; not those of other classes,
// nor foreign addresses of no pool.
func TestLoadFromAPITakesOverForeignStatus(t *testing.T) {
	env := controlplane.StartForTest(t, controlplane.Options{})
	ctx := context.Background()
	c := env.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.0/28"}}}))
	svc := func(name, ip string, class *string, ann map[string]string, finalizer bool) {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: ann},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class, AllocateLoadBalancerNodePorts: ptr.To(false),
				Ports: []corev1.ServicePort{{Port: 80}}}}
		if finalizer {
			s.Finalizers = []string{v1alpha1.ServiceFinalizer}
		}
		must(c.Create(ctx, s))
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		must(c.Status().Update(ctx, s))
		t.Cleanup(func() {
			s.Finalizers = nil
			_ = c.Update(context.Background(), s)
		})
	}
	svc("metallb", "192.0.2.3", nil, nil, false)
	svc("recorded", "198.51.100.7", nil, map[string]string{v1alpha1.MetalLBAnnotationAllocatedFromPool: "old"}, false)
	svc("cloud", "203.0.113.9", nil, nil, false)
	svc("other-class", "192.0.2.4", ptr.To("example.com/lb"), nil, false)
	svc("ours", "198.51.100.8", nil, nil, true) // outside every pool, but Fairlead's own record

	// The controller's rule (controllers/service's Claim), for a class-less default.
	claim := func(s *corev1.Service, _ ipam.Request) ipam.Claim {
		switch {
		case slices.Contains(s.Finalizers, v1alpha1.ServiceFinalizer):
			return ipam.Wrote
		case s.Spec.LoadBalancerClass == nil:
			return ipam.Adopted
		}
		return ipam.NotHeld
	}
	st := ipam.New(ipam.Hooks{Claim: claim})
	must(st.LoadFromAPI(ctx, c))
	for name, want := range map[string]string{"metallb": "192.0.2.3", "recorded": "198.51.100.7", "ours": "198.51.100.8", "cloud": "", "other-class": ""} {
		var got []string
		for _, a := range st.Held("default/" + name) {
			got = append(got, a.String())
		}
		if want == "" && len(got) != 0 || want != "" && !slices.Equal(got, []string{want}) {
			t.Errorf("%s holds %v, want %q", name, got, want)
		}
	}
	// What was taken over is nobody else's: the pool hands out the next free address.
	r, err := ipam.RequestFor(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "new"},
		Spec: corev1.ServiceSpec{IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, Ports: []corev1.ServicePort{{Port: 80}}}}, nil)
	must(err)
	for range 4 {
		r.Service.Key += "x"
		ips, err := st.Ensure(r)
		must(err)
		if slices.Contains(ips, netip.MustParseAddr("192.0.2.3")) {
			t.Fatalf("%s got the address taken over from MetalLB", r.Service.Key)
		}
	}
}
