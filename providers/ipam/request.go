package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
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
	// Warnings describe input that is used but suspicious: a Fairlead annotation and a MetalLB
	// one (or spec.loadBalancerIP) that disagree. The first source in the order of
	// AnnotationIPs, MetalLB's names, spec.loadBalancerIP wins; the caller reports the rest.
	Warnings []string
}

// ReasonConflictingAnnotations is the Event reason for a Request's Warnings.
const ReasonConflictingAnnotations = "ConflictingAnnotations"

// firstAnnotation returns the name and value of the first of names set in annotations.
func firstAnnotation(annotations map[string]string, names ...string) (string, string) {
	for _, n := range names {
		if v, ok := annotations[n]; ok {
			return n, strings.TrimSpace(v)
		}
	}
	return "", ""
}

// PoolName is the pool a Service names (Fairlead's annotation, else MetalLB's), "" if none.
func PoolName(annotations map[string]string) string {
	_, name := firstAnnotation(annotations, append([]string{v1alpha1.AnnotationPool}, v1alpha1.MetalLBAnnotationPool...)...)
	return name
}

// RequestFor translates a Service into a Request. Errors describe bad input on the Service
// (they become an InvalidRequest condition and Event; nothing is allocated or released).
func RequestFor(svc *corev1.Service, nsLabels labels.Set) (Request, error) {
	return RequestOf(describe.Spec(svc, nsLabels))
}

// RequestOf translates a Service's description into a Request; see RequestFor.
func RequestOf(d *providers.Service) (Request, error) {
	r := Request{
		Service: pool.Service{
			Key:       d.Key(),
			Namespace: d.Namespace,
		},
		NamespaceLabels: labels.Set(d.NamespaceLabels),
		ServiceLabels:   labels.Set(d.Labels),
		RequireAll:      !d.PreferDualStack,
	}
	for _, f := range d.Families {
		switch corev1.IPFamily(f) {
		case corev1.IPv4Protocol:
			r.Families = append(r.Families, pool.IPv4)
		case corev1.IPv6Protocol:
			r.Families = append(r.Families, pool.IPv6)
		}
	}
	if len(r.Families) == 0 { // not yet defaulted by the apiserver (should not happen)
		r.Families = []pool.Family{pool.IPv4}
	}
	for _, p := range d.Ports {
		r.Service.Ports = append(r.Service.Ports, pool.Port{Protocol: p.Protocol, Port: p.Port})
	}
	if d.LocalTraffic {
		// Services with local traffic policy may share an address only if the same pods (hence
		// the same nodes) answer for both.
		r.Service.BackendKey = labels.Set(d.Selector).String()
		if r.Service.BackendKey == "" {
			r.Service.BackendKey = "<no selector>"
		}
	}
	_, r.Service.SharingKey = firstAnnotation(d.Annotations, append([]string{v1alpha1.AnnotationSharingKey}, v1alpha1.MetalLBAnnotationSharingKey...)...)
	r.Pool = PoolName(d.Annotations)
	r.Warnings = disagreements(d.Annotations, d.LoadBalancerIP)

	name, ips := firstAnnotation(d.Annotations, append([]string{v1alpha1.AnnotationIPs}, v1alpha1.MetalLBAnnotationIPs...)...)
	if name == "" && d.LoadBalancerIP != "" {
		name, ips = "spec.loadBalancerIP", d.LoadBalancerIP
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
				return r, fmt.Errorf("%s: %s is IPv%d but the Service's ipFamilies are %v", name, a, f, d.Families)
			}
			seen[f] = a
			r.IPs = append(r.IPs, a)
		}
		if r.RequireAll && len(r.IPs) != len(r.Families) {
			return r, fmt.Errorf("%s: the Service requires %d address families (%v) but %d addresses are given", name, len(r.Families), d.Families, len(r.IPs))
		}
		slices.SortFunc(r.IPs, func(a, b netip.Addr) int {
			return slices.Index(r.Families, pool.FamilyOf(a)) - slices.Index(r.Families, pool.FamilyOf(b))
		})
	}
	return r, nil
}

// disagreements lists the places where a Service says two different things about one setting
// under different names (a migration from MetalLB that left an old annotation behind). The
// first name wins, as firstAnnotation reads them; saying so beats silently ignoring the other.
func disagreements(annotations map[string]string, loadBalancerIP string) []string {
	var out []string
	check := func(names []string, values map[string]string, same func(a, b string) bool) {
		winner := ""
		for _, n := range names {
			v, ok := values[n]
			if !ok {
				continue
			}
			if winner == "" {
				winner = n
				continue
			}
			if !same(values[winner], v) {
				out = append(out, fmt.Sprintf("%s %q and %s %q disagree; %s is used", winner, values[winner], n, v, winner))
			}
		}
	}
	values := map[string]string{}
	for k, v := range annotations {
		values[k] = strings.TrimSpace(v)
	}
	ipNames := append([]string{v1alpha1.AnnotationIPs}, v1alpha1.MetalLBAnnotationIPs...)
	if loadBalancerIP != "" {
		values["spec.loadBalancerIP"] = loadBalancerIP
		ipNames = append(ipNames, "spec.loadBalancerIP")
	}
	check(ipNames, values, sameAddresses)
	equal := func(a, b string) bool { return a == b }
	check(append([]string{v1alpha1.AnnotationPool}, v1alpha1.MetalLBAnnotationPool...), values, equal)
	check(append([]string{v1alpha1.AnnotationSharingKey}, v1alpha1.MetalLBAnnotationSharingKey...), values, equal)
	return out
}

// sameAddresses compares two comma-separated address lists as sets, so that order, spaces and
// spelling (2001:db8::1 or 2001:DB8:0::1) do not count as disagreement. Lists that do not
// parse are compared as text.
func sameAddresses(a, b string) bool {
	parse := func(s string) ([]netip.Addr, bool) {
		var out []netip.Addr
		for _, f := range strings.Split(s, ",") {
			x, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil {
				return nil, false
			}
			out = append(out, x.Unmap())
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return slices.Compact(out), true
	}
	as, okA := parse(a)
	bs, okB := parse(b)
	if !okA || !okB {
		return a == b
	}
	return slices.Equal(as, bs)
}
