package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// L2AdvertisementSpec says which Service addresses are announced on the local network (ARP for
// IPv4, NDP for IPv6), from which nodes and on which interfaces. An address is announced when
// its pool is selected by at least one L2Advertisement; one node answers for it at a time.
type L2AdvertisementSpec struct {
	// IPPools names the pools whose addresses are announced. With neither ipPools nor
	// ipPoolSelectors, every pool is.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	IPPools []string `json:"ipPools,omitempty"`

	// IPPoolSelectors select pools by their labels, in addition to those named in ipPools.
	// (Selectors are checked by the controller, which reports mistakes in status: CEL rules
	// over them exceed the apiserver's cost budget.)
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	IPPoolSelectors []metav1.LabelSelector `json:"ipPoolSelectors,omitempty"`

	// NodeSelectors picks the nodes that may answer: a node is selected when it matches any
	// selector; no selectors means every node.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// Interfaces names the node interfaces answers and announcements go out on. Empty means
	// every interface that is up, has a hardware address and is not a loopback.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=15
	// +kubebuilder:validation:items:XValidation:rule="!self.matches(r'[/:\\s]') && self != '.' && self != '..'",message="must be a Linux interface name: at most 15 characters, no '/', ':' or spaces, not '.' or '..'"
	Interfaces []string `json:"interfaces,omitempty"`
}

// L2AdvertisementStatus is written by the controller: whether the advertisement is usable and
// whether the pools it names exist.
type L2AdvertisementStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted (the spec is valid; False means speakers ignore the advertisement)
	// and ResolvedRefs (every pool named in ipPools exists, and at least one pool is
	// selected).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// L2Advertisement selects Service addresses to announce by ARP and NDP.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=l2adv
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.spec.interfaces`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Resolved",type=string,JSONPath=`.status.conditions[?(@.type=="ResolvedRefs")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.status=="False")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec L2AdvertisementSpec `json:"spec"`
	// +optional
	Status L2AdvertisementStatus `json:"status,omitempty"`
}

// L2AdvertisementList is a list of L2Advertisements.
//
// +kubebuilder:object:root=true
type L2AdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Advertisement `json:"items"`
}

// Announcement protocols reported in ServiceAnnouncements.
const (
	ProtocolARP = "ARP"
	ProtocolNDP = "NDP"
	ProtocolBGP = "BGP"
)

// Announcement is one address announced by one node.
type Announcement struct {
	// IP is the external address.
	IP string `json:"ip"`
	// Node is the node announcing it.
	Node string `json:"node"`
	// Protocol is ARP, NDP or BGP.
	// +kubebuilder:validation:Enum=ARP;NDP;BGP
	Protocol string `json:"protocol"`
	// Interfaces are the node's interfaces the address is answered on (layer 2).
	// +optional
	// +listType=atomic
	Interfaces []string `json:"interfaces,omitempty"`
	// Since is when this node started announcing the address.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// ServiceAnnouncementStatus lists where a Service's addresses are announced.
type ServiceAnnouncementStatus struct {
	// Announcements has one entry per address, node and protocol. Layer 2 addresses have one
	// node at a time; BGP addresses one entry per advertising node.
	// +optional
	// +listType=map
	// +listMapKey=ip
	// +listMapKey=node
	// +listMapKey=protocol
	Announcements []Announcement `json:"announcements,omitempty"`
}

// ServiceAnnouncement answers "where is my IP?" for the Service of the same namespace and
// name. The speakers write it; it is owned by the Service and goes away with it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=svcann
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.status.announcements[*].ip`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.announcements[*].node`
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.status.announcements[*].protocol`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceAnnouncement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status ServiceAnnouncementStatus `json:"status,omitempty"`
}

// ServiceAnnouncementList is a list of ServiceAnnouncements.
//
// +kubebuilder:object:root=true
type ServiceAnnouncementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceAnnouncement `json:"items"`
}

func init() {
	register(&L2Advertisement{}, &L2AdvertisementList{}, &ServiceAnnouncement{}, &ServiceAnnouncementList{})
}
