package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPPeerSpec describes one BGP session every selected node opens to a router.
//
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !has(self.holdTime) || duration(self.keepaliveTime) < duration(self.holdTime)",message="keepaliveTime must be shorter than holdTime"
// +kubebuilder:validation:XValidation:rule="has(self.peerASN) != has(self.dynamicASN)",message="exactly one of peerASN and dynamicASN must be set"
type BGPPeerSpec struct {
	// PeerAddress is the router's address, IPv4 or IPv6. The session carries IPv4 and IPv6
	// prefixes whatever its own family (MP-BGP).
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	PeerAddress string `json:"peerAddress"`

	// ASNs and LOCAL_PREF are uint32 but declared int64 with a maximum: controller-gen's
	// int32 for a uint32 makes the apiserver refuse values above 2147483647, such as RFC
	// 6996's private 4-byte ASNs 4200000000-4294967294.

	// PeerASN is the router's autonomous system number, 4-byte ASNs included (RFC 6793).
	// Exactly one of peerASN and dynamicASN is set.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:Format=int64
	// +optional
	PeerASN uint32 `json:"peerASN,omitempty"`

	// DynamicASN accepts whatever ASN the router announces in its OPEN, as long as the session
	// is of this kind: "internal" (the router's ASN equals localASN) or "external" (it
	// differs). A router of the wrong kind is refused and the session's lastError says so.
	// +kubebuilder:validation:Enum=internal;external
	// +optional
	DynamicASN string `json:"dynamicASN,omitempty"`

	// LocalASN is the nodes' autonomous system number (4-byte ASNs included): equal to
	// PeerASN makes the session iBGP, different makes it eBGP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:Format=int64
	LocalASN uint32 `json:"localASN"`

	// RouterID is the BGP identifier the nodes announce (default: the node's IPv4 address, or
	// a value derived from its name on IPv6-only nodes). Only sensible with a nodeSelector
	// naming one node, or with routers that accept one identifier from several neighbors.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4 && !ip(self).isUnspecified()",message="must be a non-zero IPv4 address"
	// +optional
	RouterID string `json:"routerID,omitempty"`

	// Port is the router's TCP port.
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// HoldTime is how long the session survives without a message from the other side
	// (0 or at least 3s; default 90s). It also bounds how long a crashed node's routes linger
	// at the router.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration('0s') || duration(self) >= duration('3s')",message="must be 0 or at least 3s"
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`

	// KeepaliveTime is the interval between keepalives (default: a third of the hold time).
	// +optional
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`

	// ConnectTime is how long the node waits between attempts to connect to the router (BGP's
	// ConnectRetry timer; default 5s, 1s to 65535s).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('65535s')",message="must be 1s to 65535s"
	// +optional
	ConnectTime *metav1.Duration `json:"connectTime,omitempty"`

	// VRF names a VRF device on the node: the session's socket is bound to it, so the router is
	// reached through the VRF's routing table (Linux SO_BINDTODEVICE). Empty: the default
	// table. A node without the device reports the session Invalid.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="self.matches('^[^/: \\t\\n]+$') && self != '.' && self != '..'",message="must be a network interface name"
	// +optional
	VRF string `json:"vrf,omitempty"`

	// DisableMP keeps the address families apart (no multiprotocol BGP across them): an IPv4
	// session carries only IPv4 prefixes and an IPv6 session only IPv6 ones, so a dual-stack
	// router needs one BGPPeer per family. Default: one session carries both.
	// +optional
	DisableMP bool `json:"disableMP,omitempty"`

	// EBGPMultihop is the TTL of the session's packets, for eBGP peers more than one hop away
	// (unset: 1, the peer must be directly connected).
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=255
	// +optional
	EBGPMultihop *int32 `json:"ebgpMultihop,omitempty"`

	// SourceAddress is the local address of the session. It must be on the node; the default is
	// the address the kernel picks towards the peer. Only sensible with a nodeSelector naming
	// one node.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	// +optional
	SourceAddress string `json:"sourceAddress,omitempty"`

	// PasswordSecret names a Secret holding the TCP MD5 password (RFC 2385) of the session, in
	// the speaker's namespace unless it names another one that the chart lets the speakers read
	// (speaker.bgpSecretNamespaces).
	// +optional
	PasswordSecret *SecretKeyRef `json:"passwordSecret,omitempty"`

	// GracefulRestart asks the router to keep the node's routes while its speaker restarts.
	// +optional
	GracefulRestart *GracefulRestart `json:"gracefulRestart,omitempty"`

	// NodeSelectors picks the nodes that open this session: a node is selected when it matches
	// any selector; no selectors means every node.
	// +optional
	// +listType=atomic
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`

	// BFDProfile names a BFDProfile: the node runs a BFD session with the router (single hop,
	// or multihop with ebgpMultihop), holds BGP down until it is Up, and resets BGP the moment
	// it goes down.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	BFDProfile string `json:"bfdProfile,omitempty"`
}

// SecretKeyRef names one key of a Secret.
type SecretKeyRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Secret; empty: the speaker's own namespace. Any other must be granted to
	// the speakers explicitly (chart value speaker.bgpSecretNamespaces), else the session is
	// Invalid.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Key within the Secret's data.
	// +kubebuilder:default=password
	// +optional
	Key string `json:"key,omitempty"`
}

// GracefulRestart is RFC 4724 graceful restart for the node's side of a session.
type GracefulRestart struct {
	Enabled bool `json:"enabled"`
	// RestartTime is how long the router keeps the node's routes after the session drops
	// (default 120s, at most 4095s).
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('4095s')",message="must be at most 4095s"
	// +optional
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// BGPPeerStatus: the speakers write one entry each in nodes (their own field manager); the
// controller writes the conditions and the summary fields from them.
type BGPPeerStatus struct {
	// +optional
	// +listType=map
	// +listMapKey=node
	Nodes []BGPSessionStatus `json:"nodes,omitempty"`

	// Conditions: Accepted (the spec is valid and its references resolve) and Established
	// (every node that runs the session has it Established).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Sessions is "established/total" over the nodes that run the session, e.g. "2/3".
	// +optional
	Sessions string `json:"sessions,omitempty"`

	// PrefixesSent is the sum of the nodes' prefixesSent.
	// +optional
	PrefixesSent int32 `json:"prefixesSent,omitempty"`

	// EstablishedSince is when the last of the nodes' sessions came up, while all are up: its
	// age is the peer's uptime.
	// +optional
	EstablishedSince *metav1.Time `json:"establishedSince,omitempty"`
}

// BGPSessionStatus is one node's view of its session with the peer.
type BGPSessionStatus struct {
	Node string `json:"node"`
	// State is the BGP FSM state: Idle, Connect, Active, OpenSent, OpenConfirm, Established,
	// or Invalid when the node cannot run the session (bad Secret, no address).
	State string `json:"state"`
	// LastError says why the session last went down or cannot come up.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// PrefixesSent counts the prefixes the node advertises on the session.
	PrefixesSent int32 `json:"prefixesSent"`
	// LastTransitionTime is when State last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// BGPPeer is a router the speakers open BGP sessions to.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpp
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="Local ASN",type=integer,JSONPath=`.spec.localASN`
// +kubebuilder:printcolumn:name="Sessions",type=string,JSONPath=`.status.sessions`
// +kubebuilder:printcolumn:name="Established",type=string,JSONPath=`.status.conditions[?(@.type=="Established")].status`
// +kubebuilder:printcolumn:name="Prefixes",type=integer,JSONPath=`.status.prefixesSent`,priority=1
// +kubebuilder:printcolumn:name="Uptime",type=date,JSONPath=`.status.establishedSince`,priority=1
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}

// BGPAdvertisementSpec says which Service addresses are advertised, to whom, from where and
// with which attributes. An address is advertised when its pool is selected; when several
// advertisements select it for one peer, their communities are merged and the highest
// local preference wins.
type BGPAdvertisementSpec struct {
	// IPPools names the pools whose addresses are advertised. With neither ipPools nor
	// ipPoolSelectors every pool is.
	// +optional
	// +listType=set
	IPPools []string `json:"ipPools,omitempty"`

	// IPPoolSelectors select pools by their labels, in addition to those named in ipPools.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	IPPoolSelectors []metav1.LabelSelector `json:"ipPoolSelectors,omitempty"`

	// AggregationLength is the prefix length advertised for IPv4 addresses (default 32):
	// 24 advertises the /24 holding the address instead of the address itself. It may not be
	// shorter than a prefix of a pool the advertisement selects (a range counts by the widest
	// prefix covering it): such an advertisement is refused (Accepted=False).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	// +optional
	AggregationLength *int32 `json:"aggregationLength,omitempty"`

	// AggregationLengthV6 is the same for IPv6 addresses (default 128), with the same rule.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	// +optional
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`

	// LocalPref is the LOCAL_PREF attribute, sent to iBGP peers only (RFC 4271): any 32-bit
	// unsigned value.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:Format=int64
	// +optional
	LocalPref *uint32 `json:"localPref,omitempty"`

	// Communities are standard communities, "65000:100", well-known names (no-export,
	// no-advertise, no-export-subconfed, no-peer), large communities written
	// "large:65000:1:2", or the name of an alias defined by a Community object.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[a-zA-Z][-a-zA-Z0-9_.]*$') || (self.matches('^[0-9]+:[0-9]+$') && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535) || (self.matches('^large:[0-9]+:[0-9]+:[0-9]+$') && int(self.split(':')[1]) <= 4294967295 && int(self.split(':')[2]) <= 4294967295 && int(self.split(':')[3]) <= 4294967295)",message="must be ASN:VALUE with two 16-bit numbers, large:GLOBAL:LOCAL1:LOCAL2 with 32-bit numbers, a well-known community name or a Community alias"
	Communities []string `json:"communities,omitempty"`

	// LargeCommunities are RFC 8092 large communities, "65000:1:2".
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[0-9]+:[0-9]+:[0-9]+$') && int(self.split(':')[0]) <= 4294967295 && int(self.split(':')[1]) <= 4294967295 && int(self.split(':')[2]) <= 4294967295",message="must be three 32-bit numbers, GLOBAL:LOCAL1:LOCAL2"
	LargeCommunities []string `json:"largeCommunities,omitempty"`

	// Peers names the BGPPeers that receive the paths; empty means every peer.
	// +optional
	// +listType=set
	Peers []string `json:"peers,omitempty"`

	// NodeSelectors picks the nodes that advertise: a node is selected when it matches any
	// selector; no selectors means every node.
	// +optional
	// +listType=atomic
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
}

// BGPAdvertisementStatus is written by the controller: whether the advertisement is usable and
// whether the pools and peers it names exist.
type BGPAdvertisementStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted (the spec is valid; False means speakers ignore the advertisement)
	// and ResolvedRefs (every pool named in ipPools and every peer named in peers exists, and
	// at least one pool is selected).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPAdvertisement selects Service addresses to advertise over BGP.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.spec.peers`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Resolved",type=string,JSONPath=`.status.conditions[?(@.type=="ResolvedRefs")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.status=="False")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BGPAdvertisementSpec `json:"spec"`
	// +optional
	Status BGPAdvertisementStatus `json:"status,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}

func init() {
	register(&BGPPeer{}, &BGPPeerList{}, &BGPAdvertisement{}, &BGPAdvertisementList{})
}

// BGPPeer dynamicASN values.
const (
	DynamicASNInternal = "internal"
	DynamicASNExternal = "external"
)
