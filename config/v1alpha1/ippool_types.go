package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPPoolSpec says which addresses a pool hands out and to whom.
//
// +kubebuilder:validation:XValidation:rule="has(self.addresses) != has(self.aws)",message="set exactly one of addresses and aws"
type IPPoolSpec struct {
	// Addresses are CIDRs (198.51.100.0/24, 2001:db8::/64) or inclusive ranges
	// (198.51.100.10-198.51.100.20); IPv4 and IPv6 may be mixed in one pool. Special-purpose
	// addresses (0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4, ::, ::1,
	// ::ffff:0:0/96, fe80::/10, ff00::/8) may not be included: the apiserver refuses CIDRs and
	// range ends inside them, the controller a range spanning one.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=90
	// +kubebuilder:validation:items:XValidation:rule="self.contains('-') ? (self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim())) : isCIDR(self)",message="must be a CIDR (198.51.100.0/24) or a range of two addresses (198.51.100.10-198.51.100.20)"
	// +kubebuilder:validation:items:XValidation:rule="!(self.contains('-') ? (self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) && ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4', '::/128', '::1/128', 'fe80::/10', 'ff00::/8'].exists(b, cidr(b).containsIP(self.split('-')[0].trim()) || cidr(b).containsIP(self.split('-')[1].trim()))) : (isCIDR(self) && ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '240.0.0.0/4', '::/128', '::1/128', 'fe80::/10', 'ff00::/8'].exists(b, cidr(b).containsCIDR(self) || cidr(self).containsCIDR(b))))",messageExpression="self + ' includes special-purpose addresses, which are never handed out: 0.0.0.0/8 (this network), 127.0.0.0/8 (loopback), 169.254.0.0/16 (link-local), 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved, broadcast), ::/128 (unspecified), ::1/128 (loopback), fe80::/10 (link-local) and ff00::/8 (multicast) may not be in a pool'"
	// +listType=atomic
	// +optional
	Addresses []string `json:"addresses,omitempty"`

	// AWS takes the pool's addresses from AWS instead (Elastic IPs). Such a pool serves only
	// the Services that name it (annotation fairlead.dev/pool); autoAssign does not apply.
	// +optional
	AWS *AWSPool `json:"aws,omitempty"`

	// AutoAssign: when false, the pool is used only by Services that name it
	// (fairlead.dev/pool) or ask for one of its addresses.
	// +kubebuilder:default=true
	// +optional
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs: never hand out IPv4 addresses ending in .0 or .255, which some old
	// clients and middleboxes mistake for network or broadcast addresses.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// ShareAcrossNamespaces lets Services of different namespaces share one of the pool's
	// addresses when their sharing keys match (and their ports and, for externalTrafficPolicy
	// Local, their pods allow it), as MetalLB does. Off (the default), a sharing key belongs
	// to its namespace: no namespace attaches to another's address by using the same key.
	// +optional
	ShareAcrossNamespaces bool `json:"shareAcrossNamespaces,omitempty"`

	// AllocateTo restricts which Services may get addresses from this pool.
	// +optional
	AllocateTo *AllocateTo `json:"allocateTo,omitempty"`

	// Priority orders the pools a Service may use: lower first. Pools without a priority come
	// after those with one; ties are broken by name.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Priority *int32 `json:"priority,omitempty"`

	// IPMode is how the pool's addresses reach the cluster, written into each Service's
	// status.loadBalancer.ingress[].ipMode. VIP (the default): the speakers announce them and
	// every node's proxy takes their traffic, also traffic from inside the cluster. Proxy: a
	// load balancer in front of the cluster answers them and forwards to the nodes (to
	// NodePorts, often with the PROXY protocol), so the speakers never announce them and node
	// proxies (Fairlead's, kube-proxy) send in-cluster traffic for them out to that load
	// balancer instead of short-cutting it (KEP-1860).
	// +kubebuilder:validation:Enum=VIP;Proxy
	// +kubebuilder:default=VIP
	// +optional
	IPMode corev1.LoadBalancerIPMode `json:"ipMode,omitempty"`
}

// AllocateTo restricts a pool to some Services. A Service may use the pool when its namespace
// is listed in Namespaces or matches one of NamespaceSelectors (no namespace constraint when
// both are empty), and it matches one of ServiceSelectors (none: every Service).
type AllocateTo struct {
	// +optional
	// +listType=set
	Namespaces []string `json:"namespaces,omitempty"`
	// +optional
	// +listType=atomic
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	// +optional
	// +listType=atomic
	ServiceSelectors []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

// FamilyStatus counts one family's addresses. Total and Free are decimal strings because an
// IPv6 pool easily holds more than 2^63 addresses.
type FamilyStatus struct {
	Total string `json:"total"`
	Used  int64  `json:"used"`
	Free  string `json:"free"`
}

// IPPoolStatus reports the pool's capacity and health.
type IPPoolStatus struct {
	// +optional
	IPv4 *FamilyStatus `json:"ipv4,omitempty"`
	// +optional
	IPv6 *FamilyStatus `json:"ipv6,omitempty"`
	// Strays counts addresses handed out from this pool that Services keep although the pool
	// no longer covers them (its addresses changed) or no longer admits those Services
	// (allocateTo changed). They stay announced and are never handed to another Service.
	// +optional
	Strays int64 `json:"strays,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IPPool is a set of addresses Fairlead hands out to LoadBalancer Services.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ipp
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="IPv4 Used",type=integer,JSONPath=`.status.ipv4.used`
// +kubebuilder:printcolumn:name="IPv4 Free",type=string,JSONPath=`.status.ipv4.free`
// +kubebuilder:printcolumn:name="IPv6 Used",type=integer,JSONPath=`.status.ipv6.used`
// +kubebuilder:printcolumn:name="IPv6 Free",type=string,JSONPath=`.status.ipv6.free`
// +kubebuilder:printcolumn:name="Strays",type=integer,JSONPath=`.status.strays`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
//
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}

func init() {
	register(&IPPool{}, &IPPoolList{})
}

// AutoAssigns reports whether the pool serves Services that did not name it.
func (p *IPPool) AutoAssigns() bool {
	return p.Spec.AutoAssign == nil || *p.Spec.AutoAssign
}

// IPMode is the pool's ipMode, VIP when unset.
func (p *IPPool) IPMode() corev1.LoadBalancerIPMode {
	if p.Spec.IPMode == "" {
		return corev1.LoadBalancerIPModeVIP
	}
	return p.Spec.IPMode
}
