package ipam

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fairlead-lb/fairlead/providers/pool"
)

func svc(mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			Ports:          []corev1.ServicePort{{Port: 443}, {Port: 53, Protocol: corev1.ProtocolUDP}},
			Selector:       map[string]string{"app": "web"},
		},
	}
	mod(s)
	return s
}

func TestRequestFor(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		mod      func(*corev1.Service)
		families []pool.Family
		all      bool
		ips      []netip.Addr
		pool     string
		sharing  string
		backend  string
		err      string
	}{
		{name: "dual-stack required", mod: func(*corev1.Service) {}, families: []pool.Family{pool.IPv4, pool.IPv6}, all: true},
		{name: "single stack keeps the primary family", mod: func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
			s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		}, families: []pool.Family{pool.IPv6}, all: true},
		{name: "prefer dual-stack makes the second family best effort", mod: func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
		}, families: []pool.Family{pool.IPv4, pool.IPv6}, all: false},
		{name: "our annotations, ordered by family", mod: func(s *corev1.Service) {
			s.Annotations["fairlead.dev/ips"] = " 2001:db8::7 , 192.0.2.7"
			s.Annotations["fairlead.dev/pool"] = "blue"
			s.Annotations["fairlead.dev/sharing-key"] = "k"
		}, families: []pool.Family{pool.IPv4, pool.IPv6}, all: true, ips: addrs("192.0.2.7", "2001:db8::7"), pool: "blue", sharing: "k"},
		{name: "MetalLB's annotations", mod: func(s *corev1.Service) {
			s.Annotations["metallb.universe.tf/loadBalancerIPs"] = "192.0.2.8,2001:db8::8"
			s.Annotations["metallb.universe.tf/address-pool"] = "green"
			s.Annotations["metallb.universe.tf/allow-shared-ip"] = "shared"
		}, families: []pool.Family{pool.IPv4, pool.IPv6}, all: true, ips: addrs("192.0.2.8", "2001:db8::8"), pool: "green", sharing: "shared"},
		{name: "ours win over MetalLB's", mod: func(s *corev1.Service) {
			s.Annotations["metallb.universe.tf/address-pool"] = "green"
			s.Annotations["fairlead.dev/pool"] = "blue"
		}, families: []pool.Family{pool.IPv4, pool.IPv6}, all: true, pool: "blue"},
		{name: "spec.loadBalancerIP", mod: func(s *corev1.Service) {
			s.Spec.IPFamilies = s.Spec.IPFamilies[:1]
			s.Spec.IPFamilyPolicy = nil
			s.Spec.LoadBalancerIP = "198.51.100.9"
		}, families: []pool.Family{pool.IPv4}, all: true, ips: addrs("198.51.100.9")},
		{name: "local traffic policy shares only with the same backends", mod: func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, families: []pool.Family{pool.IPv4, pool.IPv6}, all: true, backend: "app=web"},
		{name: "garbage address", mod: func(s *corev1.Service) { s.Annotations["fairlead.dev/ips"] = "192.0.2.300" },
			err: `fairlead.dev/ips: "192.0.2.300" is not an IP address`},
		{name: "two of one family", mod: func(s *corev1.Service) { s.Annotations["fairlead.dev/ips"] = "192.0.2.1,192.0.2.2" },
			err: "both IPv4"},
		{name: "family the Service does not have", mod: func(s *corev1.Service) {
			s.Spec.IPFamilies = s.Spec.IPFamilies[:1]
			s.Spec.IPFamilyPolicy = nil
			s.Spec.LoadBalancerIP = "2001:db8::1"
		}, err: "is IPv6 but the Service's ipFamilies"},
		{name: "dual-stack required but one address given", mod: func(s *corev1.Service) { s.Annotations["fairlead.dev/ips"] = "192.0.2.1" },
			err: "requires 2 address families"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := RequestFor(svc(tc.mod), nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Families, tc.families) || r.RequireAll != tc.all || !slices.Equal(r.IPs, tc.ips) ||
				r.Pool != tc.pool || r.Service.SharingKey != tc.sharing || r.Service.BackendKey != tc.backend {
				t.Fatalf("got families %v all %v ips %v pool %q sharing %q backend %q", r.Families, r.RequireAll, r.IPs, r.Pool, r.Service.SharingKey, r.Service.BackendKey)
			}
			want := []pool.Port{{Protocol: "TCP", Port: 443}, {Protocol: "UDP", Port: 53}}
			if !slices.Equal(r.Service.Ports, want) || r.Service.Key != "ns/web" {
				t.Fatalf("ports %v key %q", r.Service.Ports, r.Service.Key)
			}
		})
	}
}

