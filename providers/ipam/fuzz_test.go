package ipam

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// The address, pool and sharing annotations (Fairlead's and MetalLB's) and
// spec.loadBalancerIP are user input: whatever they hold, RequestFor answers without
// panicking, the same way twice, and a Request it accepts asks for valid addresses, at most
// one per family and only of families the Service has.
func FuzzRequestFor(f *testing.F) {
	f.Add("192.0.2.7, 2001:db8::7", "green", "key", "192.0.2.8,2001:db8::7", "", "192.0.2.7")
	f.Add("garbage", "", "", "", "metallb-pool", "")
	f.Add("192.0.2.7,192.0.2.8", "a b", "", "2001:DB8:0::7 , 192.0.2.7", "", "::ffff:192.0.2.1")
	f.Add("", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, ips, pool, share, mlIPs, mlPool, lbIP string) {
		s := svc(func(s *corev1.Service) {
			for k, v := range map[string]string{v1alpha1.AnnotationIPs: ips, v1alpha1.AnnotationPool: pool,
				v1alpha1.AnnotationSharingKey: share, v1alpha1.MetalLBAnnotationIPs[0]: mlIPs, v1alpha1.MetalLBAnnotationPool[1]: mlPool} {
				if v != "" {
					s.Annotations[k] = v
				}
			}
			s.Spec.LoadBalancerIP = lbIP
		})
		r1, err1 := RequestFor(s, nil)
		r2, err2 := RequestFor(s, nil)
		if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) || !slices.Equal(r1.IPs, r2.IPs) {
			t.Fatalf("not deterministic: %v %v / %v %v", r1.IPs, err1, r2.IPs, err2)
		}
		if err1 != nil {
			return
		}
		v4, v6 := 0, 0
		for _, a := range r1.IPs {
			switch {
			case !a.IsValid():
				t.Fatalf("invalid address in %v", r1.IPs)
			case a.Is4():
				v4++
			default:
				v6++
			}
		}
		if v4 > 1 || v6 > 1 {
			t.Fatalf("more than one address per family: %v", r1.IPs)
		}
	})
}
