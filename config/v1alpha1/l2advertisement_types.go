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
	IPPools []string `json:"ipPools,omitempty"`

	// IPPoolSelectors select pools by their labels, in addition to those named in ipPools.
	// +optional
	// +listType=atomic
	IPPoolSelectors []metav1.LabelSelector `json:"ipPoolSelectors,omitempty"`

	// NodeSelectors picks the nodes that may answer: a node is selected when it matches any
	// selector; no selectors means every node.
	// +optional
	// +listType=atomic
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// Interfaces names the node interfaces answers and announcements go out on. Empty means
	// every interface that is up, has a hardware address and is not a loopback.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=15
	Interfaces []string `json:"interfaces,omitempty"`
}

// L2Advertisement selects Service addresses to announce by ARP and NDP.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=l2adv
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.spec.interfaces`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec L2AdvertisementSpec `json:"spec"`
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
	SchemeBuilder.Register(&L2Advertisement{}, &L2AdvertisementList{}, &ServiceAnnouncement{}, &ServiceAnnouncementList{})
}