// Two names for one setting that disagree are reported; Fairlead's own annotation wins.
func TestRequestForWarnsOnDisagreement(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*corev1.Service)
		ips  []netip.Addr
		pool string
		want []string // substrings, one per warning; nil: no warning
	}{
		{"ours against metallb.io", func(s *corev1.Service) {
			s.Annotations["fairlead.dev/ips"] = "192.0.2.7, 2001:db8::7"
			s.Annotations["metallb.io/loadBalancerIPs"] = "192.0.2.8,2001:db8::7"
		}, []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}, "",
			[]string{`fairlead.dev/ips "192.0.2.7, 2001:db8::7" and metallb.io/loadBalancerIPs "192.0.2.8,2001:db8::7" disagree; fairlead.dev/ips is used`}},
		{"ours against the old MetalLB prefix", func(s *corev1.Service) {
			s.Annotations["fairlead.dev/ips"] = "192.0.2.7,2001:db8::7"
			s.Annotations["metallb.universe.tf/loadBalancerIPs"] = "garbage"
		}, []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}, "",
			[]string{`metallb.universe.tf/loadBalancerIPs "garbage"`}},
		{"same addresses spelt differently agree", func(s *corev1.Service) {
			s.Annotations["fairlead.dev/ips"] = "192.0.2.7,2001:db8::7"
			s.Annotations["metallb.io/loadBalancerIPs"] = "2001:DB8:0::7 , 192.0.2.7"
		}, []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}, "", nil},
		{"both MetalLB prefixes", func(s *corev1.Service) {
			s.Annotations["metallb.io/loadBalancerIPs"] = "192.0.2.8,2001:db8::8"
			s.Annotations["metallb.universe.tf/loadBalancerIPs"] = "192.0.2.9,2001:db8::9"
		}, []netip.Addr{netip.MustParseAddr("192.0.2.8"), netip.MustParseAddr("2001:db8::8")}, "",
			[]string{"metallb.io/loadBalancerIPs is used"}},
		{"spec.loadBalancerIP is ignored under an annotation", func(s *corev1.Service) {
			s.Spec.IPFamilies = s.Spec.IPFamilies[:1]
			s.Spec.IPFamilyPolicy = nil
			s.Annotations["fairlead.dev/ips"] = "192.0.2.7"
			s.Spec.LoadBalancerIP = "192.0.2.9"
		}, []netip.Addr{netip.MustParseAddr("192.0.2.7")}, "",
			[]string{`spec.loadBalancerIP "192.0.2.9" disagree; fairlead.dev/ips is used`}},
		{"pools and sharing keys too", func(s *corev1.Service) {
			s.Annotations["fairlead.dev/pool"] = "blue"
			s.Annotations["metallb.io/address-pool"] = "green"
			s.Annotations["fairlead.dev/sharing-key"] = "a"
			s.Annotations["metallb.universe.tf/allow-shared-ip"] = "a"
		}, nil, "blue", []string{`fairlead.dev/pool "blue" and metallb.io/address-pool "green" disagree`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := RequestFor(svc(tc.mod), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.IPs, tc.ips) || r.Pool != tc.pool {
				t.Errorf("ips %v pool %q, want %v %q", r.IPs, r.Pool, tc.ips, tc.pool)
			}
			if len(r.Warnings) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", r.Warnings, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(r.Warnings[i], w) {
					t.Errorf("warning %q, want one containing %q", r.Warnings[i], w)
				}
			}
		})
	}
	// A request that fails still carries its warnings.
	r, err := RequestFor(svc(func(s *corev1.Service) {
		s.Annotations["fairlead.dev/ips"] = "192.0.2.300"
		s.Annotations["metallb.io/loadBalancerIPs"] = "192.0.2.8,2001:db8::8"
	}), nil)
	if err == nil || len(r.Warnings) != 1 {
		t.Errorf("err %v, warnings %q", err, r.Warnings)
	}
}
