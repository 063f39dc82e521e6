package v1alpha1

import "testing"

// Fairlead's record wins; MetalLB's is read when it is the only one (an address taken over).
func TestAllocatedFromPoolReadsMetalLBsRecord(t *testing.T) {
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{MetalLBAnnotationAllocatedFromPool: "blue"}, "blue"},
		{map[string]string{MetalLBAnnotationAllocatedFromPool: "blue", AnnotationAllocatedFromPool: "red"}, "red"},
		{map[string]string{}, ""},
	} {
		if got := AllocatedFromPool(tc.ann, 0, 1); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.ann, got, tc.want)
		}
	}
}
