package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CommunitySpec defines named BGP communities that BGPAdvertisements may use in place of the
// numbers, as MetalLB's Community does.
type CommunitySpec struct {
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Communities []CommunityAlias `json:"communities,omitempty"`
}

// CommunityAlias names one community.
type CommunityAlias struct {
	// Name is what BGPAdvertisements write in communities. It must not be a well-known
	// community name, and two Community objects must not define it differently.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z][-a-zA-Z0-9_.]*$')",message="must start with a letter and hold only letters, digits, '-', '_' and '.'"
	// +kubebuilder:validation:XValidation:rule="!(self in ['no-export', 'no-advertise', 'no-export-subconfed', 'no-peer'])",message="is a well-known community name"
	Name string `json:"name"`
	// Value is a standard community, "65000:100", or a large one, "large:65000:1:2".
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:XValidation:rule="(self.matches('^[0-9]+:[0-9]+$') && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535) || (self.matches('^large:[0-9]+:[0-9]+:[0-9]+$') && int(self.split(':')[1]) <= 4294967295 && int(self.split(':')[2]) <= 4294967295 && int(self.split(':')[3]) <= 4294967295)",message="must be ASN:VALUE with two 16-bit numbers or large:GLOBAL:LOCAL1:LOCAL2 with 32-bit numbers"
	Value string `json:"value"`
}

// Community is a set of community aliases for BGPAdvertisements.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpcomm
// +kubebuilder:printcolumn:name="Aliases",type=string,JSONPath=`.spec.communities[*].name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Community struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec CommunitySpec `json:"spec"`
}

// CommunityList is a list of Communities.
//
// +kubebuilder:object:root=true
type CommunityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Community `json:"items"`
}

func init() {
	register(&Community{}, &CommunityList{})
}
