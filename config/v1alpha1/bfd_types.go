package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BFDProfileSpec holds the parameters of the BFD sessions (RFC 5880) that BGPPeers naming
// this profile run alongside their BGP sessions. Ranges and defaults are MetalLB's.
type BFDProfileSpec struct {
	// ReceiveInterval is the least interval, in milliseconds, at which this side can take the
	// router's BFD packets.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	// +kubebuilder:default=300
	// +optional
	ReceiveInterval *uint32 `json:"receiveInterval,omitempty"`

	// TransmitInterval is the least interval, in milliseconds, at which this side wants to
	// send BFD packets.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	// +kubebuilder:default=300
	// +optional
	TransmitInterval *uint32 `json:"transmitInterval,omitempty"`

	// DetectMultiplier is how many packets in a row the router may miss before it declares
	// this side down.
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=255
	// +kubebuilder:default=3
	// +optional
	DetectMultiplier *uint32 `json:"detectMultiplier,omitempty"`

	// EchoInterval is the interval of echo packets, in milliseconds. Fairlead does not
	// implement the echo function: the field is accepted for MetalLB compatibility and unused.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	// +kubebuilder:default=50
	// +optional
	EchoInterval *uint32 `json:"echoInterval,omitempty"`

	// EchoMode asks for the echo function. Not implemented: a profile with echoMode true runs
	// control packets only, and a Warning Event on the BGPPeer says so.
	// +optional
	EchoMode bool `json:"echoMode,omitempty"`

	// PassiveMode waits for the router's first BFD packet before sending any.
	// +optional
	PassiveMode bool `json:"passiveMode,omitempty"`

	// MinimumTTL is, for multihop sessions (BGPPeers with ebgpMultihop), the least TTL accepted
	// on incoming BFD packets. Single-hop sessions always require 255 (RFC 5881).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=254
	// +kubebuilder:default=254
	// +optional
	MinimumTTL *uint32 `json:"minimumTtl,omitempty"`
}

// BFDProfile is a set of BFD parameters that BGPPeers refer to by name (spec.bfdProfile).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bfdp
// +kubebuilder:printcolumn:name="Receive",type=integer,JSONPath=`.spec.receiveInterval`
// +kubebuilder:printcolumn:name="Transmit",type=integer,JSONPath=`.spec.transmitInterval`
// +kubebuilder:printcolumn:name="Multiplier",type=integer,JSONPath=`.spec.detectMultiplier`
// +kubebuilder:printcolumn:name="Passive",type=boolean,JSONPath=`.spec.passiveMode`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BFDProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BFDProfileSpec `json:"spec,omitempty"`
}

// BFDProfileList is a list of BFDProfiles.
//
// +kubebuilder:object:root=true
type BFDProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BFDProfile `json:"items"`
}

func init() {
	register(&BFDProfile{}, &BFDProfileList{})
}
