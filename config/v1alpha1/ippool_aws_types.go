package v1alpha1

// AWSPool is a pool whose addresses come from AWS rather than from spec.addresses.
type AWSPool struct {
	// ElasticIPs hands out Elastic IPs: the Service gets the public address, and the speaker on
	// the node elected for it associates the address with that node's network interface.
	ElasticIPs *ElasticIPs `json:"elasticIPs"`
}

// Values of ElasticIPs.Allocate.
const (
	ElasticIPsOnDemand = "OnDemand"
	ElasticIPsNever    = "Never"
)

// ElasticIPs says where a pool's Elastic IPs come from. Addresses set aside by tag are handed
// out first (and only untagged again on release); with allocate: OnDemand, new ones are
// allocated when none is free (and released to AWS with their Service).
//
// +kubebuilder:validation:XValidation:rule="self.allocate == 'OnDemand' || has(self.adoptTagged)",message="allocate: Never needs adoptTagged: the pool would have no address to give"
// +kubebuilder:validation:XValidation:rule="!has(self.publicIPv4Pool) || self.allocate == 'OnDemand'",message="publicIPv4Pool only applies to allocate: OnDemand"
type ElasticIPs struct {
	// AdoptTagged: Elastic IPs tagged fairlead.dev/eip-pool=<this value> (allocated by an
	// operator, e.g. allow-listed by partners) are handed out before any new one.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	AdoptTagged string `json:"adoptTagged,omitempty"`

	// Allocate: OnDemand allocates a new Elastic IP when no tagged one is free; Never only
	// hands out tagged ones.
	// +kubebuilder:validation:Enum=OnDemand;Never
	// +kubebuilder:default=OnDemand
	// +optional
	Allocate string `json:"allocate,omitempty"`

	// PublicIPv4Pool allocates from a pool of your own addresses brought to AWS (BYOIP)
	// instead of Amazon's.
	// +kubebuilder:validation:Pattern=`^ipv4pool-ec2-[0-9a-f]+$`
	// +optional
	PublicIPv4Pool string `json:"publicIPv4Pool,omitempty"`
}

// ElasticIPs returns the pool's Elastic IP settings, or nil for a pool of local addresses.
func (p *IPPool) ElasticIPs() *ElasticIPs {
	if p.Spec.AWS == nil {
		return nil
	}
	return p.Spec.AWS.ElasticIPs
}

// AWSNLBClass is the loadBalancerClass of Services that get an AWS Network Load Balancer each
// (fairlead-controller --aws-nlb).
const AWSNLBClass = "fairlead.dev/aws-nlb"

// ProviderFinalizer is held by Services whose load balancer lives in a cloud (AWSNLBClass), so
// that it is deleted before the Service disappears. It differs from ServiceFinalizer because a
// different reconciler owns those Services.
const ProviderFinalizer = "fairlead.dev/provider-release"
