package v1alpha1

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The loadBalancerClass Fairlead answers to. Services of another class are never touched.
const LoadBalancerClass = "fairlead.dev/lb"

// Service annotations. Fairlead's own names come first; MetalLB's are accepted too, so that a
// MetalLB user migrates without editing Services.
const (
	// AnnotationIPs asks for specific addresses: a comma-separated list, at most one per family.
	AnnotationIPs = "fairlead.dev/ips"
	// AnnotationPool restricts allocation to one IPPool (which may have autoAssign off).
	AnnotationPool = "fairlead.dev/pool"
	// AnnotationSharingKey lets Services of one namespace share an address when their ports differ.
	AnnotationSharingKey = "fairlead.dev/sharing-key"
	// AnnotationAllocatedFromPool is written by the controller: the pool the Service's addresses
	// were handed out from (one name, or one per status.loadBalancer.ingress entry when they
	// differ). It outlives a pool that shrinks or goes, so speakers keep announcing the
	// addresses as that pool's, and a restarted controller keeps counting them there.
	AnnotationAllocatedFromPool = "fairlead.dev/allocated-from-pool"
)

// Announced says whether the speakers announce an ingress address: every one but those whose
// ipMode is Proxy, which a load balancer in front of the cluster answers.
func Announced(ing corev1.LoadBalancerIngress) bool {
	return ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeProxy
}

// AllocatedFromPool is the pool the annotation names for the i-th of n ingress addresses, "" if
// none. A Service whose addresses MetalLB handed out (taken over, not yet rewritten by
// Fairlead) says it in MetalLB's annotation: pool names carry over unchanged.
func AllocatedFromPool(annotations map[string]string, i, n int) string {
	v := annotations[AnnotationAllocatedFromPool]
	if v == "" {
		v = annotations[MetalLBAnnotationAllocatedFromPool]
	}
	if v == "" {
		return ""
	}
	names := strings.Split(v, ",")
	switch {
	case len(names) == 1:
		return strings.TrimSpace(names[0])
	case len(names) == n && i < n:
		return strings.TrimSpace(names[i])
	}
	return ""
}

// MetalLBAnnotationAllocatedFromPool is MetalLB's record of the pool a Service's address came
// from. The controller writes it too when asked (--metallb-pool-annotation), for dashboards
// and tools keyed on it.
const MetalLBAnnotationAllocatedFromPool = "metallb.io/ip-allocated-from-pool"

// MetalLB's annotation names, old (metallb.universe.tf) and current (metallb.io) prefixes.
var (
	MetalLBAnnotationIPs        = []string{"metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"}
	MetalLBAnnotationPool       = []string{"metallb.io/address-pool", "metallb.universe.tf/address-pool"}
	MetalLBAnnotationSharingKey = []string{"metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip"}
)

const (
	// ServiceFinalizer is held by every Service that holds addresses, so that they are released
	// (and cloud resources deleted) before the Service disappears.
	ServiceFinalizer = "fairlead.dev/release"
	// PoolFinalizer keeps an IPPool until no Service holds one of its addresses: deleting a pool
	// in use never strands or silently reassigns an address.
	PoolFinalizer = "fairlead.dev/in-use"

	// ConditionIPAllocated is the Service condition saying whether Fairlead gave it its addresses.
	ConditionIPAllocated = "fairlead.dev/IPAllocated"
	// ConditionReady is the IPPool condition: valid and serving.
	ConditionReady = "Ready"
)
