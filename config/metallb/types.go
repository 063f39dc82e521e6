package metallb

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The shapes below are MetalLB's API (metallb.io v1beta1 and v1beta2, MetalLB v0.13 to v0.15),
// written from its API reference: only what a conversion reads. They are decoded strictly, so
// a field MetalLB does not have is an error rather than something silently dropped.

// Group is MetalLB's API group.
const Group = "metallb.io"

// Object is what every MetalLB object has: its kind, version and metadata.
type Object struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// IPAddressPool is metallb.io/v1beta1 IPAddressPool.
type IPAddressPool struct {
	Object `json:",inline"`
	Spec   struct {
		Addresses         []string           `json:"addresses"`
		AutoAssign        *bool              `json:"autoAssign,omitempty"`
		AvoidBuggyIPs     bool               `json:"avoidBuggyIPs,omitempty"`
		ServiceAllocation *ServiceAllocation `json:"serviceAllocation,omitempty"`
	} `json:"spec"`
	Status map[string]any `json:"status,omitempty"`
}

// ServiceAllocation restricts a pool to some Services and orders it among the pools that do.
type ServiceAllocation struct {
	Priority           int                    `json:"priority,omitempty"`
	Namespaces         []string               `json:"namespaces,omitempty"`
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

// L2Advertisement is metallb.io/v1beta1 L2Advertisement.
type L2Advertisement struct {
	Object `json:",inline"`
	Spec   struct {
		IPAddressPools         []string               `json:"ipAddressPools,omitempty"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors,omitempty"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
		Interfaces             []string               `json:"interfaces,omitempty"`
	} `json:"spec,omitempty"`
	Status map[string]any `json:"status,omitempty"`
}

// BGPAdvertisement is metallb.io/v1beta1 BGPAdvertisement.
type BGPAdvertisement struct {
	Object `json:",inline"`
	Spec   struct {
		AggregationLength      *int32                 `json:"aggregationLength,omitempty"`
		AggregationLengthV6    *int32                 `json:"aggregationLengthV6,omitempty"`
		LocalPref              uint32                 `json:"localPref,omitempty"`
		Communities            []string               `json:"communities,omitempty"`
		IPAddressPools         []string               `json:"ipAddressPools,omitempty"`
		IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors,omitempty"`
		NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
		Peers                  []string               `json:"peers,omitempty"`
	} `json:"spec,omitempty"`
	Status map[string]any `json:"status,omitempty"`
}

// BGPPeer is metallb.io/v1beta2 BGPPeer; v1beta1 objects are read into it too (see
// peerV1beta1), with Version saying which one the input was.
type BGPPeer struct {
	Object `json:",inline"`
	Spec   PeerSpec       `json:"spec"`
	Status map[string]any `json:"status,omitempty"`
}

// PeerSpec is v1beta2's BGPPeer spec.
type PeerSpec struct {
	MyASN                  uint32                 `json:"myASN"`
	PeerASN                uint32                 `json:"peerASN,omitempty"`
	DynamicASN             string                 `json:"dynamicASN,omitempty"`
	PeerAddress            string                 `json:"peerAddress,omitempty"`
	Interface              string                 `json:"interface,omitempty"`
	SourceAddress          string                 `json:"sourceAddress,omitempty"`
	PeerPort               uint16                 `json:"peerPort,omitempty"`
	HoldTime               *metav1.Duration       `json:"holdTime,omitempty"`
	KeepaliveTime          *metav1.Duration       `json:"keepaliveTime,omitempty"`
	ConnectTime            *metav1.Duration       `json:"connectTime,omitempty"`
	RouterID               string                 `json:"routerID,omitempty"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	Password               string                 `json:"password,omitempty"`
	PasswordSecret         corev1.SecretReference `json:"passwordSecret,omitempty"`
	BFDProfile             string                 `json:"bfdProfile,omitempty"`
	EnableGracefulRestart  bool                   `json:"enableGracefulRestart,omitempty"`
	EBGPMultiHop           bool                   `json:"ebgpMultiHop,omitempty"`
	VRF                    string                 `json:"vrf,omitempty"`
	DisableMP              bool                   `json:"disableMP,omitempty"`
	DualStackAddressFamily bool                   `json:"dualStackAddressFamily,omitempty"`
}

// peerV1beta1 is v1beta1's BGPPeer: fewer fields, and node selectors of its own type whose
// JSON is a LabelSelector's (matchLabels, matchExpressions of key, operator, values).
type peerV1beta1 struct {
	Object `json:",inline"`
	Spec   struct {
		MyASN         uint32                 `json:"myASN"`
		PeerASN       uint32                 `json:"peerASN"`
		PeerAddress   string                 `json:"peerAddress"`
		SourceAddress string                 `json:"sourceAddress,omitempty"`
		PeerPort      uint16                 `json:"peerPort,omitempty"`
		HoldTime      metav1.Duration        `json:"holdTime,omitempty"`
		KeepaliveTime metav1.Duration        `json:"keepaliveTime,omitempty"`
		RouterID      string                 `json:"routerID,omitempty"`
		NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
		Password      string                 `json:"password,omitempty"`
		BFDProfile    string                 `json:"bfdProfile,omitempty"`
		EBGPMultiHop  bool                   `json:"ebgpMultiHop,omitempty"`
	} `json:"spec"`
	Status map[string]any `json:"status,omitempty"`
}

// Community is metallb.io/v1beta1 Community: names for community values.
type Community struct {
	Object `json:",inline"`
	Spec   struct {
		Communities []struct {
			Name  string `json:"name,omitempty"`
			Value string `json:"value,omitempty"`
		} `json:"communities,omitempty"`
	} `json:"spec,omitempty"`
	Status map[string]any `json:"status,omitempty"`
}

// BFDProfile is metallb.io/v1beta1 BFDProfile.
type BFDProfile struct {
	Object `json:",inline"`
	Spec   struct {
		ReceiveInterval  *uint32 `json:"receiveInterval,omitempty"`
		TransmitInterval *uint32 `json:"transmitInterval,omitempty"`
		DetectMultiplier *uint32 `json:"detectMultiplier,omitempty"`
		EchoInterval     *uint32 `json:"echoInterval,omitempty"`
		EchoMode         *bool   `json:"echoMode,omitempty"`
		PassiveMode      *bool   `json:"passiveMode,omitempty"`
		MinimumTTL       *uint32 `json:"minimumTtl,omitempty"`
	} `json:"spec,omitempty"`
	Status map[string]any `json:"status,omitempty"`
}
