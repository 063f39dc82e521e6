package ipam

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// A pool with special-purpose addresses is Invalid, naming the range and the block.
func TestCompileAllSpecialPurpose(t *testing.T) {
	items := []v1alpha1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "wide"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"198.51.100.0/24", "100.0.0.0-200.0.0.0"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "fine"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"203.0.113.0/24"}}},
	}
	good, _, bad := compileAll(items, nil)
	if _, ok := good["fine"]; !ok || len(good) != 1 {
		t.Fatalf("valid pools %d, want only \"fine\"", len(good))
	}
	p := bad["wide"]
	for _, want := range []string{`pool "wide"`, "100.0.0.0-200.0.0.0", "127.0.0.0/8 (loopback)", "169.254.0.0/16 (link-local)", "never handed out"} {
		if p.Reason != "Invalid" || !strings.Contains(p.Message, want) {
			t.Errorf("problem %+v, want Invalid mentioning %q", p, want)
		}
	}
}
