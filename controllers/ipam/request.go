package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers/pool"
)

// Request is what a Service asks of the allocator.
type Request struct {
	Service pool.Service
	// Families the Service wants, primary first (from spec.ipFamilies).
	Families []pool.Family
	// RequireAll is false for PreferDualStack: the secondary family is best effort.
	RequireAll bool
	// IPs are specific addresses asked for, at most one per family.
	IPs []netip.Addr
	// Pool, when set, is the only pool the Service may use (autoAssign does not matter).
	Pool            string
	NamespaceLabels labels.Set
	ServiceLabels   labels.Set
}

// firstAnnotation returns the value of the first of names set on the Service.
func firstAnnotation(svc *corev1.Service, names ...string) (string, string) {
	for _, n := range names {
		if v, ok := svc.Annotations[n]; ok {
			return n, strings.TrimSpace(v)
		}
	}
	return "", ""
}

// RequestFor translates a Service into a Request. Errors describe bad input on the Service
// (they become an InvalidRequest condition and Event; nothing is allocated or released).
func RequestFor(svc *corev1.Service, nsLabels labels.Set) (Request, error) {
	r := Request{
		Service: pool.Service{
			Key:       svc.Namespace + "/" + svc.Name,
			Namespace: svc.Namespace,
		},
		NamespaceLabels: nsLabels,
		ServiceLabels:   labels.Set(svc.Labels),
		RequireAll:      true,
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			r.Families = append(r.Families, pool.IPv4)
		case corev1.IPv6Protocol:
			r.Families = append(r.Families, pool.IPv6)
		}
	}
	if len(r.Families) == 0 { // not yet defaulted by the apiserver (should not happen)
		r.Families = []pool.Family{pool.IPv4}
	}
	if p := svc.Spec.IPFamilyPolicy; p == nil || *p == corev1.IPFamilyPolicySingleStack {
		r.Families = r.Families[:1]
	} else if *p == corev1.IPFamilyPolicyPreferDualStack {
		r.RequireAll = false
	}

	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		r.Service.Ports = append(r.Service.Ports, pool.Port{Protocol: proto, Port: p.Port})
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		// Services with local traffic policy may share an address only if the same pods (hence
		// the same nodes) answer for both.
		r.Service.BackendKey = labels.Set(svc.Spec.Selector).String()
		if r.Service.BackendKey == "" {
			r.Service.BackendKey = "<no selector>"
		}
	}
	_, r.Service.SharingKey = firstAnnotation(svc, append([]string{v1alpha1.AnnotationSharingKey}, v1alpha1.MetalLBAnnotationSharingKey...)...)
	_, r.Pool = firstAnnotation(svc, append([]string{v1alpha1.AnnotationPool}, v1alpha1.MetalLBAnnotationPool...)...)

	name, ips := firstAnnotation(svc, append([]string{v1alpha1.AnnotationIPs}, v1alpha1.MetalLBAnnotationIPs...)...)
	if name == "" && svc.Spec.LoadBalancerIP != "" {
		name, ips = "spec.loadBalancerIP", svc.Spec.LoadBalancerIP
	}
	if name != "" {
		seen := map[pool.Family]netip.Addr{}
		for _, s := range strings.Split(ips, ",") {
			s = strings.TrimSpace(s)
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return r, fmt.Errorf("%s: %q is not an IP address", name, s)
			}
			a = a.Unmap()
			f := pool.FamilyOf(a)
			if prev, dup := seen[f]; dup {
				return r, fmt.Errorf("%s: %s and %s are both IPv%d; ask for at most one address per family", name, prev, a, f)
			}
			if !slices.Contains(r.Families, f) {
				return r, fmt.Errorf("%s: %s is IPv%d but the Service's ipFamilies are %v", name, a, f, svc.Spec.IPFamilies)
			}
			seen[f] = a
			r.IPs = append(r.IPs, a)
		}
		if r.RequireAll && len(r.IPs) != len(r.Families) {
			return r, fmt.Errorf("%s: the Service requires %d address families (%v) but %d addresses are given", name, len(r.Families), svc.Spec.IPFamilies, len(r.IPs))
		}
		slices.SortFunc(r.IPs, func(a, b netip.Addr) int {
			return slices.Index(r.Families, pool.FamilyOf(a)) - slices.Index(r.Families, pool.FamilyOf(b))
		})
	}
	return r, nil
}
