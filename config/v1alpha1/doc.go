// Package v1alpha1 is Fairlead's API: the CRD types of group fairlead.dev, and the names of the
// Service annotations and finalizers Fairlead reads and writes.
//
// +kubebuilder:object:generate=true
// +groupName=fairlead.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of every type in this package.
var GroupVersion = schema.GroupVersion{Group: "fairlead.dev", Version: "v1alpha1"}

// objects are the package's kinds; each file registers its own. (A plain list rather than
// controller-runtime's scheme.Builder keeps this package importable with apimachinery alone.)
var objects []runtime.Object

func register(objs ...runtime.Object) { objects = append(objects, objs...) }

// AddToScheme adds the types of this package to a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, objects...)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
